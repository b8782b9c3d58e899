/*
 * The SMTP transaction of an outbound session: the checks of what the
 * server must offer, then MAIL, RCPT and DATA (pipelined when the server
 * offers PIPELINING) and the message content.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "config.h"
#include "dsn_orcpt.h"
#include "envelope.h"
#include "log.h"
#include "outbound_data.h"
#include "outbound_mime7.h"
#include "outbound_session_internal.h"
#include "queued.h"
#include "scheduler.h"
#include "spool.h"
#include "util.h"

static void send_next_command(struct session *s);

static const char *
message_attr(struct session *s, const char *key)
{
	return envelope_attr(s->job->msg->env, key);
}

static int
attr_is(struct session *s, const char *key, const char *value)
{
	const char *v = message_attr(s, key);

	return v != NULL && ascii_casecmp(v, value) == 0;
}

static int
is_ascii(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
		if (*p > 127)
			return 0;
	return 1;
}

/* Return whether the message really needs SMTPUTF8 (RFC 6531), which is
 * when a sender, a recipient of this job or the header is non-ASCII. A read
 * error counts as needing it. */
static int
needs_smtputf8(struct session *s)
{
	struct envelope *env = s->job->msg->env;

	if (!is_ascii(env->sender))
		return 1;
	for (size_t r = 0; r < s->job->nrcpts; r++)
		if (!is_ascii(job_rcpt(s, r)->address))
			return 1;
	return outbound_data_header_has_8bit(s->data_fd) != 0;
}

/*
 * RFC 6152 section 3: a server without 8BITMIME gets 8-bit content
 * converted, or the message is returned. Read the message and convert
 * its 8-bit body parts to quoted-printable; feed_body sends the result.
 * Returns 0, or -1 after failing every recipient (8-bit header, read
 * error).
 */
static int
convert_to_7bit(struct session *s)
{
	struct stat st;
	char err[256], *data;
	ssize_t n;

	if (fstat(s->data_fd, &st) < 0) {
		snprintf(err, sizeof err, "stat queue file: %s", strerror(errno));
		fail_open_rcpts(s, "4.3.0", err);
		return -1;
	}
	data = xmalloc((size_t)st.st_size + 1);
	n = pread(s->data_fd, data, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		snprintf(err, sizeof err, "read queue file: %s", n < 0 ? strerror(errno) : "short read");
		free(data);
		fail_open_rcpts(s, "4.3.0", err);
		return -1;
	}

	s->converted = outbound_mime7_convert(data, (size_t)n, &s->converted_len, err, sizeof err);
	free(data);
	if (s->converted == NULL) {
		fail_open_rcpts(s, "5.6.3", err);
		return -1;
	}
	log_info("%s: %s does not offer 8BITMIME: 8-bit body parts are sent as quoted-printable",
	    s->job->msg->env->id, s->relay);
	return 0;
}

/* Measure the message as it goes on the wire, which is larger than the
 * queue file with its LF line ends, and check it against the SIZE that
 * the server announced. Returns 0, or -1 after failing every recipient. */
static int
check_size(struct session *s)
{
	char *reason;

	s->wire_size = outbound_data_wire_size(s->data_fd, s->converted, s->converted_len);
	if (s->wire_size < 0) {
		reason = xasprintf("read queue file: %s", strerror(errno));
		fail_open_rcpts(s, "4.3.0", reason);
		free(reason);
		return -1;
	}
	if (s->ext_size == 0 || s->wire_size <= s->ext_size)
		return 0;

	reason = xasprintf("message size %lld exceeds the limit of %lld that the host announced",
	    s->wire_size, s->ext_size);
	fail_open_rcpts(s, "5.3.4", reason);
	free(reason);
	return -1;
}

/* Check what the server must offer for this message. Returns 0, or -1
 * after failing every recipient.
 * TODO: this runs for each transaction, so a job split into many
 * transactions reads (and converts, or measures) the message each time. */
static int
check_extensions(struct session *s)
{
	s->use_smtputf8 = attr_is(s, "smtputf8", "yes");
	if (s->use_smtputf8 && !s->ext_smtputf8) {
		if (needs_smtputf8(s)) {
			fail_open_rcpts(s, "5.6.7", "SMTPUTF8 is required, but was not offered by the host");
			return -1;
		}
		/* The client requested SMTPUTF8, but the envelope and header
		 * are ASCII, so the message goes without it. */
		s->use_smtputf8 = 0;
	}

	/* smtpd stores body=7BIT when MAIL FROM had no BODY parameter,
	 * whatever the data contains, so undeclared data is scanned. A read
	 * error counts as 8-bit, and convert_to_7bit reports it. */
	if (attr_is(s, "body", "8BITMIME") && s->ext_8bitmime)
		s->body_8bit = 1;
	else
		s->body_8bit = outbound_data_has_8bit(s->data_fd) != 0;
	if (s->body_8bit && !s->ext_8bitmime && convert_to_7bit(s) < 0)
		return -1;
	if (s->ext_size >= 0)
		return check_size(s);
	return 0;
}

