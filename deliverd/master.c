/*
 * The root master: accepts LMTP connections and forks a session process
 * for each. Each DELIVER request the sessions send goes to a mailbox
 * worker of the pool (pool.c) when it is a mailbox delivery, else to a
 * one-shot worker forked for it. At most deliverd_max_processes workers
 * of both kinds run at a time. The master relays each RESULT back and
 * reads only IPC frames from its own children.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "deliverd.h"
#include "ipc.h"
#include "log.h"
#include "master.h"
#include "util.h"

struct session_proc {
	pid_t pid;
	struct ipc_conn *conn;		/* NULL once the channel closed */
	int exited;
	struct session_proc *next;
};

struct worker_proc {
	pid_t pid;
	long request_id;
	char session_id[16];
	struct session_proc *session;	/* NULL if the session went away */
	struct ipc_conn *conn;		/* NULL once the worker closed it */
	struct ipc_msg *result;
	int exited;
	int exit_status;
	struct worker_proc *next;
};

/* A DELIVER request waiting for a free worker slot. */
struct pending_request {
	struct session_proc *session;
	struct ipc_msg *msg;		/* owns the message descriptor */
	int oneshot;			/* the pool gave it back: fork for it */
	struct pending_request *next;
};

static struct event_base *base;
static struct event *accept_event;
static int listen_fd = -1;
static struct session_proc *sessions;
static struct worker_proc *workers;
static struct pending_request *pending_head, *pending_tail;
static long long session_count, worker_count;
static long long max_sessions, max_workers;

void
master_child_setup(int keep_a, int keep_b)
{
	static const int signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };

	for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
		signal(signals[i], SIG_DFL);

	/* Everything: the listening socket, other children's channels, the
	 * messages of other requests (also the copies waiting in the
	 * output queues of channels), the event loop's own descriptors. */
	log_close_syslog();
	close_descriptors_except(keep_a, keep_b);
	log_reopen_syslog();
}

static void start_pending(void);

int
master_requests_waiting(void)
{
	return pending_head != NULL;
}

long long
master_free_slots(void)
{
	return max_workers - worker_count;
}

void
master_take_slot(void)
{
	worker_count++;
}

void
master_release_slot(void)
{
	worker_count--;
	start_pending();
}

static void
session_free_if_done(struct session_proc *session)
{
	struct session_proc **link;

	if (session->conn != NULL || !session->exited)
		return;
	for (link = &sessions; *link != NULL; link = &(*link)->next) {
		if (*link == session) {
			*link = session->next;
			break;
		}
	}
	free(session);
}

void
master_send_result(struct session_proc *session, const struct delivery_result *result, long id)
{
	struct ipc_msg *msg;

	if (session == NULL || session->conn == NULL)
		return;
	msg = result_to_msg(result, id);
	if (ipc_conn_send(session->conn, msg, -1) < 0)
		log_warn("cannot queue a delivery result for session pid %ld: %s", (long)session->pid,
		    strerror(errno));
	ipc_msg_free(msg);
}

static void dispatch(struct session_proc *session, struct ipc_msg *msg);
static void worker_start(struct session_proc *session, struct ipc_msg *msg);

static void
start_pending(void)
{
	while (pending_head != NULL && worker_count < max_workers) {
		struct pending_request *p = pending_head;

		pending_head = p->next;
		if (pending_head == NULL)
			pending_tail = NULL;
		if (p->oneshot)
			worker_start(p->session, p->msg);
		else
			dispatch(p->session, p->msg);
		free(p);
	}
}

/* Relay the worker's result once it has both exited and closed its
 * channel, then free the slot. */
