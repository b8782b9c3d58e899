/*
 * The master's pool of mailbox workers (mailbox_worker.c): long-lived
 * delivery processes, each running as one mailbox owner, so that a
 * delivery to an existing Maildir costs neither a fork nor barriers of
 * its own.
 *
 * Workers are keyed by uid and gid, plus the user name for system users
 * (whose supplementary groups differ). A request goes to the first
 * worker of its key with fewer than POOL_SPAWN_DEPTH requests in flight,
 * so that deliveries gather in one worker's batches and share its
 * barriers. Another worker starts while all of them have that many, up
 * to deliverd_user_processes per key, and takes the overflow. At that
 * limit a request goes to the worker with the fewest in flight.
 *
 * The master keeps each request until its result arrives: a request that
 * comes back with redo=yes, or that was in flight when its worker died,
 * goes to a one-shot worker.
 *
 * The uid in a request is what the unprivileged session found in the
 * userdb. The worker looks the user up again and refuses any user that
 * does not map to its own uid, so a session cannot use the pool to reach
 * another user's files.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "deliverd.h"
#include "ipc.h"
#include "log.h"
#include "master.h"
#include "privsep.h"
#include "userdb.h"
#include "util.h"

/* Requests in flight before an owner's next worker starts. The depth is
 * large because two workers of one owner contend for the same folders'
 * locks (15% of deliverd's CPU time in a profile of one busy mailbox). */
#define POOL_SPAWN_DEPTH 16
#define POOL_MAX_USE 10000	/* deliveries before a worker is replaced */
#define POOL_IDLE_SECONDS 60	/* idle time before a worker is stopped */

struct pool_request {
	long token;
	long session_request_id;	/* the session's own request id */
	struct session_proc *session;	/* NULL once the session went away */
	struct ipc_msg *msg;	/* the session's DELIVER, with the message */
	struct pool_request *next;
};

struct pool_worker {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char *user;		/* system user (initgroups), or NULL */
	struct ipc_conn *conn;	/* NULL once closed */
	struct pool_request *requests;
	size_t in_flight;
	long uses;
	int retiring;		/* no new requests; stop when idle */
	int closing;		/* channel shut down, its end of file pending */
	int exited;
	time_t idle_since;
	struct pool_worker *next;
};

static struct event_base *pool_base;
static struct event *idle_timer;
static struct pool_worker *pool_workers;
static long next_token = 1;
static long long per_key_max;

static int
same_key(const struct pool_worker *w, uid_t uid, gid_t gid, const char *user)
{
	if (w->uid != uid || w->gid != gid)
		return 0;
	if (w->user == NULL || user == NULL)
		return w->user == user;
	return strcmp(w->user, user) == 0;
}

static struct pool_request *
take_request(struct pool_worker *w, long token)
{
	struct pool_request **link;

	for (link = &w->requests; *link != NULL; link = &(*link)->next) {
		struct pool_request *r = *link;

		if (r->token == token) {
			*link = r->next;
			w->in_flight--;
			if (w->in_flight == 0)
				w->idle_since = time(NULL);
			return r;
		}
	}
	return NULL;
}

/* A request the pool gives up on goes to a one-shot worker. */
static void
redo_request(struct pool_request *r)
{
	if (r->session != NULL)
		master_dispatch_oneshot(r->session, r->msg);
	else
		ipc_msg_free(r->msg);
	free(r);
}

static void
free_worker_if_done(struct pool_worker *w)
{
	struct pool_worker **link;

	if (w->conn != NULL || !w->exited)
		return;
	while (w->requests != NULL) {
		struct pool_request *r = w->requests;

		w->requests = r->next;
		redo_request(r);
	}
	for (link = &pool_workers; *link != NULL; link = &(*link)->next) {
		if (*link == w) {
			*link = w->next;
			break;
		}
	}
	free(w->user);
	free(w);
	master_release_slot();
}

/* Stop W: its channel is shut down, which may happen inside one of its
 * own callbacks, and freed when the end of file arrives. */
static void
close_worker(struct pool_worker *w)
{
	if (w->conn == NULL || w->closing)
		return;
	w->closing = 1;
	ipc_conn_shutdown(w->conn);
}

/* Whether W takes requests. */
static int
worker_usable(const struct pool_worker *w)
{
	return w->conn != NULL && !w->closing && !w->retiring;
}

