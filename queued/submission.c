/* Clients of queued_socket: NEW, COMMIT and ABORT, and admin dispatch. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin.h"
#include "commit.h"
#include "envelope.h"
#include "ipc.h"
#include "log.h"
#include "queued.h"
#include "scheduler.h"
#include "spool.h"
#include "submission.h"
#include "util.h"

/* Uncommitted messages one client may hold open at a time. */
#define CLIENT_FILES_MAX 64
/* Recipients one message may have. */
#define COMMIT_RCPT_MAX 10000

/* COMMIT fields copied into the envelope as message attributes. */
static const char *const commit_attrs[] = {
	"client_addr", "client_name", "helo", "protocol", "body", "smtputf8",
	"submitter", "sasl_user",
};

struct client_file {
	char id[QUEUE_ID_MAX];
	int own_fd;		/* read-only descriptor of data/ID */
};

struct client {
	struct ipc_conn *conn;	/* NULL once the peer is gone */
	uid_t uid;
	pid_t pid;
	struct client_file files[CLIENT_FILES_MAX];
	size_t nfiles;
	size_t commits_in_flight;
	TAILQ_ENTRY(client) entry;
};

struct commit_request {
	struct client *client;
};

static TAILQ_HEAD(, client) clients = TAILQ_HEAD_INITIALIZER(clients);
static struct event *accept_ev;
static int listen_sock = -1;

static void
reply_fail(struct client *client, const char *type, const char *id, const char *reason)
{
	struct ipc_msg *reply = ipc_msg_new(type);

	if (id != NULL)
		ipc_msg_add(reply, "id", id);
	ipc_msg_add(reply, "reason", reason);
	ipc_conn_send(client->conn, reply, -1);
	ipc_msg_free(reply);
}

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
	close(file->own_fd);
	spool_remove_data(&queued_spool, file->id);
	drop_file(client, file);
}

static void
handle_new(struct client *client)
{
	struct client_file *file;
	struct ipc_msg *reply;
	int client_fd;

	if (client->nfiles == CLIENT_FILES_MAX) {
		reply_fail(client, "NEW-FAIL", NULL, "too many uncommitted messages on one connection");
		return;
	}
	file = &client->files[client->nfiles];
	if (spool_create_data(&queued_spool, file->id, &client_fd, &file->own_fd) < 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "cannot create a queue file: %s", strerror(errno));
		log_error("%s", reason);
		reply_fail(client, "NEW-FAIL", NULL, reason);
		return;
	}
	client->nfiles++;

	reply = ipc_msg_new("NEW-OK");
	ipc_msg_add(reply, "id", file->id);
	ipc_conn_send(client->conn, reply, client_fd);
	ipc_msg_free(reply);
	close(client_fd);
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

	if (job->error != 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "queue file write error: %s", strerror(job->error));
		log_error("%s: commit failed: %s", job->id, reason);
		spool_remove_data(&queued_spool, job->id);
		if (client->conn != NULL)
			reply_fail(client, "COMMIT-FAIL", job->id, reason);
	} else {
		log_committed(job->env, client->uid);
		if (client->conn != NULL) {
			reply = ipc_msg_new("COMMIT-OK");
			ipc_msg_add(reply, "id", job->id);
			ipc_conn_send(client->conn, reply, -1);
			ipc_msg_free(reply);
		}
		scheduler_add(job->env);
		job->env = NULL;
	}

	if (client->conn == NULL && client->commits_in_flight == 0)
		free_client(client);
}

static int
has_control_chars(const char *text)
{
	for (; *text != '\0'; text++)
		if ((unsigned char)*text < 0x20 || *text == 0x7f)
			return 1;
	return 0;
}

