/* MAIL FROM and RCPT TO: paths, ESMTP parameters and the recipient list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter_client.h"
#include "log.h"
#include "smtpd.h"
#include "util.h"

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

static void mail_accept(struct session *s, const struct mailaddr *sender,
    const struct mail_params *params);

/*
 * Reply 421 and close when the session has had its smtpd_session_
 * transaction_limit of transactions, the MAILMAX advertised with LIMITS
 * (RFC 9422).
 */
static void
transaction_limit_reached(struct session *s)
{
	const char *reply = "421 4.7.0 Error: too many transactions in this session, closing";

	log_info("%s[%s]: transaction limit of %lld reached; closing", s->name, s->ip,
	    s->server->settings.transaction_limit);
	session_reply_raw(s, reply);
	session_close(s);
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
	if (settings->transaction_limit > 0 &&
	    s->transactions >= (unsigned long long)settings->transaction_limit) {
		transaction_limit_reached(s);
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
	if (mail_params_parse(s, rest, &params) < 0)
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
	if (submission_check_mail(s, &sender, reply, sizeof reply) < 0) {
		session_log_reject(s, "MAIL", reply, NULL);
		session_reply_raw(s, reply);
		return;
	}

	if (filter_enabled()) {
		filter_mail(s, &sender, &params);
		return;
	}
	mail_accept(s, &sender, &params);
}

/* Start the transaction of SENDER. */
static void
mail_accept(struct session *s, const struct mailaddr *sender, const struct mail_params *params)
{
	struct transaction *tx = &s->tx;

	tx->active = 1;
	tx->sender = *sender;
	tx->body = params->body;
	tx->smtputf8 = params->smtputf8;
	tx->ret = params->ret;
	strlcpy_x(tx->envid, params->envid, sizeof tx->envid);
	tx->requiretls = params->requiretls;
	s->transactions++;
	session_reply(s, "250 2.1.0 Ok");
}

/*
 * filterd's verdict on MAIL FROM: a reject or tempfail (an SPF fail, or
 * filterd unavailable with smtpd_filter_failure_policy tempfail) is the
 * reply to MAIL. Only the message stage can discard or quarantine, so
 * those verdicts start the transaction here like accept.
 */
void
mail_filter_done(struct session *s, const struct mailaddr *sender,
    const struct mail_params *params, struct filter_verdict *verdict)
{
	if (verdict->action == VERDICT_REJECT || verdict->action == VERDICT_TEMPFAIL) {
		session_log_reject(s, "MAIL", verdict->reply, NULL);
		session_reply_raw(s, verdict->reply);
	} else {
		mail_accept(s, sender, params);
	}

	command_finish(s);
	session_set_state(s, SESSION_COMMAND);
	session_resume(s);
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
	if (rcpt_params_parse(s, rest, &s->pending_rcpt) < 0)
		return;
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
	tx->rcpt_params = xrealloc(tx->rcpt_params, (tx->nrecipients + 1) * sizeof *tx->rcpt_params);
	tx->rcpt_params[tx->nrecipients] = s->pending_rcpt;
	tx->recipients[tx->nrecipients++] = xstrdup(recipient);
	session_reply(s, "250 2.1.5 Ok");
}
