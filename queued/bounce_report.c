/* The text of delivery status notifications (RFC 3464): pure
 * formatting, kept apart from queueing so unit tests can build it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounce.h"
#include "envelope.h"
#include "log.h"
#include "util.h"

/* Maximum bytes of diagnostic text per recipient in a notification. */
#define BOUNCE_DIAGNOSTIC_MAX 400

static int
is_smtp_reply(const char *text)
{
	return text[0] >= '2' && text[0] <= '5' && text[1] >= '0' && text[1] <= '9' &&
	    text[2] >= '0' && text[2] <= '9' && (text[3] == ' ' || text[3] == '\0');
}

/* Return the reason of the last attempt in REASON: the text after
 * ENVELOPE_EXPIRED_PREFIX for an expired recipient, else all of it. */
static const char *
last_attempt_reason(const char *reason)
{
	size_t prefix_length = strlen(ENVELOPE_EXPIRED_PREFIX);

	if (strncmp(reason, ENVELOPE_EXPIRED_PREFIX, prefix_length) == 0)
		return reason + prefix_length;
	return reason;
}

char *
bounce_diagnostic_code(const char *reason)
{
	char *clean = envelope_clean_text(reason, BOUNCE_DIAGNOSTIC_MAX, 0);
	const char *last = last_attempt_reason(clean);
	char *code;

	/* An expired recipient whose last attempt got an SMTP reply gives
	 * that reply, which is what the sender can act on. */
	if (is_smtp_reply(last))
		code = xasprintf("smtp; %s", last);
	else
		code = xasprintf("X-Estafeta; %s", clean);
	free(clean);
	return code;
}

/* A status "class.subject.detail" (RFC 3463) of a failure, or NULL. */
static const char *
valid_status(const char *dsn)
{
	int class, subject, detail, end = 0;

	if (dsn == NULL || sscanf(dsn, "%1d.%3d.%3d%n", &class, &subject, &detail, &end) != 3 ||
	    dsn[end] != '\0' || (class != 4 && class != 5))
		return NULL;
	return dsn;
}

static int
has_8bit(const char *text)
{
	for (; *text != '\0'; text++)
		if ((unsigned char)*text >= 0x80)
			return 1;
	return 0;
}

