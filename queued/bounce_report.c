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

char *
bounce_diagnostic_code(const char *reason)
{
	char *clean = envelope_clean_text(reason, BOUNCE_DIAGNOSTIC_MAX, 0);
	char *code = xasprintf("%s; %s", is_smtp_reply(clean) ? "smtp" : "X-Estafeta", clean);

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

static void
write_human_part(FILE *fp, const struct envelope *env, const char *myhostname)
{
	fprintf(fp, "Content-Description: Notification\n"
	    "Content-Type: text/plain; charset=utf-8\n\n"
	    "This is the mail system at host %s.\n\n"
	    "Your message could not be delivered to one or more recipients.\n"
	    "The delivery report and the header of your message are attached.\n\n",
	    myhostname);
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct envelope_rcpt *rcpt = &env->rcpts[i];
		char *reason;

		if (rcpt->status != RCPT_FAILED)
			continue;
		reason = envelope_clean_text(rcpt->reason != NULL ? rcpt->reason : "unknown error",
		    BOUNCE_DIAGNOSTIC_MAX, 0);
		fprintf(fp, "<%s>: %s\n", rcpt->address, reason);
		free(reason);
	}
	fputs("\n", fp);
}

static void
write_status_part(FILE *fp, const struct envelope *env, const char *myhostname)
{
	char arrival[64];

	format_date(arrival, sizeof arrival, (time_t)(env->arrival_usec / 1000000));
	fprintf(fp, "Content-Description: Delivery report\n"
	    "Content-Type: message/delivery-status\n\n"
	    "Reporting-MTA: dns; %s\n"
	    "X-Estafeta-Queue-ID: %s\n"
	    "Arrival-Date: %s\n",
	    myhostname, env->id, arrival);

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct envelope_rcpt *rcpt = &env->rcpts[i];
		const char *status = valid_status(rcpt->dsn);
		char *diagnostic;

		if (rcpt->status != RCPT_FAILED)
			continue;
		fprintf(fp, "\nFinal-Recipient: %s; %s\n",
		    has_8bit(rcpt->address) ? "utf-8" : "rfc822", rcpt->address);
		if (rcpt->orcpt != NULL) {
			char *orcpt = envelope_clean_text(rcpt->orcpt, 512, 1);

			fprintf(fp, "Original-Recipient: %s\n", orcpt);
			free(orcpt);
		}
		diagnostic = bounce_diagnostic_code(rcpt->reason != NULL ? rcpt->reason : "unknown error");
		fprintf(fp, "Action: failed\nStatus: %s\nDiagnostic-Code: %s\n",
		    status != NULL ? status : "5.0.0", diagnostic);
		free(diagnostic);
	}
	fputs("\n", fp);
}

char *
bounce_build(const struct envelope *env, const char *headers, size_t headers_len,
    const char *myhostname, const char *bounce_id, time_t now, size_t *len, int *eightbit)
{
	char *buf = NULL, date[64], *boundary;
	size_t size = 0;
	FILE *fp = open_memstream(&buf, &size);

	if (fp == NULL)
		fatal("open_memstream");
	format_date(date, sizeof date, now);
	boundary = xasprintf("%s.%lld/%s", bounce_id, (long long)now, myhostname);

	fprintf(fp, "Date: %s\n"
	    "From: MAILER-DAEMON@%s (Mail Delivery System)\n"
	    "To: <%s>\n"
	    "Subject: Undelivered Mail Returned to Sender\n"
	    "Message-ID: <%s@%s>\n"
	    "Auto-Submitted: auto-replied\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\n"
	    "\tboundary=\"%s\"\n\n"
	    "This is a MIME-encapsulated delivery status notification.\n\n",
	    date, myhostname, env->sender, bounce_id, myhostname, boundary);

	fprintf(fp, "--%s\n", boundary);
	write_human_part(fp, env, myhostname);
	fprintf(fp, "--%s\n", boundary);
	write_status_part(fp, env, myhostname);
	fprintf(fp, "--%s\n"
	    "Content-Description: Undelivered Message Headers\n"
	    "Content-Type: text/rfc822-headers\n\n", boundary);
	fwrite(headers, 1, headers_len, fp);
	if (headers_len > 0 && headers[headers_len - 1] != '\n')
		fputc('\n', fp);
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
