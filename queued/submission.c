/* Clients of queued_socket: NEW, COMMIT and ABORT, and admin dispatch. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin.h"
#include "client.h"
#include "commit.h"
#include "commit_dsn.h"
#include "commit_request.h"
#include "envelope.h"
#include "ipc.h"
#include "log.h"
#include "local_filter.h"
#include "log_repeat.h"
#include "queued.h"
#include "scheduler.h"
#include "spool.h"
#include "submission.h"
#include "uid_limits.h"
#include "util.h"

/* Seconds to stop accepting after accept fails (EMFILE and the like):
 * the listening socket stays readable, so retrying at once would spin. */
#define ACCEPT_PAUSE 1

struct commit_request {
	struct client *client;
};

/* A local submission waiting for filterd's verdict before its commit. */
struct filter_request {
	struct client *client;
	struct envelope *env;
	int data_fd;
};

static TAILQ_HEAD(, client) clients = TAILQ_HEAD_INITIALIZER(clients);
static struct event *accept_ev;
static struct event *accept_resume_ev;
static int listen_sock = -1;

static struct client_file *
find_file(struct client *client, const char *id)
{
	for (size_t i = 0; id != NULL && i < client->nfiles; i++)
		if (strcmp(client->files[i].id, id) == 0)
			return &client->files[i];
	return NULL;
}

/* Forget FILE (its descriptor now belongs to someone else or is closed). */
static void
drop_file(struct client *client, struct client_file *file)
{
	*file = client->files[--client->nfiles];
}

static void
discard_file(struct client *client, struct client_file *file)
{
	if (file->own_fd >= 0)
		close(file->own_fd);
	spool_remove_data(&queued_spool, file->id);
	uid_usage_release_file(client->usage);
	drop_file(client, file);
}

static void
handle_new(struct client *client)
{
	static struct log_repeat limit_repeat, create_repeat;
	struct client_file *file;
	struct ipc_msg *reply;
	const char *limit_reason;
	int client_fd;

	if (client->nfiles == CLIENT_FILES_MAX) {
		client_send_fail(client, "NEW-FAIL", NULL, "too many uncommitted messages on one connection");
		return;
	}
	limit_reason = uid_usage_take_file(client->usage);
	if (limit_reason != NULL) {
		log_repeat(&limit_repeat, LOG_REPEAT_WARN, "NEW from uid %u rejected: %s",
		    (unsigned)client->uid, limit_reason);
		client_send_fail(client, "NEW-FAIL", NULL, limit_reason);
		return;
	}

	file = &client->files[client->nfiles];
	if (spool_create_data(&queued_spool, file->id, &client_fd, &file->own_fd) < 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "cannot create a queue file: %s", strerror(errno));
		log_repeat(&create_repeat, LOG_REPEAT_ERROR, "%s", reason);
		uid_usage_release_file(client->usage);
		client_send_fail(client, "NEW-FAIL", NULL, reason);
		return;
	}
	client->nfiles++;

	reply = ipc_msg_new("NEW-OK");
	ipc_msg_add(reply, "id", file->id);
	client_send(client, reply, client_fd);
	ipc_msg_free(reply);
	close(client_fd);
}

/*
 * READER: a read-only descriptor of an uncommitted file of this client,
 * which smtpd passes to filterd in place of its own read-write one. It
 * is a new open file, so reads through it do not move smtpd's offset.
 */
static void
handle_reader(struct client *client, const struct ipc_msg *request)
{
	const char *id = ipc_msg_get(request, "id");
	struct client_file *file = find_file(client, id);
	struct ipc_msg *reply;
	char reason[256];
	int fd;

	if (file == NULL) {
		client_send_fail(client, "READER-FAIL", id, "unknown queue id");
		return;
	}
	fd = openat(queued_spool.data_fd, file->id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(reason, sizeof reason, "cannot open the queue file: %s", strerror(errno));
		log_error("%s: %s", file->id, reason);
		client_send_fail(client, "READER-FAIL", file->id, reason);
		return;
	}

	reply = ipc_msg_new("READER-OK");
	ipc_msg_add(reply, "id", file->id);
	client_send(client, reply, fd);
	ipc_msg_free(reply);
	close(fd);
}

static void
free_client(struct client *client)
{
	TAILQ_REMOVE(&clients, client, entry);
	free(client);
}

static void
log_committed(const struct envelope *env, uid_t uid)
{
	const char *name = envelope_attr(env, "client_name");
	const char *addr = envelope_attr(env, "client_addr");
	const char *protocol = envelope_attr(env, "protocol");
	char client[512];

	snprintf(client, sizeof client, "%s[%s]", name != NULL ? name : "unknown",
	    addr != NULL ? addr : "local");
	log_info("%s: committed, client=%s, protocol=%s, uid=%u", env->id, client,
	    protocol != NULL ? protocol : "unknown", (unsigned)uid);
}

