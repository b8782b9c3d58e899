/* Blocking submission client for queued (see submit.h, queue_proto.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "submit.h"
#include "util.h"

#define SUBMIT_BUFFER_SIZE 65536

struct submit {
	int sock;
	int data_fd;		/* write-only queue file from NEW-OK */
	char id[QUEUE_ID_MAX];
	long long size;		/* bytes written so far */
	int write_error;	/* errno of a failed write, 0 if none */
	char buf[SUBMIT_BUFFER_SIZE];
	size_t buflen;
};

static void set_error(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_error(char *err, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errsize == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
}

static void
submit_free(struct submit *s)
{
	if (s->data_fd >= 0)
		close(s->data_fd);
	if (s->sock >= 0)
		close(s->sock);
	free(s);
}

struct submit *
submit_begin(const char *socket_path, char *err, size_t errsize)
{
	int sock = ipc_connect(socket_path);

	if (sock < 0) {
		set_error(err, errsize, "connect to queued: %s", strerror(errno));
		return NULL;
	}
	return submit_begin_socket(sock, err, errsize);
}

struct submit *
submit_begin_socket(int sock, char *err, size_t errsize)
{
	struct submit *s = xcalloc(1, sizeof *s);
	struct ipc_msg *request, *reply;
	const char *id;

	s->data_fd = -1;
	s->sock = sock;

	request = ipc_msg_new("NEW");
	if (ipc_send(s->sock, request, -1) < 0) {
		set_error(err, errsize, "send to queued: %s", strerror(errno));
		ipc_msg_free(request);
		submit_free(s);
		return NULL;
	}
	ipc_msg_free(request);

	reply = ipc_recv(s->sock);
	if (reply == NULL) {
		set_error(err, errsize, "no reply from queued: %s", errno ? strerror(errno) : "connection closed");
		submit_free(s);
		return NULL;
	}
	id = ipc_msg_get(reply, "id");
	if (strcmp(reply->type, "NEW-OK") != 0 || reply->fd < 0 || id == NULL ||
	    strlen(id) >= sizeof s->id) {
		const char *reason = ipc_msg_get(reply, "reason");

		set_error(err, errsize, "queued cannot take a message: %s",
		    reason != NULL ? reason : "invalid reply");
		ipc_msg_free(reply);
		submit_free(s);
		return NULL;
	}
	strlcpy_x(s->id, id, sizeof s->id);
	s->data_fd = ipc_msg_take_fd(reply);
	ipc_msg_free(reply);
	return s;
}

const char *
submit_queue_id(const struct submit *s)
{
	return s->id;
}

static int
submit_flush(struct submit *s)
{
	if (s->write_error == 0 && s->buflen > 0 && write_all(s->data_fd, s->buf, s->buflen) < 0)
		s->write_error = errno;
	s->buflen = 0;
	return s->write_error != 0 ? -1 : 0;
}

int
submit_write(struct submit *s, const void *buf, size_t len)
{
	if (s->write_error != 0)
		return -1;
	s->size += (long long)len;
	if (len > sizeof s->buf - s->buflen) {
		if (submit_flush(s) < 0)
			return -1;
		if (len >= sizeof s->buf) {
			if (write_all(s->data_fd, buf, len) < 0) {
				s->write_error = errno;
				return -1;
			}
			return 0;
		}
	}
	memcpy(s->buf + s->buflen, buf, len);
	s->buflen += len;
	return 0;
}

int
submit_commit(struct submit *s, struct ipc_msg *envelope, char *err, size_t errsize)
{
	struct ipc_msg *reply;
	int rc = -1;

	if (submit_flush(s) < 0) {
		set_error(err, errsize, "write queue file: %s", strerror(s->write_error));
		submit_abort(s);
		return -1;
	}
	close(s->data_fd);
	s->data_fd = -1;

	ipc_msg_add(envelope, "id", s->id);
	ipc_msg_addf(envelope, "size", "%lld", s->size);
	if (ipc_send(s->sock, envelope, -1) < 0) {
		set_error(err, errsize, "send to queued: %s", strerror(errno));
		submit_free(s);
		return -1;
	}

	reply = ipc_recv(s->sock);
	if (reply == NULL) {
		set_error(err, errsize, "no reply from queued: %s", errno ? strerror(errno) : "connection closed");
	} else if (strcmp(reply->type, "COMMIT-OK") == 0) {
		rc = 0;
	} else {
		const char *reason = ipc_msg_get(reply, "reason");

		set_error(err, errsize, "queued did not commit the message: %s",
		    reason != NULL ? reason : "invalid reply");
		if (ipc_msg_get_int(reply, "permanent", 0) == 1)
			rc = -2;
	}
	ipc_msg_free(reply);
	submit_free(s);
	return rc;
}

void
submit_abort(struct submit *s)
{
	struct ipc_msg *request = ipc_msg_new("ABORT");

	ipc_msg_add(request, "id", s->id);
	ipc_send(s->sock, request, -1);
	ipc_msg_free(request);
	submit_free(s);
}
