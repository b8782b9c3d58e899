/*
 * Local submission: recipients from the header with -t, the fields a
 * local message lacks (Received:, and Date:, Message-ID: and From: when
 * missing) put in front of the message, then the message goes to queued.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "addr.h"
#include "config.h"
#include "header.h"
#include "ipc.h"
#include "log.h"
#include "sendmail.h"
#include "submit.h"
#include "util.h"

static int
field_is(const struct header_field *field, const char *name)
{
	return field->namelen == strlen(name) && ascii_ncasecmp(field->name, name, field->namelen) == 0;
}

static int
has_field(const struct header_list *headers, const char *name)
{
	return header_find(headers, name) != NULL;
}

/*
 * The recipient fields -t reads: Resent-To, Resent-Cc and Resent-Bcc when
 * the message has any of them (a resent message), else To, Cc and Bcc,
 * as Postfix's sendmail does.
 */
static int
uses_resent_fields(const struct header_list *headers)
{
	return has_field(headers, "Resent-To") || has_field(headers, "Resent-Cc") ||
	    has_field(headers, "Resent-Bcc");
}

static int
is_recipient_field(const struct header_field *field, int resent)
{
	if (resent)
		return field_is(field, "Resent-To") || field_is(field, "Resent-Cc") ||
		    field_is(field, "Resent-Bcc");
	return field_is(field, "To") || field_is(field, "Cc") || field_is(field, "Bcc");
}

static int
is_bcc_field(const struct header_field *field)
{
	return field_is(field, "Bcc") || field_is(field, "Resent-Bcc");
}

static void
extract_recipients(const struct header_list *headers, struct address_list *rcpts)
{
	int resent = uses_resent_fields(headers);

	for (size_t i = 0; i < headers->count; i++) {
		char *value;

		if (!is_recipient_field(&headers->fields[i], resent))
			continue;
		value = header_unfold(&headers->fields[i]);
		/* An unparsable address in a header is skipped, the others are used. */
		if (address_list_add_text(rcpts, value) < 0 && *value != '\0')
			log_warn("sendmail -t: skipped an invalid address in %.*s: %.200s",
			    (int)headers->fields[i].namelen, headers->fields[i].name, value);
		free(value);
	}
}