static void
worker_finish_if_done(struct worker_proc *worker)
{
	struct worker_proc **link;
	struct delivery_result result;

	if (worker->conn != NULL || !worker->exited)
		return;

	if (worker->result != NULL &&
	    ipc_msg_get_int(worker->result, "id", -1) == worker->request_id) {
		result_from_msg(&result, worker->result);
	} else if (WIFSIGNALED(worker->exit_status)) {
		log_error("%s: delivery process %ld killed by signal %d", worker->session_id,
		    (long)worker->pid, WTERMSIG(worker->exit_status));
		result_set(&result, EX_TEMPFAIL, "4.3.0", "delivery process killed by signal %d",
		    WTERMSIG(worker->exit_status));
	} else {
		log_error("%s: delivery process %ld exited with status %d without a result",
		    worker->session_id, (long)worker->pid, WEXITSTATUS(worker->exit_status));
		result_set(&result, EX_TEMPFAIL, "4.3.0", "delivery process failed");
	}
	master_send_result(worker->session, &result, worker->request_id);

	for (link = &workers; *link != NULL; link = &(*link)->next) {
		if (*link == worker) {
			*link = worker->next;
			break;
		}
	}
	ipc_msg_free(worker->result);
	free(worker);
	master_release_slot();
}

static void
on_worker_msg(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct worker_proc *worker = arg;

	if (msg == NULL) {
		ipc_conn_free(conn);
		worker->conn = NULL;
		worker_finish_if_done(worker);
		return;
	}
	if (strcmp(msg->type, "RESULT") == 0 && worker->result == NULL) {
		worker->result = msg;
		return;
	}
	log_warn("%s: unexpected %s from delivery process %ld", worker->session_id, msg->type,
	    (long)worker->pid);
	ipc_msg_free(msg);
}

/* Fork a worker for MSG (which this function frees). */
static void
worker_start(struct session_proc *session, struct ipc_msg *msg)
{
	struct worker_proc *worker;
	struct delivery_result result;
	long id = (long)ipc_msg_get_int(msg, "id", -1);
	const char *session_id = ipc_msg_get(msg, "session");
	int pair[2];
	pid_t pid;

	if (session == NULL) {
		ipc_msg_free(msg);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0 || (pid = fork()) < 0) {
		log_error("cannot start a delivery process: %s", strerror(errno));
		result_set(&result, EX_TEMPFAIL, "4.3.0", "cannot start a delivery process");
		master_send_result(session, &result, id);
		ipc_msg_free(msg);
		return;
	}
	if (pid == 0) {
		master_child_setup(msg->fd, pair[1]);
		close(pair[0]);
		worker_run(msg, msg->fd, pair[1]);
		_exit(0);
	}

	close(pair[1]);
	worker = xcalloc(1, sizeof *worker);
	worker->pid = pid;
	worker->request_id = id;
	worker->session = session;
	strlcpy_x(worker->session_id, session_id != NULL ? session_id : "-",
	    sizeof worker->session_id);
	worker->conn = ipc_conn_new(base, pair[0], on_worker_msg, worker);
	worker->next = workers;
	workers = worker;
	worker_count++;
	ipc_msg_free(msg);
}

static void
drop_session_requests(struct session_proc *session)
{
	struct pending_request **link = &pending_head, *p;

	for (struct worker_proc *w = workers; w != NULL; w = w->next)
		if (w->session == session)
			w->session = NULL;
	pool_forget_session(session);

	pending_tail = NULL;
	while ((p = *link) != NULL) {
		if (p->session == session) {
			*link = p->next;
			ipc_msg_free(p->msg);
			free(p);
			continue;
		}
		pending_tail = p;
		link = &p->next;
	}
}

static void
on_session_msg(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct session_proc *session = arg;

	if (msg == NULL) {
		ipc_conn_free(conn);
		session->conn = NULL;
		drop_session_requests(session);
		session_free_if_done(session);
		return;
	}
	if (strcmp(msg->type, "DELIVER") != 0 || msg->fd < 0) {
		log_error("session process %ld sent an invalid %s request; closing it",
		    (long)session->pid, msg->type);
		ipc_msg_free(msg);
		ipc_conn_shutdown(conn);
		return;
	}

	dispatch(session, msg);
}

static void
queue_pending(struct session_proc *session, struct ipc_msg *msg, int oneshot)
{
	struct pending_request *p = xcalloc(1, sizeof *p);

	p->session = session;
	p->msg = msg;
	p->oneshot = oneshot;
	if (pending_tail != NULL)
		pending_tail->next = p;
	else
		pending_head = p;
	pending_tail = p;
}

