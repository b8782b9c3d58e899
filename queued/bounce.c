/* Delivery status notifications (RFC 3464) for failed recipients. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "commit.h"
#include "envelope.h"
#include "log.h"
#include "queued.h"
#include "scheduler.h"
#include "spool.h"
#include "util.h"

/* Longest original header section returned, and longest diagnostic text. */
#define BOUNCE_HEADERS_MAX (64 * 1024)
#define BOUNCE_DIAGNOSTIC_MAX 400

struct bounce_request {
	struct qmsg *msg;
	bounce_done_cb done;
};

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

/* Read the header section of message ID (up to BOUNCE_HEADERS_MAX,
 * cut at a line end). Returns a new buffer, possibly empty. */
static char *
read_original_headers(const char *id, size_t *len)
{
	char *buf = xmalloc(BOUNCE_HEADERS_MAX + 1);
	int fd = spool_open_data(&queued_spool, id);
	ssize_t n = 0;
	char *end;

	*len = 0;
	if (fd >= 0) {
		n = pread(fd, buf, BOUNCE_HEADERS_MAX, 0);
		close(fd);
	}
	if (n <= 0)
		return buf;
	buf[n] = '\0';

	if (buf[0] == '\n') {
		*len = 0;
	} else if ((end = memmem(buf, (size_t)n, "\n\n", 2)) != NULL) {
		*len = (size_t)(end - buf) + 1;
	} else {
		end = memrchr(buf, '\n', (size_t)n);
		*len = end != NULL ? (size_t)(end - buf) + 1 : 0;
	}
	return buf;
}

static void
bounce_committed(struct commit_job *job, void *arg)
{
	struct bounce_request *request = arg;

	if (job->error != 0) {
		log_error("%s: queue the delivery status notification: %s",
		    request->msg->env->id, strerror(job->error));
		spool_remove_data(&queued_spool, job->id);
		request->done(request->msg, NULL);
		free(request);
		return;
	}

	request->done(request->msg, job->id);
	scheduler_add(job->env);
	job->env = NULL;
	free(request);
}

void
bounce_send(struct qmsg *msg, bounce_done_cb done)
{
	struct bounce_request *request;
	struct envelope *bounce;
	char id[QUEUE_ID_MAX], *headers, *text;
	size_t headers_len, len;
	int client_fd, own_fd, eightbit;

	if (spool_create_data(&queued_spool, id, &client_fd, &own_fd) < 0) {
		log_error("%s: create the delivery status notification: %s", msg->env->id,
		    strerror(errno));
		done(msg, NULL);
		return;
	}

	headers = read_original_headers(msg->env->id, &headers_len);
	text = bounce_build(msg->env, headers, headers_len, queued_settings.myhostname, id,
	    time(NULL), &len, &eightbit);
	free(headers);
	if (write_all(client_fd, text, len) < 0) {
		log_error("%s: write the delivery status notification: %s", msg->env->id,
		    strerror(errno));
		close(client_fd);
		close(own_fd);
		free(text);
		spool_remove_data(&queued_spool, id);
		done(msg, NULL);
		return;
	}
	close(client_fd);
	free(text);

	bounce = envelope_new(id, "");
	bounce->arrival_usec = now_usec();
	bounce->size = (long long)len;
	envelope_set_attr(bounce, "protocol", "LOCAL");
	envelope_set_attr(bounce, "body", eightbit ? "8BITMIME" : "7BIT");
	if (has_8bit(msg->env->sender))
		envelope_set_attr(bounce, "smtputf8", "yes");
	envelope_add_rcpt(bounce, msg->env->sender);

	request = xmalloc(sizeof *request);
	request->msg = msg;
	request->done = done;
	commit_new(bounce, own_fd, bounce_committed, request);
}