/* Append TEXT to OUT as xtext (RFC 3461 section 4): printable ASCII
 * except "+" and "=" as itself, every other octet as "+XX". */
static void
add_xtext(struct evbuffer *out, const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		if (*p >= 33 && *p <= 126 && *p != '+' && *p != '=')
			evbuffer_add(out, p, 1);
		else
			evbuffer_add_printf(out, "+%02X", *p);
	}
}

static void
send_mail_from(struct session *s)
{
	struct envelope *env = s->job->msg->env;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	const char *ret = message_attr(s, "ret"), *envid = message_attr(s, "envid");

	evbuffer_add_printf(out, "MAIL FROM:<%s>", env->sender);
	if (s->ext_size >= 0)
		evbuffer_add_printf(out, " SIZE=%lld", s->wire_size);
	if (s->ext_8bitmime && s->body_8bit)
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (s->use_smtputf8)
		evbuffer_add_printf(out, " SMTPUTF8");
	if (s->tls_request.requiretls)
		evbuffer_add_printf(out, " REQUIRETLS");
	if (s->ext_dsn && ret != NULL)
		evbuffer_add_printf(out, " RET=%s", ret);
	if (s->ext_dsn && envid != NULL) {
		evbuffer_add_printf(out, " ENVID=");
		add_xtext(out, envid);
	}
	evbuffer_add(out, "\r\n", 2);
}

static void
send_rcpt_to(struct session *s, size_t r)
{
	struct envelope_rcpt *rcpt = job_rcpt(s, r);
	struct evbuffer *out = bufferevent_get_output(s->bev);

	evbuffer_add_printf(out, "RCPT TO:<%s>", rcpt->address);
	if (s->ext_dsn && rcpt->notify != NULL)
		evbuffer_add_printf(out, " NOTIFY=%s", rcpt->notify);
	/* The envelope keeps ORCPT decoded, as "type;address". A queue file
	 * written before queued checked ORCPT at commit may hold an invalid
	 * one, which is left out rather than sent as a malformed parameter. */
	if (s->ext_dsn && rcpt->orcpt != NULL && dsn_orcpt_valid(rcpt->orcpt)) {
		const char *semicolon = strchr(rcpt->orcpt, ';');

		evbuffer_add_printf(out, " ORCPT=%.*s;", (int)(semicolon - rcpt->orcpt), rcpt->orcpt);
		add_xtext(out, semicolon + 1);
	} else if (s->ext_dsn && rcpt->orcpt != NULL) {
		log_warn("%s: ORCPT of <%s> in the queue file is invalid, so RCPT TO goes without it", s->job->msg->env->id,
		    rcpt->address);
	}
	evbuffer_add(out, "\r\n", 2);
}

/* Send envelope command number N: 0 is MAIL, 1..ntxn RCPT, then DATA. */
static void
send_command(struct session *s, size_t n)
{
	if (n == 0)
		send_mail_from(s);
	else if (n <= s->ntxn)
		send_rcpt_to(s, s->txn[n - 1]);
	else
		send_line(s, "DATA");
}

/* Without PIPELINING: send the next command once the last reply is in. */
static void
send_next_command(struct session *s)
{
	if (s->commands_sent <= s->ntxn + 1)
		send_command(s, s->commands_sent++);
}

/* Put the open job recipients in the transaction, at most
 * smtp_destination_recipient_limit of them. */
static void
select_transaction_rcpts(struct session *s)
{
	size_t limit = (size_t)config_int("smtp_destination_recipient_limit");

	s->txn = xcalloc(s->job->nrcpts ? s->job->nrcpts : 1, sizeof *s->txn);
	s->ntxn = 0;
	for (size_t r = 0; r < s->job->nrcpts && s->ntxn < limit; r++)
		if (s->progress[r] == RCPT_OPEN)
			s->txn[s->ntxn++] = r;
}

void
start_transaction(struct session *s)
{
	struct envelope *env = s->job->msg->env;

	s->transaction_usec = now_usec();
	s->reply_index = 0;
	s->commands_sent = 0;
	s->mail_ok = 0;
	s->naccepted = 0;
	s->nrcpts_put_back = 0;
	s->accepted = xcalloc(s->job->nrcpts ? s->job->nrcpts : 1, 1);
	select_transaction_rcpts(s);
	s->data_fd = spool_open_data(&queued_spool, env);
	if (s->data_fd < 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "cannot open the queue file: %s", strerror(errno));
		log_error("%s: %s", env->id, reason);
		fail_open_rcpts(s, "4.3.0", reason);
		finish_job(s, 1);
		return;
	}
	if (check_extensions(s) < 0) {
		finish_job(s, 1);
		return;
	}

	set_state(s, S_ENVELOPE);
	if (s->ext_pipelining) {
		while (s->commands_sent <= s->ntxn + 1)
			send_command(s, s->commands_sent++);
	} else {
		send_next_command(s);
	}
}