static void
commit_done(struct commit_job *job, void *arg)
{
	struct commit_request *request = arg;
	struct client *client = request->client;
	struct ipc_msg *reply;

	free(request);
	client->commits_in_flight--;
	uid_usage_release_file(client->usage);

	if (job->error != 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "queue file write error: %s", strerror(job->error));
		log_error("%s: commit failed: %s", job->id, reason);
		spool_remove_data(&queued_spool, job->id);
		client_send_fail(client, "COMMIT-FAIL", job->id, reason);
	} else {
		log_committed(job->env, client->uid);
		reply = ipc_msg_new("COMMIT-OK");
		ipc_msg_add(reply, "id", job->id);
		client_send(client, reply, -1);
		ipc_msg_free(reply);
		scheduler_add(job->env);
		job->env = NULL;
	}

	if (client->conn == NULL && client->commits_in_flight == 0)
		free_client(client);
}

/* Fail a local submission that filterd rejected or could not judge, or
 * end one it discarded, without committing it. */
static void
filter_request_end(struct filter_request *pending, const struct local_filter_verdict *verdict)
{
	struct client *client = pending->client;
	struct envelope *env = pending->env;
	struct ipc_msg *reply;

	close(pending->data_fd);
	spool_remove_data(&queued_spool, env->id);
	uid_usage_release_file(client->usage);
	client->commits_in_flight--;

	if (verdict->action == LOCAL_FILTER_DISCARD) {
		log_info("%s: discarded by filterd, uid=%u", env->id, (unsigned)client->uid);
		reply = ipc_msg_new("COMMIT-OK");
		ipc_msg_add(reply, "id", env->id);
		client_send(client, reply, -1);
		ipc_msg_free(reply);
	} else {
		log_info("%s: %s by filterd, uid=%u: %s", env->id,
		    verdict->action == LOCAL_FILTER_REJECT ? "rejected" : "deferred",
		    (unsigned)client->uid, verdict->reply);
		reply = ipc_msg_new("COMMIT-FAIL");
		ipc_msg_add(reply, "id", env->id);
		ipc_msg_add(reply, "reason", verdict->reply);
		if (verdict->action == LOCAL_FILTER_REJECT)
			ipc_msg_add(reply, "permanent", "1");
		client_send(client, reply, -1);
		ipc_msg_free(reply);
	}
	envelope_free(env);

	if (client->conn == NULL && client->commits_in_flight == 0)
		free_client(client);
}

static void
filter_done(const struct local_filter_verdict *verdict, void *arg)
{
	struct filter_request *pending = arg;
	struct commit_request *commit;

	if (verdict->action != LOCAL_FILTER_COMMIT && verdict->action != LOCAL_FILTER_QUARANTINE) {
		filter_request_end(pending, verdict);
		free(pending);
		return;
	}

	if (verdict->action == LOCAL_FILTER_QUARANTINE)
		envelope_set_attr(pending->env, "quarantine", "1");
	commit = xmalloc(sizeof *commit);
	commit->client = pending->client;
	commit_new(pending->env, pending->data_fd, commit_done, commit);
	free(pending);
}

/* Ask filterd about ENV before committing it. The client's
 * commits_in_flight already counts it. */
static void
filter_then_commit(struct client *client, struct envelope *env, int data_fd)
{
	struct filter_request *pending = xmalloc(sizeof *pending);
	const char *submitter = envelope_attr(env, "submitter");

	pending->client = client;
	pending->env = env;
	pending->data_fd = data_fd;
	local_filter_start(env, data_fd, submitter != NULL ? submitter : "", filter_done, pending);
}

static void
handle_commit(struct client *client, const struct ipc_msg *request)
{
	const char *id = ipc_msg_get(request, "id");
	struct client_file *file = find_file(client, id);
	struct commit_request *commit;
	struct envelope *env;
	off_t written;
	char reason[256];

	if (file == NULL) {
		client_send_fail(client, "COMMIT-FAIL", id, "unknown queue id");
		return;
	}
	env = commit_request_envelope(request, id, client->uid, reason, sizeof reason);
	if (env != NULL && commit_dsn_apply(env, request, reason, sizeof reason) < 0) {
		envelope_free(env);
		env = NULL;
	}
	if (env == NULL) {
		client_send_fail(client, "COMMIT-FAIL", id, reason);
		discard_file(client, file);
		return;
	}
	written = spool_data_written(file->own_fd);
	if (written != env->size) {
		snprintf(reason, sizeof reason, "size mismatch: %lld bytes announced, %lld written",
		    env->size, (long long)written);
		log_warn("%s: commit rejected: %s", id, reason);
		client_send_fail(client, "COMMIT-FAIL", id, reason);
		envelope_free(env);
		discard_file(client, file);
		return;
	}
	if (!commit_request_trusted(client->uid)) {
		file->own_fd = spool_take_data(&queued_spool, file->id, file->own_fd, env->size);
		if (file->own_fd < 0) {
			snprintf(reason, sizeof reason, "cannot copy the queue file: %s", strerror(errno));
			log_error("%s: commit failed, uid=%u: %s", id, (unsigned)client->uid, reason);
			client_send_fail(client, "COMMIT-FAIL", id, reason);
			envelope_free(env);
			discard_file(client, file);
			return;
		}
	}
	snprintf(reason, sizeof reason, "%u", (unsigned)client->uid);
	envelope_set_attr(env, "uid", reason);

	/* The file stays counted in the client's uid_usage until the commit
	 * is done, because queued keeps its descriptor open until then. */
	client->commits_in_flight++;
	if (local_filter_wanted(request, client->uid)) {
		filter_then_commit(client, env, file->own_fd);
		drop_file(client, file);
		return;
	}
	commit = xmalloc(sizeof *commit);
	commit->client = client;
	commit_new(env, file->own_fd, commit_done, commit);
	drop_file(client, file);
}