/* Build the envelope from a COMMIT request. NULL with *WHY set if invalid. */
static struct envelope *
envelope_from_commit(const struct ipc_msg *request, const char *id, const char **why)
{
	const char *sender = ipc_msg_get(request, "sender");
	struct envelope *env;
	size_t nrcpts = ipc_msg_count(request, "rcpt");

	if (sender == NULL || has_control_chars(sender)) {
		*why = "sender missing or invalid";
		return NULL;
	}
	if (nrcpts == 0 || nrcpts > COMMIT_RCPT_MAX) {
		*why = nrcpts == 0 ? "no recipients" : "too many recipients";
		return NULL;
	}

	env = envelope_new(id, sender);
	env->arrival_usec = now_usec();
	env->size = ipc_msg_get_int(request, "size", -1);

	/* Fields in order, so each orcpt follows its rcpt. */
	for (size_t i = 0; i < request->nfields; i++) {
		const struct ipc_field *field = &request->fields[i];

		if (strcmp(field->key, "rcpt") == 0) {
			if (field->value[0] == '\0' || has_control_chars(field->value)) {
				*why = "invalid recipient";
				envelope_free(env);
				return NULL;
			}
			envelope_add_rcpt(env, field->value);
		} else if (strcmp(field->key, "orcpt") == 0 && env->nrcpts > 0) {
			free(env->rcpts[env->nrcpts - 1].orcpt);
			env->rcpts[env->nrcpts - 1].orcpt = xstrdup(field->value);
		}
	}
	for (size_t i = 0; i < sizeof commit_attrs / sizeof commit_attrs[0]; i++) {
		const char *value = ipc_msg_get(request, commit_attrs[i]);

		if (value != NULL)
			envelope_set_attr(env, commit_attrs[i], value);
	}
	return env;
}

static void
handle_commit(struct client *client, const struct ipc_msg *request)
{
	const char *id = ipc_msg_get(request, "id");
	struct client_file *file = find_file(client, id);
	struct commit_request *commit;
	struct envelope *env;
	const char *why = NULL;
	struct stat st;
	char reason[256];

	if (file == NULL) {
		reply_fail(client, "COMMIT-FAIL", id, "unknown queue id");
		return;
	}
	env = envelope_from_commit(request, id, &why);
	if (env == NULL) {
		reply_fail(client, "COMMIT-FAIL", id, why);
		discard_file(client, file);
		return;
	}
	if (fstat(file->own_fd, &st) < 0 || st.st_size != env->size) {
		snprintf(reason, sizeof reason, "size mismatch: %lld bytes announced, %lld in the queue file",
		    env->size, (long long)st.st_size);
		log_warn("%s: commit rejected: %s", id, reason);
		reply_fail(client, "COMMIT-FAIL", id, reason);
		envelope_free(env);
		discard_file(client, file);
		return;
	}
	snprintf(reason, sizeof reason, "%u", (unsigned)client->uid);
	envelope_set_attr(env, "uid", reason);

	commit = xmalloc(sizeof *commit);
	commit->client = client;
	client->commits_in_flight++;
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

	if (strcmp(msg->type, "NEW") == 0)
		handle_new(client);
	else if (strcmp(msg->type, "COMMIT") == 0)
		handle_commit(client, msg);
	else if (strcmp(msg->type, "ABORT") == 0)
		handle_abort(client, msg);
	else if (admin_handle(conn, msg, client->uid) < 0)
		reply_fail(client, "ERROR", NULL, "unknown request");
	ipc_msg_free(msg);
}

static void
accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *client;
	int sock = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (sock < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_error("accept on queued_socket: %s", strerror(errno));
		return;
	}
	client = xcalloc(1, sizeof *client);
	if (ipc_peer_cred(sock, &client->uid, NULL, &client->pid) < 0) {
		log_error("peer credentials on queued_socket: %s", strerror(errno));
		close(sock);
		free(client);
		return;
	}
	client->conn = ipc_conn_new(queued_base, sock, client_msg_cb, client);
	TAILQ_INSERT_TAIL(&clients, client, entry);
}

void
submission_start(int listen_fd)
{
	listen_sock = listen_fd;
	accept_ev = event_new(queued_base, listen_fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	event_add(accept_ev, NULL);
}

void
submission_stop(void)
{
	struct client *client, *next;

	if (accept_ev != NULL)
		event_free(accept_ev);
	accept_ev = NULL;
	if (listen_sock >= 0)
		close(listen_sock);
	listen_sock = -1;

	for (client = TAILQ_FIRST(&clients); client != NULL; client = next) {
		next = TAILQ_NEXT(client, entry);
		if (client->conn != NULL)
			client_closed(client);
	}
}