static void
format_date(char *out, size_t size, time_t when)
{
	struct tm tm;

	localtime_r(&when, &tm);
	strftime(out, size, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

int
bounce_reports_rcpt(const struct bounce_report *report, const struct envelope_rcpt *rcpt)
{
	switch (report->kind) {
	case BOUNCE_FAILED:
		return rcpt->status == RCPT_FAILED && envelope_rcpt_wants(rcpt, DSN_NOTIFY_FAILURE);
	case BOUNCE_DELAYED:
		return rcpt->status == RCPT_DEFERRED && envelope_rcpt_wants(rcpt, DSN_NOTIFY_DELAY);
	case BOUNCE_DELIVERED:
		return rcpt->status == RCPT_SENT && !rcpt->success_reported &&
		    envelope_rcpt_wants(rcpt, DSN_NOTIFY_SUCCESS);
	}
	return 0;
}

/*
 * Return the Action of a recipient with a success DSN: "relayed" (RFC 3464
 * section 2.3.3) for an SMTP server without DSN, "expanded" (RFC 3461)
 * or "delivered" for deliverd. The text of deliverd's LMTP reply shows
 * an expansion: an alias with several members, or a resubmission to the
 * addresses of a .forward file or alias.
 * NOTE: this matches the reply texts of deliverd's session_deliver.c
 * and forward.c only, so another LMTP server's expansions read as
 * delivered.
 */
static const char *
delivered_action(const struct envelope_rcpt *rcpt)
{
	static const char *const expanded_texts[] = {
		" delivered to several destinations", " forwarded as ",
		" delivered through .forward",
	};

	if (rcpt->relayed)
		return "relayed";
	for (size_t i = 0; rcpt->reason != NULL && i < sizeof expanded_texts / sizeof expanded_texts[0]; i++)
		if (strstr(rcpt->reason, expanded_texts[i]) != NULL)
			return "expanded";
	return "delivered";
}

/* Return whether REPORT lists a recipient relayed to a server without DSN. */
static int
reports_relayed_rcpt(const struct bounce_report *report)
{
	for (size_t i = 0; i < report->env->nrcpts; i++)
		if (report->env->rcpts[i].relayed && bounce_reports_rcpt(report, &report->env->rcpts[i]))
			return 1;
	return 0;
}

static const char *
report_action(const struct bounce_report *report, const struct envelope_rcpt *rcpt)
{
	switch (report->kind) {
	case BOUNCE_FAILED:
		return "failed";
	case BOUNCE_DELAYED:
		return "delayed";
	case BOUNCE_DELIVERED:
		return delivered_action(rcpt);
	}
	return "failed";
}

/*
 * Write the line of RCPT in the human-readable part. A reply of an SMTP
 * server gets the form of Postfix's bounce reasons:
 * "host mx.example.org[192.0.2.1] said: 550 5.1.1 ... (in reply to RCPT TO command)".
 */
static void
write_human_reason(FILE *fp, const struct envelope_rcpt *rcpt)
{
	char *reason = envelope_clean_text(rcpt->reason != NULL ? rcpt->reason : "unknown error",
	    BOUNCE_DIAGNOSTIC_MAX, 0);
	const char *last = last_attempt_reason(reason);

	if (rcpt->remote_mta == NULL || rcpt->reply_command == NULL || !is_smtp_reply(last)) {
		fprintf(fp, "<%s>: %s\n", rcpt->address, reason);
		free(reason);
		return;
	}
	fprintf(fp, "<%s>: %.*shost %s said: %s (in reply to %s command)\n", rcpt->address,
	    (int)(last - reason), reason, rcpt->remote_mta, last, rcpt->reply_command);
	free(reason);
}

static void
write_human_part(FILE *fp, const struct bounce_report *report)
{
	const struct envelope *env = report->env;

	fprintf(fp, "Content-Description: Notification\n"
	    "Content-Type: text/plain; charset=utf-8\n\n"
	    "This is the mail system at host %s.\n\n", report->myhostname);
	if (report->kind == BOUNCE_DELAYED) {
		char until[64];

		format_date(until, sizeof until, report->retry_until);
		fprintf(fp, "Your message could not be delivered yet to one or more recipients.\n"
		    "Delivery will be retried until %s, and you will be notified\n"
		    "again only if it fails. You do not need to send it again.\n\n", until);
	} else if (report->kind == BOUNCE_DELIVERED && reports_relayed_rcpt(report)) {
		fputs("Your message was delivered to the recipients below, or relayed to a mail\n"
		    "system that sends no success notifications (Action: relayed), as you\n"
		    "requested. Delivery after a relay may still fail, and you would then\n"
		    "hear of it from that system.\n"
		    "The delivery report and the header of your message are attached.\n\n", fp);
	} else if (report->kind == BOUNCE_DELIVERED) {
		fputs("Your message was delivered to the recipients below, as you requested.\n"
		    "The delivery report and the header of your message are attached.\n\n", fp);
	} else {
		fputs("Your message could not be delivered to one or more recipients.\n"
		    "The delivery report and the header of your message are attached.\n\n", fp);
	}

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct envelope_rcpt *rcpt = &env->rcpts[i];

		if (bounce_reports_rcpt(report, rcpt))
			write_human_reason(fp, rcpt);
	}
	fputs("\n", fp);
}

/* The Status field of RCPT: its dsn when that fits the report, else the
 * generic code of the report's class. */
static const char *
report_status(const struct bounce_report *report, const struct envelope_rcpt *rcpt)
{
	const char *status = valid_status(rcpt->dsn);

	if (report->kind == BOUNCE_DELIVERED)
		return rcpt->dsn != NULL && strncmp(rcpt->dsn, "2.", 2) == 0 ? rcpt->dsn : "2.0.0";
	if (report->kind == BOUNCE_DELAYED)
		return status != NULL && status[0] == '4' ? status : "4.0.0";
	return status != NULL ? status : "5.0.0";
}

/* Original-Recipient: TYPE; ADDRESS from the stored ORCPT "TYPE;ADDRESS". */
static void
write_original_recipient(FILE *fp, const char *stored)
{
	char *orcpt = envelope_clean_text(stored, 512, 1);
	char *semicolon = strchr(orcpt, ';');

	if (semicolon != NULL) {
		*semicolon = '\0';
		fprintf(fp, "Original-Recipient: %s; %s\n", orcpt, semicolon + 1);
	} else {
		fprintf(fp, "Original-Recipient: rfc822; %s\n", orcpt);
	}
	free(orcpt);
}

/* Write "Remote-MTA: dns; HOST" (RFC 3464 section 2.3.5) for a reason
 * that an SMTP server sent, with the host name of its remote_mta. */
static void
write_remote_mta(FILE *fp, const struct envelope_rcpt *rcpt)
{
	size_t length;

	if (rcpt->remote_mta == NULL || rcpt->reason == NULL ||
	    !is_smtp_reply(last_attempt_reason(rcpt->reason)))
		return;
	length = strcspn(rcpt->remote_mta, "[");
	if (length > 0)
		fprintf(fp, "Remote-MTA: dns; %.*s\n", (int)length, rcpt->remote_mta);
}

static void
write_status_part(FILE *fp, const struct bounce_report *report)
{
	const struct envelope *env = report->env;
	const char *envid = envelope_attr(env, "envid");
	char arrival[64], until[64];

	format_date(arrival, sizeof arrival, (time_t)(env->arrival_usec / 1000000));
	fprintf(fp, "Content-Description: Delivery report\n"
	    "Content-Type: message/delivery-status\n\n");
	if (envid != NULL) {
		char *clean = envelope_clean_text(envid, 100, 0);

		fprintf(fp, "Original-Envelope-Id: %s\n", clean);
		free(clean);
	}
	fprintf(fp, "Reporting-MTA: dns; %s\n"
	    "X-Estafeta-Queue-ID: %s\n"
	    "Arrival-Date: %s\n",
	    report->myhostname, env->id, arrival);

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct envelope_rcpt *rcpt = &env->rcpts[i];
		char *diagnostic;

		if (!bounce_reports_rcpt(report, rcpt))
			continue;
		fprintf(fp, "\nFinal-Recipient: %s; %s\n",
		    has_8bit(rcpt->address) ? "utf-8" : "rfc822", rcpt->address);
		if (rcpt->orcpt != NULL)
			write_original_recipient(fp, rcpt->orcpt);
		diagnostic = bounce_diagnostic_code(rcpt->reason != NULL ? rcpt->reason : "unknown error");
		fprintf(fp, "Action: %s\nStatus: %s\n", report_action(report, rcpt),
		    report_status(report, rcpt));
		write_remote_mta(fp, rcpt);
		fprintf(fp, "Diagnostic-Code: %s\n", diagnostic);
		free(diagnostic);
		if (report->kind == BOUNCE_DELAYED) {
			format_date(until, sizeof until, report->retry_until);
			fprintf(fp, "Will-Retry-Until: %s\n", until);
		}
	}
	fputs("\n", fp);
}

