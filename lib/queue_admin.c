/* Blocking client for queued's admin requests and the mailq listing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "queue_admin.h"
#include "util.h"

/* How long a request may wait for queued's reply, in seconds. */
#define QUEUE_ADMIN_TIMEOUT 60

static int
admin_connect(const char *socket_path, char *err, size_t errsize)
{
	struct timeval timeout = { QUEUE_ADMIN_TIMEOUT, 0 };
	int sock = ipc_connect(socket_path);

	if (sock < 0) {
		snprintf(err, errsize, "cannot connect to queued at %s: %s (is queued running?)",
		    socket_path, strerror(errno));
		return -1;
	}
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
	return sock;
}

/* Send REQUEST and return the first reply, or NULL with ERR filled. */
static struct ipc_msg *
admin_request(int sock, const struct ipc_msg *request, char *err, size_t errsize)
{
	struct ipc_msg *reply;

	if (ipc_send(sock, request, -1) < 0) {
		snprintf(err, errsize, "sending %s to queued failed: %s", request->type,
		    strerror(errno));
		return NULL;
	}
	reply = ipc_recv(sock);
	if (reply == NULL)
		snprintf(err, errsize, "no reply from queued to %s: %s", request->type,
		    errno == 0 ? "connection closed" :
		    errno == EAGAIN ? "timed out" : strerror(errno));
	return reply;
}

/* Turn an ERROR reply into QUEUE_ADMIN_REFUSED, anything unexpected into UNAVAILABLE. */
static int
reply_status(const struct ipc_msg *reply, const char *expected, char *err, size_t errsize)
{
	if (strcmp(reply->type, expected) == 0)
		return 0;
	if (strcmp(reply->type, "ERROR") == 0) {
		const char *reason = ipc_msg_get(reply, "reason");

		snprintf(err, errsize, "%s", reason != NULL ? reason : "request failed");
		return QUEUE_ADMIN_REFUSED;
	}
	snprintf(err, errsize, "unexpected reply %s from queued", reply->type);
	return QUEUE_ADMIN_UNAVAILABLE;
}

static void
entry_from_msg(const struct ipc_msg *msg, struct queue_entry *entry)
{
	const char *value;

	memset(entry, 0, sizeof *entry);
	value = ipc_msg_get(msg, "id");
	strlcpy_x(entry->id, value != NULL ? value : "", sizeof entry->id);
	entry->arrival = ipc_msg_get_int(msg, "arrival", 0);
	entry->size = ipc_msg_get_int(msg, "size", 0);
	value = ipc_msg_get(msg, "sender");
	entry->sender = xstrdup(value != NULL ? value : "");
	value = ipc_msg_get(msg, "queue");
	strlcpy_x(entry->queue, value != NULL ? value : "", sizeof entry->queue);
	entry->next_attempt = ipc_msg_get_int(msg, "next_attempt", 0);
	entry->attempts = ipc_msg_get_int(msg, "attempts", 0);

	/* The n-th status and reason belong to the n-th rcpt. */
	entry->nrcpts = ipc_msg_count(msg, "rcpt");
	entry->rcpts = xcalloc(entry->nrcpts, sizeof *entry->rcpts);
	for (size_t i = 0; i < entry->nrcpts; i++) {
		const char *status = ipc_msg_get_nth(msg, "status", i);
		const char *reason = ipc_msg_get_nth(msg, "reason", i);

		entry->rcpts[i].address = xstrdup(ipc_msg_get_nth(msg, "rcpt", i));
		entry->rcpts[i].status = xstrdup(status != NULL ? status : "pending");
		entry->rcpts[i].reason = xstrdup(reason != NULL ? reason : "");
	}
}

void
queue_entry_clear(struct queue_entry *entry)
{
	free(entry->sender);
	for (size_t i = 0; i < entry->nrcpts; i++) {
		free(entry->rcpts[i].address);
		free(entry->rcpts[i].status);
		free(entry->rcpts[i].reason);
	}
	free(entry->rcpts);
}

void
queue_entries_free(struct queue_entry *entries, size_t count)
{
	for (size_t i = 0; i < count; i++)
		queue_entry_clear(&entries[i]);
	free(entries);
}

int
queue_admin_list(const char *socket_path, struct queue_entry **entries, size_t *count,
    char *err, size_t errsize)
{
	struct ipc_msg *request = ipc_msg_new("LIST"), *reply;
	struct queue_entry *list = NULL;
	size_t n = 0, cap = 0;
	int sock, rc = 0;

	sock = admin_connect(socket_path, err, errsize);
	if (sock < 0) {
		ipc_msg_free(request);
		return QUEUE_ADMIN_UNAVAILABLE;
	}
	reply = admin_request(sock, request, err, errsize);
	ipc_msg_free(request);

	/* ENTRY frames, one per message, until END. */
	while (reply != NULL && strcmp(reply->type, "ENTRY") == 0) {
		if (n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			list = xrealloc(list, cap * sizeof *list);
		}
		entry_from_msg(reply, &list[n++]);
		ipc_msg_free(reply);
		reply = ipc_recv(sock);
		if (reply == NULL)
			snprintf(err, errsize, "queued closed the connection during LIST");
	}
	if (reply == NULL)
		rc = QUEUE_ADMIN_UNAVAILABLE;
	else
		rc = reply_status(reply, "END", err, errsize);
	ipc_msg_free(reply);
	close(sock);

	if (rc < 0) {
		queue_entries_free(list, n);
		return rc;
	}
	*entries = list;
	*count = n;
	return 0;
}