void
master_dispatch_oneshot(struct session_proc *session, struct ipc_msg *msg)
{
	if (worker_count < max_workers) {
		worker_start(session, msg);
		return;
	}
	pool_stop_idle_worker();
	queue_pending(session, msg, 1);
}

/* A mailbox delivery goes to the pool, anything else (and what the pool
 * cannot take now) to a one-shot worker. */
static void
dispatch(struct session_proc *session, struct ipc_msg *msg)
{
	if (pool_dispatch(session, msg))
		return;
	master_dispatch_oneshot(session, msg);
}

static void
on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct session_proc *session;
	uid_t peer_uid = (uid_t)-1;
	gid_t peer_gid;
	pid_t peer_pid, pid;
	int client, pair[2];

	client = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (client < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_error("accept on %s failed: %s", config_string("lmtp_socket"), strerror(errno));
		return;
	}
	ipc_peer_cred(client, &peer_uid, &peer_gid, &peer_pid);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0 || (pid = fork()) < 0) {
		log_error("cannot start an LMTP session process: %s", strerror(errno));
		close(client);
		return;
	}
	if (pid == 0) {
		master_child_setup(client, pair[1]);
		close(pair[0]);
		session_run(client, pair[1], peer_uid);
		_exit(0);
	}

	close(client);
	close(pair[1]);
	session = xcalloc(1, sizeof *session);
	session->pid = pid;
	session->conn = ipc_conn_new(base, pair[0], on_session_msg, session);
	session->next = sessions;
	sessions = session;
	session_count++;
	if (session_count >= max_sessions)
		event_del(accept_event);
}

static void
on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pool_reap(pid, status))
			continue;
		for (struct worker_proc *w = workers; w != NULL; w = w->next) {
			if (w->pid == pid) {
				w->exited = 1;
				w->exit_status = status;
				worker_finish_if_done(w);
				goto next;
			}
		}
		for (struct session_proc *s = sessions; s != NULL; s = s->next) {
			if (s->pid == pid) {
				if (WIFSIGNALED(status))
					log_error("LMTP session process %ld killed by signal %d", (long)pid,
					    WTERMSIG(status));
				s->exited = 1;
				if (session_count-- >= max_sessions)
					event_add(accept_event, NULL);
				session_free_if_done(s);
				goto next;
			}
		}
next:
		;
	}
}

static void
on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	log_info("stopping on signal %d", (int)sig);
	event_base_loopbreak(base);
}

static void
on_sighup(evutil_socket_t sig, short what, void *arg)
{
	/* Sessions reopen the alias map when it changes and read the userdb
	 * per lookup, so there is nothing cached here to reload. */
	log_info("SIGHUP: aliases and users are read afresh by each session");
}

void
master_run(int fd)
{
	struct event *sigchld, *sigterm, *sigint, *sighup;

	listen_fd = fd;
	max_sessions = config_int("deliverd_max_sessions");
	max_workers = config_int("deliverd_max_processes");
	signal(SIGPIPE, SIG_IGN);

	base = event_base_new();
	if (base == NULL)
		fatalx("cannot create the event loop");
	accept_event = event_new(base, listen_fd, EV_READ | EV_PERSIST, on_accept, NULL);
	sigchld = evsignal_new(base, SIGCHLD, on_sigchld, NULL);
	sigterm = evsignal_new(base, SIGTERM, on_sigterm, NULL);
	sigint = evsignal_new(base, SIGINT, on_sigterm, NULL);
	sighup = evsignal_new(base, SIGHUP, on_sighup, NULL);
	event_add(accept_event, NULL);
	event_add(sigchld, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_add(sighup, NULL);
	pool_init(base);

	event_base_dispatch(base);
	pool_stop();

	/* Sessions stop at once (their clients retry what got no reply);
	 * running deliveries finish on their own. */
	for (struct session_proc *s = sessions; s != NULL; s = s->next)
		if (!s->exited)
			kill(s->pid, SIGTERM);
	unlink(config_string("lmtp_socket"));
	close(listen_fd);
	event_free(accept_event);
	event_free(sigchld);
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
}