static void
handle_abort(struct client *client, const struct ipc_msg *request)
{
	struct client_file *file = find_file(client, ipc_msg_get(request, "id"));

	if (file != NULL)
		discard_file(client, file);
}

/* The peer is gone: remove its uncommitted files; free it once no
 * commit of its is in flight. */
static void
client_closed(struct client *client)
{
	while (client->nfiles > 0)
		discard_file(client, &client->files[0]);
	ipc_conn_free(client->conn);
	client->conn = NULL;
	uid_usage_disconnect(client->usage);
	if (client->commits_in_flight == 0)
		free_client(client);
}

static void
client_msg_cb(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct client *client = arg;

	if (msg == NULL) {
		client_closed(client);
		return;
	}

	/* The frames already read are still delivered after a drop, so
	 * they are ignored here. */
	if (client->dropped || client_output_full(client)) {
		ipc_msg_free(msg);
		return;
	}

	if (strcmp(msg->type, "NEW") == 0)
		handle_new(client);
	else if (strcmp(msg->type, "COMMIT") == 0)
		handle_commit(client, msg);
	else if (strcmp(msg->type, "ABORT") == 0)
		handle_abort(client, msg);
	else if (strcmp(msg->type, "READER") == 0)
		handle_reader(client, msg);
	else if (admin_handle(client, msg) < 0)
		client_send_fail(client, "ERROR", NULL, "unknown request");
	ipc_msg_free(msg);
}

static void
accept_resume(evutil_socket_t fd, short what, void *arg)
{
	event_add(accept_ev, NULL);
}

static void
accept_failed(int error)
{
	static struct log_repeat repeat;
	struct timeval pause = { ACCEPT_PAUSE, 0 };

	log_repeat(&repeat, LOG_REPEAT_ERROR,
	    "accept on queued_socket failed: %s; pausing new connections for %d second",
	    strerror(error), ACCEPT_PAUSE);
	event_del(accept_ev);
	evtimer_add(accept_resume_ev, &pause);
}

static void
accept_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct log_repeat cred_repeat, limit_repeat;
	struct client *client;
	struct uid_usage *usage;
	uid_t uid;
	pid_t pid;
	int sock = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (sock < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			accept_failed(errno);
		return;
	}
	if (ipc_peer_cred(sock, &uid, NULL, &pid) < 0) {
		log_repeat(&cred_repeat, LOG_REPEAT_ERROR, "cannot read peer credentials on queued_socket: %s",
		    strerror(errno));
		close(sock);
		return;
	}
	usage = uid_usage_connect(uid);
	if (usage == NULL) {
		log_repeat(&limit_repeat, LOG_REPEAT_WARN,
		    "connection from uid %u rejected: queue_connection_user_limit reached", (unsigned)uid);
		close(sock);
		return;
	}

	client = xcalloc(1, sizeof *client);
	client->uid = uid;
	client->pid = pid;
	client->usage = usage;
	client->conn = ipc_conn_new(queued_base, sock, client_msg_cb, client);
	TAILQ_INSERT_TAIL(&clients, client, entry);
}

void
submission_start(int listen_fd)
{
	listen_sock = listen_fd;
	accept_ev = event_new(queued_base, listen_fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	accept_resume_ev = evtimer_new(queued_base, accept_resume, NULL);
	event_add(accept_ev, NULL);
}

void
submission_stop(void)
{
	struct client *client, *next;

	if (accept_ev != NULL)
		event_free(accept_ev);
	accept_ev = NULL;
	if (accept_resume_ev != NULL)
		event_free(accept_resume_ev);
	accept_resume_ev = NULL;
	if (listen_sock >= 0)
		close(listen_sock);
	listen_sock = -1;

	for (client = TAILQ_FIRST(&clients); client != NULL; client = next) {
		next = TAILQ_NEXT(client, entry);
		if (client->conn != NULL)
			client_closed(client);
	}
}
