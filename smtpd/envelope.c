/* MAIL FROM and RCPT TO: paths, ESMTP parameters and the recipient list. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtpd.h"
#include "util.h"

/* Parameters given with MAIL FROM (RFC 1870, 6152, 3030, 6531). */
struct mail_params {
	long long size;		/* -1: not given */
	enum body_type body;
	int smtputf8;
};

/*
 * Skip "FROM:" or "TO:" (case-insensitive) and any spaces after the
 * colon, which RFC 5321 does not allow but many clients send. Returns
 * the path or NULL.
 */
static char *
skip_keyword(char *args, const char *keyword)
{
	size_t len = strlen(keyword);

	if (ascii_ncasecmp(args, keyword, len) != 0)
		return NULL;
	args += len;
	while (*args == ' ')
		args++;
	return args;
}

static int
parse_size_value(const char *text, long long *out)
{
	char *end;

	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	*out = strtoll(text, &end, 10);
	if (*end != '\0' || errno != 0)
		return -1;
	return 0;
}

/*
 * Parse the MAIL parameters in ARGS ("SIZE=100 BODY=8BITMIME").
 * Returns 0, or -1 after sending the error reply.
 */
static int
parse_mail_params(struct session *s, char *args, struct mail_params *params)
{
	char *save = NULL;

	params->size = -1;
	params->body = BODY_7BIT;
	params->smtputf8 = 0;

	for (char *param = strtok_r(args, " ", &save); param != NULL;
	    param = strtok_r(NULL, " ", &save)) {
		char *value = strchr(param, '=');

		if (value != NULL)
			*value++ = '\0';

		if (ascii_casecmp(param, "SIZE") == 0) {
			if (value == NULL || parse_size_value(value, &params->size) < 0) {
				session_reply(s, "501 5.5.4 Bad SIZE parameter syntax");
				return -1;
			}
		} else if (ascii_casecmp(param, "BODY") == 0 && value != NULL) {
			if (ascii_casecmp(value, "7BIT") == 0)
				params->body = BODY_7BIT;
			else if (ascii_casecmp(value, "8BITMIME") == 0)
				params->body = BODY_8BITMIME;
			else if (ascii_casecmp(value, "BINARYMIME") == 0)
				params->body = BODY_BINARYMIME;
			else {
				session_reply(s, "501 5.5.4 Bad BODY parameter: expected 7BIT, 8BITMIME or BINARYMIME");
				return -1;
			}
		} else if (ascii_casecmp(param, "SMTPUTF8") == 0 && value == NULL) {
			params->smtputf8 = 1;
		} else {
			char text[64];

			log_sanitize(text, sizeof text, param, strlen(param));
			session_reply(s, "555 5.5.4 Unsupported option: %s", text);
			return -1;
		}
	}
	return 0;
}

/*
 * Split "<path> params" at the end of the path. The path is parsed
 * with UTF-8 allowed first; whether SMTPUTF8 was given is checked
 * afterwards, because the parameter comes after the path.
 */
static int
parse_path(char *text, int flags, struct mailaddr *addr, char **params, const char **why)
{
	const char *end;

	if (addr_parse_path(text, flags | ADDR_ALLOW_UTF8, addr, &end, why) < 0)
		return -1;
	if (*end != '\0' && *end != ' ') {
		*why = "unexpected text after '>'";
		return -1;
	}
	while (*end == ' ')
		end++;
	*params = (char *)end;
	return 0;
}

/* Whether ADDR has non-ASCII characters. */
static int
addr_has_utf8(const struct mailaddr *addr)
{
	for (const char *p = addr->local; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			return 1;
	for (const char *p = addr->domain; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			return 1;
	return 0;
}

void
command_mail(struct session *s, char *args)
{
	const struct smtpd_settings *settings = &s->server->settings;
	struct transaction *tx = &s->tx;
	struct mail_params params;
	struct mailaddr sender;
	char *path, *rest, reply[512];
	const char *why;

	if (s->helo[0] == '\0') {
		session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (tx->active) {
		session_reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	path = skip_keyword(args, "FROM:");
	if (path == NULL) {
		session_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (parse_path(path, ADDR_ALLOW_EMPTY, &sender, &rest, &why) < 0) {
		snprintf(reply, sizeof reply, "501 5.1.7 Bad sender address syntax (%s)", why);
		session_log_reject(s, "MAIL", reply, NULL);
		session_reply_raw(s, reply);
		return;
	}
	if (parse_mail_params(s, rest, &params) < 0)
		return;
	if (!params.smtputf8 && addr_has_utf8(&sender)) {
		session_reply(s, "553 5.6.7 Non-ASCII sender address requires SMTPUTF8");
		return;
	}
	if (params.size > settings->message_size_limit) {
		snprintf(reply, sizeof reply, "552 5.3.4 Message size exceeds fixed limit of %lld bytes",
		    settings->message_size_limit);
		session_log_reject(s, "MAIL", reply, NULL);
		session_reply_raw(s, reply);
		return;
	}

	tx->active = 1;
	tx->sender = sender;
	tx->body = params.body;
	tx->smtputf8 = params.smtputf8;
	session_reply(s, "250 2.1.0 Ok");
}

void
command_rcpt(struct session *s, char *args)
{
	struct transaction *tx = &s->tx;
	struct mailaddr rcpt;
	char *path, *rest, reply[2048], formatted[ADDR_MAX * 4 + 8];
	const char *why;
	int code;

	if (!tx->active) {
		session_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (tx->chunking) {
		session_reply(s, "503 5.5.1 Error: RCPT after BDAT");
		return;
	}
	path = skip_keyword(args, "TO:");
	if (path == NULL) {
		session_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (parse_path(path, ADDR_ALLOW_NO_DOMAIN, &rcpt, &rest, &why) < 0) {
		snprintf(reply, sizeof reply, "501 5.1.3 Bad recipient address syntax (%s)", why);
		session_log_reject(s, "RCPT", reply, NULL);
		session_reply_raw(s, reply);
		return;
	}
	if (*rest != '\0') {
		char text[64];

		log_sanitize(text, sizeof text, rest, strcspn(rest, " "));
		session_reply(s, "555 5.5.4 Unsupported option: %s", text);
		return;
	}
	addr_format(&rcpt, formatted, sizeof formatted);
	strlcpy_x(s->lookup.recipient, formatted, sizeof s->lookup.recipient);
	if (!tx->smtputf8 && addr_has_utf8(&rcpt)) {
		session_reply(s, "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8");
		return;
	}
	if ((long long)tx->nrecipients >= s->server->settings.recipient_limit) {
		session_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}

	code = recipient_check(s, &rcpt, reply, sizeof reply);
	if (code == RECIPIENT_PENDING) {
		session_pause(s);
		return;
	}
	rcpt_finish(s, code, reply);
}

/* Reply to RCPT with the result of the recipient check: add it on 250. */
void
rcpt_finish(struct session *s, int code, const char *reply)
{
	struct transaction *tx = &s->tx;
	const char *recipient = s->lookup.recipient;

	if (code != 250) {
		session_log_reject(s, "RCPT", reply, recipient);
		session_reply_raw(s, reply);
		return;
	}

	tx->recipients = xrealloc(tx->recipients, (tx->nrecipients + 1) * sizeof *tx->recipients);
	tx->recipients[tx->nrecipients++] = xstrdup(recipient);
	session_reply(s, "250 2.1.5 Ok");
}
