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

struct bounce_request {
	struct qmsg *msg;
	bounce_done_cb done;
};

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

	headers = read_original_headers(msg->env->id, &headers_len);
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
	envelope_add_rcpt(bounce, msg->env->sender);

	request = xmalloc(sizeof *request);
	request->msg = msg;
	request->done = done;
	commit_new(bounce, own_fd, bounce_committed, request);
}
