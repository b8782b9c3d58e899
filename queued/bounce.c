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

/* Maximum bytes of the original header section in a notification. */
#define BOUNCE_HEADERS_MAX (64 * 1024)

/* Largest message a RET=FULL failure report returns whole; a larger one
 * comes back as its header section only. The value is the default of
 * Postfix's bounce_size_limit. */
#define BOUNCE_FULL_MAX 50000

struct bounce_request {
	struct qmsg *msg;
	bounce_done_cb done;
};

/* Read the header section of ENV's message (up to BOUNCE_HEADERS_MAX,
 * cut at a line end). Returns a new buffer, possibly empty. */
static char *
read_original_headers(const struct envelope *env, size_t *len)
{
	char *buf = xmalloc(BOUNCE_HEADERS_MAX + 1);
	int fd = spool_open_data(&queued_spool, env);
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

/* Read the whole of ENV's message of SIZE bytes (at most
 * BOUNCE_FULL_MAX). Returns a new buffer, or NULL if the file is shorter
 * or unreadable. */
static char *
read_original_message(const struct envelope *env, long long size, size_t *len)
{
	char *buf = xmalloc((size_t)size + 1);
	int fd = spool_open_data(&queued_spool, env);
	ssize_t n = -1;

	if (fd >= 0) {
		n = pread(fd, buf, (size_t)size, 0);
		close(fd);
	}
	if (n != (ssize_t)size) {
		free(buf);
		return NULL;
	}
	*len = (size_t)size;
	return buf;
}

/* The original message for REPORT: all of it for a RET=FULL failure
 * report of a message within BOUNCE_FULL_MAX, else its header section. */
static char *
read_original(struct bounce_report *report, size_t *len)
{
	const struct envelope *env = report->env;
	const char *ret = envelope_attr(env, "ret");
	char *text;

	report->full = 0;
	if (report->kind == BOUNCE_FAILED && ret != NULL && strcmp(ret, "FULL") == 0 &&
	    env->size > 0 && env->size <= BOUNCE_FULL_MAX) {
		text = read_original_message(env, env->size, len);
		if (text != NULL) {
			report->full = 1;
			return text;
		}
	}
	return read_original_headers(env, len);
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
bounce_send(struct qmsg *msg, enum bounce_kind kind, bounce_done_cb done)
{
	struct bounce_request *request;
	struct bounce_report report = {
		.env = msg->env,
		.kind = kind,
		.myhostname = queued_settings.myhostname,
		.now = time(NULL),
	};
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

	headers = read_original(&report, &headers_len);
	report.headers = headers;
	report.headers_len = headers_len;
	report.bounce_id = id;
	report.retry_until = (time_t)(msg->env->arrival_usec / 1000000 +
	    queued_settings.maximal_queue_lifetime);
	text = bounce_build(&report, &len, &eightbit);
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
	for (const char *p = msg->env->sender; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80) {
			envelope_set_attr(bounce, "smtputf8", "yes");
			break;
		}
	}
	/* A report quotes the message, so it travels under the same TLS policy. */
	if (envelope_attr(msg->env, "requiretls") != NULL)
		envelope_set_attr(bounce, "requiretls", "1");
	envelope_add_rcpt(bounce, msg->env->sender);

	request = xmalloc(sizeof *request);
	request->msg = msg;
	request->done = done;
	commit_new(bounce, own_fd, bounce_committed, request);
}