/* Send one request with an optional id and check the reply type. */
static int
simple_request(const char *socket_path, const char *type, const char *id,
    const char *expected, struct ipc_msg **reply_out, char *err, size_t errsize)
{
	struct ipc_msg *request = ipc_msg_new(type), *reply;
	int sock, rc;

	if (id != NULL && ipc_msg_add(request, "id", id) < 0) {
		snprintf(err, errsize, "invalid queue id");
		ipc_msg_free(request);
		return QUEUE_ADMIN_REFUSED;
	}
	sock = admin_connect(socket_path, err, errsize);
	if (sock < 0) {
		ipc_msg_free(request);
		return QUEUE_ADMIN_UNAVAILABLE;
	}
	reply = admin_request(sock, request, err, errsize);
	ipc_msg_free(request);
	close(sock);
	if (reply == NULL)
		return QUEUE_ADMIN_UNAVAILABLE;

	rc = reply_status(reply, expected, err, errsize);
	if (rc == 0 && reply_out != NULL)
		*reply_out = reply;
	else
		ipc_msg_free(reply);
	return rc;
}

int
queue_admin_show(const char *socket_path, const char *id, struct queue_entry *entry,
    int *data_fd, char *err, size_t errsize)
{
	struct ipc_msg *reply = NULL;
	int rc = simple_request(socket_path, "SHOW", id, "SHOW-OK", &reply, err, errsize);

	if (rc < 0)
		return rc;
	entry_from_msg(reply, entry);
	*data_fd = ipc_msg_take_fd(reply);
	ipc_msg_free(reply);
	if (*data_fd < 0) {
		queue_entry_clear(entry);
		snprintf(err, errsize, "queued sent no data file for %s", id);
		return QUEUE_ADMIN_UNAVAILABLE;
	}
	return 0;
}

int
queue_admin_flush(const char *socket_path, const char *id, long long *count, char *err,
    size_t errsize)
{
	struct ipc_msg *reply = NULL;
	int rc = simple_request(socket_path, "FLUSH", id, "OK", &reply, err, errsize);

	if (rc < 0)
		return rc;
	*count = ipc_msg_get_int(reply, "count", 0);
	ipc_msg_free(reply);
	return 0;
}

int
queue_admin_delete(const char *socket_path, const char *id, char *err, size_t errsize)
{
	return simple_request(socket_path, "DELETE", id, "OK", NULL, err, errsize);
}

static int
rcpt_is_done(const struct queue_rcpt *rcpt)
{
	return strcmp(rcpt->status, "sent") == 0 || strcmp(rcpt->status, "bounced") == 0;
}

/*
 * One message in the layout of Postfix's showq_compat.c (Postfix 3.x,
 * long queue ids): "%-17s %8ld %19.19s %s" for the first line, each
 * recipient indented to column 38, and a "(reason)" line right-aligned
 * to column 76 whenever the reason differs from the previous recipient's.
 */
static void
print_entry(FILE *out, const struct queue_entry *entry)
{
	char id_status[QUEUE_ID_MAX + 2], when[32];
	const char *previous_reason = "";
	time_t arrival = (time_t)entry->arrival;
	struct tm tm;

	snprintf(id_status, sizeof id_status, "%s%s", entry->id,
	    strcmp(entry->queue, "active") == 0 ? "*" : "");
	localtime_r(&arrival, &tm);
	strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
	fprintf(out, "%-17s %8lld %19.19s %s\n", id_status, entry->size, when,
	    *entry->sender != '\0' ? entry->sender : "MAILER-DAEMON");

	for (size_t i = 0; i < entry->nrcpts; i++) {
		const struct queue_rcpt *rcpt = &entry->rcpts[i];

		if (rcpt_is_done(rcpt))
			continue;
		if (strcmp(rcpt->reason, previous_reason) != 0) {
			const char *shown = *rcpt->reason != '\0' ? rcpt->reason : "reason unavailable";
			int padding = 76 - (int)strlen(shown);

			fprintf(out, "%*s(%s)\n", padding > 0 ? padding : 0, "", shown);
			previous_reason = rcpt->reason;
		}
		fprintf(out, "%-17s %8s %-19s %s\n", "", "", "", rcpt->address);
	}
}

void
queue_list_print(FILE *out, const struct queue_entry *entries, size_t count)
{
	unsigned long long total = 0;

	if (count == 0) {
		fprintf(out, "Mail queue is empty\n");
		return;
	}
	fprintf(out, "%-17s %8s %-19s %s\n", "----Queue ID-----", "--Size--",
	    "---Arrival Time----", "--Sender/Recipient------");
	for (size_t i = 0; i < count; i++) {
		if (i > 0)
			fprintf(out, "\n");
		print_entry(out, &entries[i]);
		total += (unsigned long long)entries[i].size;
	}
	fprintf(out, "\n-- %llu Kbytes in %zu Request%s.\n", total / 1024, count,
	    count == 1 ? "" : "s");
}