static void
on_worker_result(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct pool_worker *w = arg;
	struct pool_request *r;
	struct delivery_result result;

	if (msg == NULL) {
		ipc_conn_free(conn);
		w->conn = NULL;
		free_worker_if_done(w);
		return;
	}
	r = strcmp(msg->type, "RESULT") == 0 ?
	    take_request(w, (long)ipc_msg_get_int(msg, "id", -1)) : NULL;
	if (r == NULL) {
		log_warn("unexpected %s from mailbox worker %ld", msg->type, (long)w->pid);
		ipc_msg_free(msg);
		return;
	}

	if (ipc_msg_get(msg, "redo") != NULL) {
		redo_request(r);
	} else {
		result_from_msg(&result, msg);
		master_send_result(r->session, &result, r->session_request_id);
		ipc_msg_free(r->msg);
		free(r);
	}
	ipc_msg_free(msg);

	/* An idle worker gives its slot to requests waiting for one. */
	if (w->in_flight == 0 && (w->retiring || master_requests_waiting()))
		close_worker(w);
}

static struct pool_worker *
start_worker(uid_t uid, gid_t gid, const char *user)
{
	struct pool_worker *w;
	int pair[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		return NULL;
	pid = fork();
	if (pid < 0) {
		close(pair[0]);
		close(pair[1]);
		return NULL;
	}
	if (pid == 0) {
		struct userdb_client *userdb = userdb_client_new(config_string("userdb_socket"));
		char err[256];

		master_child_setup(pair[1], -1);
		close(pair[0]);
		if (userdb_client_connect(userdb, err, sizeof err) < 0)
			fatalx("mailbox worker: %s", err);
		if (worker_become(uid, gid, user, (gid_t)-1) < 0)
			fatal("mailbox worker: cannot switch to uid %u", (unsigned)uid);
		mailbox_worker_run(pair[1], uid, gid, userdb);
		_exit(0);
	}

	close(pair[1]);
	w = xcalloc(1, sizeof *w);
	w->pid = pid;
	w->uid = uid;
	w->gid = gid;
	w->user = user != NULL ? xstrdup(user) : NULL;
	w->conn = ipc_conn_new(pool_base, pair[0], on_worker_result, w);
	w->idle_since = time(NULL);
	w->next = pool_workers;
	pool_workers = w;
	master_take_slot();
	return w;
}

/*
 * Return the worker of the key to use, starting one if needed and
 * allowed. Spreading requests evenly would halve each worker's batches,
 * so more barriers, and the workers would compete for the same
 * directories.
 */
static struct pool_worker *
choose_worker(uid_t uid, gid_t gid, const char *user)
{
	struct pool_worker *first = NULL, *least = NULL;
	long long count = 0;

	for (struct pool_worker *w = pool_workers; w != NULL; w = w->next) {
		if (!worker_usable(w) || !same_key(w, uid, gid, user))
			continue;
		count++;
		if (first == NULL && w->in_flight < POOL_SPAWN_DEPTH)
			first = w;
		if (least == NULL || w->in_flight < least->in_flight)
			least = w;
	}
	if (first != NULL)
		return first;
	if (least != NULL && count >= per_key_max)
		return least;
	if (master_free_slots() > 0) {
		struct pool_worker *fresh = start_worker(uid, gid, user);

		if (fresh != NULL)
			return fresh;
	}
	/* With no worker and no slot, the request goes to a one-shot worker,
	 * and master_dispatch_oneshot frees a slot for it. */
	return least;
}

/* A copy of the session's request with only the fields a mailbox
 * delivery uses, and the master's token as its id. */
static struct ipc_msg *
worker_request(const struct ipc_msg *msg, long token)
{
	static const char *const fields[] = {
		"kind", "session", "sender", "recipient", "orig_recipient", "start", "detail",
		"user", "forward", "quarantine",
	};
	struct ipc_msg *copy = ipc_msg_new("DELIVER");

	ipc_msg_addf(copy, "id", "%ld", token);
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		const char *value = ipc_msg_get(msg, fields[i]);

		if (value != NULL)
			ipc_msg_add(copy, fields[i], value);
	}
	return copy;
}