static const char *
report_subject(const struct bounce_report *report)
{
	switch (report->kind) {
	case BOUNCE_FAILED:
		break;
	case BOUNCE_DELAYED:
		return "Delayed Mail (still being retried)";
	case BOUNCE_DELIVERED:
		return "Successful Mail Delivery Report";
	}
	return "Undelivered Mail Returned to Sender";
}

/* The third part: the whole message for RET=FULL, else its header section. */
static void
write_original_part(FILE *fp, const struct bounce_report *report)
{
	static const char *const state[] = {
		[BOUNCE_FAILED] = "Undelivered", [BOUNCE_DELAYED] = "Delayed",
		[BOUNCE_DELIVERED] = "Delivered",
	};

	if (report->full)
		fprintf(fp, "Content-Description: %s Message\n"
		    "Content-Type: message/rfc822\n\n", state[report->kind]);
	else
		fprintf(fp, "Content-Description: %s Message Headers\n"
		    "Content-Type: text/rfc822-headers\n\n", state[report->kind]);
	fwrite(report->headers, 1, report->headers_len, fp);
	if (report->headers_len > 0 && report->headers[report->headers_len - 1] != '\n')
		fputc('\n', fp);
}

char *
bounce_build(const struct bounce_report *report, size_t *len, int *eightbit)
{
	const char *myhostname = report->myhostname;
	char *buf = NULL, date[64], *boundary;
	size_t size = 0;
	FILE *fp = open_memstream(&buf, &size);

	if (fp == NULL)
		fatal("open_memstream");
	format_date(date, sizeof date, report->now);
	boundary = xasprintf("%s.%lld/%s", report->bounce_id, (long long)report->now, myhostname);

	fprintf(fp, "Date: %s\n"
	    "From: MAILER-DAEMON@%s (Mail Delivery System)\n"
	    "To: <%s>\n"
	    "Subject: %s\n"
	    "Message-ID: <%s@%s>\n"
	    "Auto-Submitted: auto-replied\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\n"
	    "\tboundary=\"%s\"\n\n"
	    "This is a MIME-encapsulated delivery status notification.\n\n",
	    date, myhostname, report->env->sender,
	    report_subject(report),
	    report->bounce_id, myhostname, boundary);

	fprintf(fp, "--%s\n", boundary);
	write_human_part(fp, report);
	fprintf(fp, "--%s\n", boundary);
	write_status_part(fp, report);
	fprintf(fp, "--%s\n", boundary);
	write_original_part(fp, report);
	fprintf(fp, "\n--%s--\n", boundary);
	fclose(fp);
	free(boundary);

	*eightbit = 0;
	for (size_t i = 0; i < size && !*eightbit; i++)
		if ((unsigned char)buf[i] >= 0x80)
			*eightbit = 1;
	*len = size;
	return buf;
}