static void
format_date(char *out, size_t outsize, time_t when)
{
	struct tm tm;

	localtime_r(&when, &tm);
	strftime(out, outsize, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

static int
needs_quoting(const char *name)
{
	for (const char *p = name; *p != '\0'; p++)
		if (strchr("()<>[]:;@\\,.\"", *p) != NULL)
			return 1;
	return 0;
}

static int
is_ascii(const char *text)
{
	for (const char *p = text; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
			return 0;
	return 1;
}

/* FULL_NAME as a display name: as is, quoted, or RFC 2047 encoded when not ASCII. */
static char *
display_name(const char *full_name)
{
	static const char base64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t len = strlen(full_name);
	char *out, *o;

	if (is_ascii(full_name) && !needs_quoting(full_name))
		return xstrdup(full_name);

	if (is_ascii(full_name)) {
		out = o = xmalloc(len * 2 + 3);
		*o++ = '"';
		for (const char *p = full_name; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				*o++ = '\\';
			*o++ = *p;
		}
		*o++ = '"';
		*o = '\0';
		return out;
	}

	/* NOTE: one encoded-word, so a very long name exceeds RFC 2047's 75 characters. */
	out = o = xmalloc(len * 4 / 3 + 16);
	o = stpcpy(o, "=?UTF-8?B?");
	for (size_t i = 0; i < len; i += 3) {
		unsigned long group = (unsigned long)(unsigned char)full_name[i] << 16;

		if (i + 1 < len)
			group |= (unsigned long)(unsigned char)full_name[i + 1] << 8;
		if (i + 2 < len)
			group |= (unsigned char)full_name[i + 2];
		*o++ = base64[(group >> 18) & 63];
		*o++ = base64[(group >> 12) & 63];
		*o++ = i + 1 < len ? base64[(group >> 6) & 63] : '=';
		*o++ = i + 2 < len ? base64[group & 63] : '=';
	}
	strcpy(o, "?=");
	return out;
}

/* The fields put in front of the message, LF line ends. */
static char *
added_fields(const struct local_submission *sub, const struct header_list *headers,
    const char *queue_id)
{
	const char *host = my_hostname();
	char date[64], *received, *result, *from = NULL;
	char *date_field = NULL, *message_id = NULL;

	format_date(date, sizeof date, time(NULL));
	if (sub->helo != NULL)
		received = xasprintf("Received: from %s\n\tby %s (Estafeta, from userid %u) with %s\n"
		    "\tid %s; %s\n", sub->helo, host, (unsigned)sub->user->uid, sub->protocol,
		    queue_id, date);
	else
		received = xasprintf("Received: by %s (Estafeta, from userid %u)\n\tid %s; %s\n",
		    host, (unsigned)sub->user->uid, queue_id, date);

	if (!has_field(headers, "Date"))
		date_field = xasprintf("Date: %s\n", date);
	if (!has_field(headers, "Message-ID"))
		message_id = xasprintf("Message-ID: <%s@%s>\n", queue_id, host);
	if (!has_field(headers, "From")) {
		const char *address = *sub->sender != '\0' ? sub->sender : NULL;
		char fallback[sizeof sub->user->name + 256];

		if (address == NULL) {
			snprintf(fallback, sizeof fallback, "%s@%s", sub->user->name, host);
			address = fallback;
		}
		if (sub->full_name != NULL && *sub->full_name != '\0') {
			char *name = display_name(sub->full_name);

			from = xasprintf("From: %s <%s>\n", name, address);
			free(name);
		} else {
			from = xasprintf("From: %s\n", address);
		}
	}

	result = xasprintf("%s%s%s%s", received, date_field != NULL ? date_field : "",
	    message_id != NULL ? message_id : "", from != NULL ? from : "");
	free(received);
	free(date_field);
	free(message_id);
	free(from);
	return result;
}

static int
has_8bit(const struct message *msg)
{
	for (size_t i = 0; i < msg->len; i++)
		if ((unsigned char)msg->data[i] >= 0x80)
			return 1;
	return 0;
}

static int
has_utf8_address(const struct local_submission *sub)
{
	if (!is_ascii(sub->sender))
		return 1;
	for (size_t i = 0; i < sub->rcpts->count; i++)
		if (!is_ascii(sub->rcpts->items[i]))
			return 1;
	return 0;
}

/*
 * Write the message after the added fields, leaving out Bcc and
 * Resent-Bcc fields with -t. A message without any header field is all
 * body, so an empty line goes first. Otherwise its first line could join
 * the added fields (a line starting with white space would continue the
 * From: field). A header that ends without an empty line stays as it is.
 */
static int
write_message(struct submit *s, const struct local_submission *sub,
    const struct header_list *headers, const struct message *msg)
{
	size_t pos = 0;

	if (headers->count == 0 && (msg->len == 0 || msg->data[0] != '\n'))
		return submit_write(s, "\n", 1) < 0 ? -1 : submit_write(s, msg->data, msg->len);

	for (size_t i = 0; i < headers->count; i++) {
		const struct header_field *field = &headers->fields[i];
		size_t start = (size_t)(field->start - msg->data);

		if (!sub->extract_recipients || !is_bcc_field(field))
			continue;
		if (submit_write(s, msg->data + pos, start - pos) < 0)
			return -1;
		pos = start + field->len;
	}
	return submit_write(s, msg->data + pos, msg->len - pos);
}

static struct ipc_msg *
envelope_build(const struct local_submission *sub, const struct message *msg)
{
	struct ipc_msg *env = ipc_msg_new("COMMIT");
	const char *body = sub->body_type;

	if (body == NULL)
		body = has_8bit(msg) ? "8BITMIME" : "7BIT";
	ipc_msg_add(env, "sender", sub->sender);
	for (size_t i = 0; i < sub->rcpts->count; i++)
		ipc_msg_add(env, "rcpt", sub->rcpts->items[i]);
	ipc_msg_add(env, "protocol", sub->protocol);
	ipc_msg_add(env, "body", body);
	if (has_utf8_address(sub))
		ipc_msg_add(env, "smtputf8", "yes");
	if (sub->helo != NULL)
		ipc_msg_add(env, "helo", sub->helo);
	ipc_msg_add(env, "submitter", sub->user->name);
	return env;
}

int
submit_local(const struct local_submission *sub, const struct message *msg,
    char queue_id[QUEUE_ID_MAX])
{
	struct header_list headers = { 0 };
	struct ipc_msg *envelope;
	struct submit *s;
	char err[512], *fields;
	int rc;

	if (header_parse(msg->data, msg->len, &headers) < 0) {
		warnx_sendmail("out of memory while parsing the message header");
		return EX_OSERR;
	}
	if (sub->extract_recipients)
		extract_recipients(&headers, sub->rcpts);
	if (sub->rcpts->count == 0) {
		warnx_sendmail(sub->extract_recipients ?
		    "no recipient addresses found in the message header" :
		    "no recipients: give them on the command line or use -t");
		header_list_free(&headers);
		return EX_USAGE;
	}

	/* TODO: keep the message in a maildrop directory when queued is not
	 * running, as Postfix's postdrop does. Now the caller gets
	 * EX_TEMPFAIL, and cron or mail(1) drop the message. */
	s = submit_begin(config_string("queued_socket"), err, sizeof err);
	if (s == NULL) {
		warnx_sendmail("cannot queue the message: %s", err);
		header_list_free(&headers);
		return EX_TEMPFAIL;
	}
	strlcpy_x(queue_id, submit_queue_id(s), QUEUE_ID_MAX);

	fields = added_fields(sub, &headers, queue_id);
	if (submit_write(s, fields, strlen(fields)) < 0 ||
	    write_message(s, sub, &headers, msg) < 0) {
		warnx_sendmail("cannot write the message to the queue: %s", strerror(errno));
		submit_abort(s);
		free(fields);
		header_list_free(&headers);
		return EX_TEMPFAIL;
	}
	free(fields);
	header_list_free(&headers);

	/* With smtpd_filter on, queued passes the message to filterd before
	 * the commit, so a rejected message fails here and is not queued. */
	envelope = envelope_build(sub, msg);
	rc = submit_commit(s, envelope, err, sizeof err);
	if (rc < 0) {
		warnx_sendmail("%s: %s", rc == -2 ? "message rejected" : "cannot queue the message",
		    err);
		ipc_msg_free(envelope);
		return rc == -2 ? EX_UNAVAILABLE : EX_TEMPFAIL;
	}
	ipc_msg_free(envelope);
	log_info("%s: uid=%u, from=<%s>, nrcpt=%zu, submitter=%s", queue_id,
	    (unsigned)sub->user->uid, sub->sender, sub->rcpts->count, sub->user->name);
	return EX_OK;
}