int
pool_dispatch(struct session_proc *session, struct ipc_msg *msg)
{
	const char *kind = ipc_msg_get(msg, "kind");
	const char *user = ipc_msg_get(msg, "user");
	long long uid = ipc_msg_get_int(msg, "uid", -1);
	long long gid = ipc_msg_get_int(msg, "gid", -1);
	int system_user = ipc_msg_get(msg, "forward") != NULL &&
	    strcmp(ipc_msg_get(msg, "forward"), "yes") == 0;
	struct pool_worker *w;
	struct pool_request *r;
	struct ipc_msg *request;

	if (kind == NULL || strcmp(kind, "mailbox") != 0 || user == NULL || msg->fd < 0)
		return 0;
	if (uid <= 0 || uid >= (long long)(uid_t)-1 || gid <= 0 || gid >= (long long)(gid_t)-1)
		return 0;
	if (privsep_is_root() == 0 && (uid_t)uid != getuid())
		return 0;
	/* The session names the user whose groups the worker gets: only if
	 * the system agrees that the user has this uid and gid. */
	if (system_user && privsep_is_root()) {
		struct passwd *pw = getpwnam(user);

		if (pw == NULL || pw->pw_uid != (uid_t)uid || pw->pw_gid != (gid_t)gid)
			return 0;
	}

	w = choose_worker((uid_t)uid, (gid_t)gid, system_user ? user : NULL);
	if (w == NULL)
		return 0;

	r = xcalloc(1, sizeof *r);
	r->token = next_token++;
	r->session_request_id = (long)ipc_msg_get_int(msg, "id", -1);
	r->session = session;
	r->msg = msg;
	request = worker_request(msg, r->token);
	if (ipc_conn_send(w->conn, request, msg->fd) < 0) {
		ipc_msg_free(request);
		free(r);
		return 0;
	}
	ipc_msg_free(request);

	r->next = w->requests;
	w->requests = r;
	w->in_flight++;
	if (++w->uses >= POOL_MAX_USE)
		w->retiring = 1;
	return 1;
}

int
pool_stop_idle_worker(void)
{
	struct pool_worker *oldest = NULL;

	for (struct pool_worker *w = pool_workers; w != NULL; w = w->next)
		if (w->conn != NULL && !w->closing && w->in_flight == 0 &&
		    (oldest == NULL || w->idle_since < oldest->idle_since))
			oldest = w;
	if (oldest == NULL)
		return 0;
	close_worker(oldest);
	return 1;
}

int
pool_reap(pid_t pid, int status)
{
	for (struct pool_worker *w = pool_workers; w != NULL; w = w->next) {
		if (w->pid != pid)
			continue;
		if (WIFSIGNALED(status))
			log_error("mailbox worker %ld (uid %u) killed by signal %d", (long)pid,
			    (unsigned)w->uid, WTERMSIG(status));
		else if (WEXITSTATUS(status) != 0)
			log_error("mailbox worker %ld (uid %u) exited with status %d", (long)pid,
			    (unsigned)w->uid, WEXITSTATUS(status));
		/* Results it sent before it died are still read: the
		 * channel is freed at its end of file. */
		w->exited = 1;
		free_worker_if_done(w);
		return 1;
	}
	return 0;
}

void
pool_forget_session(struct session_proc *session)
{
	for (struct pool_worker *w = pool_workers; w != NULL; w = w->next)
		for (struct pool_request *r = w->requests; r != NULL; r = r->next)
			if (r->session == session)
				r->session = NULL;
}

static void
on_idle_timer(evutil_socket_t fd, short what, void *arg)
{
	time_t now = time(NULL);

	for (struct pool_worker *w = pool_workers; w != NULL; w = w->next)
		if (w->conn != NULL && w->in_flight == 0 && now - w->idle_since >= POOL_IDLE_SECONDS)
			close_worker(w);
}

void
pool_init(struct event_base *base)
{
	struct timeval tick = { .tv_sec = 5 };

	pool_base = base;
	per_key_max = config_int("deliverd_user_processes");
	idle_timer = event_new(base, -1, EV_PERSIST, on_idle_timer, NULL);
	event_add(idle_timer, &tick);
}

void
pool_stop(void)
{
	/* The event loop has ended, so no callback runs: free directly. */
	for (struct pool_worker *w = pool_workers; w != NULL; w = w->next) {
		if (w->conn != NULL)
			ipc_conn_free(w->conn);
		w->conn = NULL;
	}
	if (idle_timer != NULL)
		event_free(idle_timer);
	idle_timer = NULL;
}