void
feed_body(struct session *s)
{
	char buf[DATA_CHUNK];
	struct evbuffer *out = bufferevent_get_output(s->bev);
	ssize_t n;

	if (s->converted != NULL) {
		size_t left = s->converted_len - (size_t)s->data_offset;

		n = (ssize_t)(left < sizeof buf ? left : sizeof buf);
		/* Keep each CRLF in one chunk, since outbound_data_add drops a
		 * CR only when the LF follows in the same call. */
		if (n > 1 && (size_t)n < left && s->converted[s->data_offset + n - 1] == '\r')
			n--;
		memcpy(buf, s->converted + s->data_offset, (size_t)n);
	} else {
		n = pread(s->data_fd, buf, sizeof buf, s->data_offset);
	}

	if (n < 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "read queue file: %s", strerror(errno));
		abort_session(s, "4.3.0", reason);
		return;
	}
	if (n > 0) {
		s->data_offset += n;
		outbound_data_add(&s->data, out, buf, (size_t)n);
		return;
	}
	outbound_data_finish(&s->data, out);
	set_state(s, S_DATA_DONE);
}

static void
start_body(struct session *s)
{
	set_state(s, S_BODY);
	s->data_offset = 0;
	outbound_data_init(&s->data);
	feed_body(s);
}

/* Handle one reply to MAIL, RCPT or DATA. */
void
envelope_reply(struct session *s)
{
	size_t index = s->reply_index++;
	size_t ntxn = s->ntxn;
	int class = s->reply_code / 100;

	set_state(s, S_ENVELOPE);	/* the timeout of the next reply */

	if (index == 0) {
		s->mail_ok = class == 2;
		if (!s->mail_ok)
			for (size_t i = 0; i < ntxn; i++)
				reply_to_outcome(s, s->txn[i]);
	} else if (index <= ntxn) {
		size_t r = s->txn[index - 1];

		if (s->mail_ok && class == 2) {
			s->accepted[r] = 1;
			s->naccepted++;
		} else if (s->mail_ok && s->reply_code == 452 && s->naccepted > 0) {
			/* RFC 5321 section 4.5.3.1.10: the server takes no more
			 * recipients in this transaction, so the rest go in the
			 * next one. Some recipient was accepted, so the next
			 * transaction has fewer to carry. */
			if (s->nrcpts_put_back++ == 0)
				log_info("%s: %s accepted %zu recipients, then replied 452; the rest go in the next transaction",
				    s->job->msg->env->id, s->relay, s->naccepted);
		} else if (s->mail_ok) {
			reply_to_outcome(s, r);
		}
	} else {
		if (s->reply_code == 354 && s->naccepted > 0) {
			start_body(s);
			return;
		}
		/* DATA was rejected, or accepted with no recipient, so the
		 * transaction ends here. */
		if (s->reply_code == 354) {
			abort_session(s, "4.4.2", "the host accepted DATA with no recipient accepted");
			return;
		}
		/* 354 is the only positive reply to DATA. Any other 2xx or
		 * 3xx means that the server lost track of the commands, and no
		 * message data was sent. */
		if (class == 2 || class == 3) {
			char reason[REPLY_TEXT_MAX + 100];

			snprintf(reason, sizeof reason, "protocol error: %d %s (in reply to DATA)",
			    s->reply_code, s->reply);
			abort_session(s, "4.5.0", reason);
			return;
		}
		for (size_t i = 0; i < ntxn; i++)
			if (s->accepted[s->txn[i]])
				reply_to_outcome(s, s->txn[i]);
		send_line(s, "RSET");
		set_state(s, S_RSET);
		return;
	}

	if (!s->ext_pipelining) {
		/* Without PIPELINING a server replies to one command at a
		 * time. More reply data already waiting is a reply to a command
		 * not yet sent, and would be taken for the reply to the next one. */
		if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
			abort_session(s, "4.5.0", "protocol error: the host sent replies to commands it has not received");
			return;
		}
		/* Stop early when MAIL failed or no recipient was accepted. */
		if (!s->mail_ok || (index == ntxn && s->naccepted == 0)) {
			send_line(s, "RSET");
			set_state(s, S_RSET);
			return;
		}
		send_next_command(s);
	}
}

void
data_done_reply(struct session *s)
{
	for (size_t r = 0; r < s->job->nrcpts; r++)
		if (s->accepted[r])
			reply_to_outcome(s, r);
	transaction_done(s, 1);
}
