/*
 * Serving smtpd's connections. The checks block (DNS lookups, spamd and
 * clamd round trips), so each request runs in a worker thread. Between
 * requests a connection waits in the main thread's poll loop without a
 * worker, so an idle SMTP session, which keeps its connection, does not
 * count against filterd_max_connections (requests served at once). The
 * main thread also reads each request without blocking (reader.h) and
 * hands it to a worker only when it is complete, so a peer that sends
 * part of a request takes no worker. Its connection is closed after
 * filterd_request_timeout.
 * Workers started stay in a pool, at most that many.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chain.h"
#include "config.h"
#include "filter_proto.h"
#include "ipc.h"
#include "log.h"
#include "reader.h"
#include "request.h"
#include "server.h"
#include "util.h"

/* NOTE: an estimate, not a measurement: the checks' libraries (libspf2,
 * libopendkim, libopendmarc) keep their buffers on the heap, and only
 * the stack pages a thread touches take memory. */
#define WORKER_STACK_SIZE (1024 * 1024)

/* Time a worker waits for smtpd to take a reply. */
#define SEND_TIMEOUT 30

/* Seconds between two log lines about refused connections. */
#define REFUSED_LOG_INTERVAL 10

/* Connections accepted in one round of the poll loop at most. Any local
 * user may connect, so the backlog is emptied quickly: smtpd and queued
 * connect in blocking calls. */
#define ACCEPT_BATCH 64

/* A connection waiting for its next request, since when, and the part
 * of the request read so far and since when. */
struct idle_conn {
	int sock;
	time_t since;
	time_t request_started;
	struct reader reader;
};

/* A complete request for a worker. */
struct job {
	int sock;
	struct ipc_msg *request;
};

static struct idle_conn *idle;
static size_t nidle, idle_capacity;

/* Connections with a request to serve, for the workers. */
static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jobs_cond = PTHREAD_COND_INITIALIZER;
static struct job *jobs;
static size_t njobs, jobs_capacity;
static long long requests_active;	/* queued or being served */
static long long workers, workers_waiting;

/* Workers write a served connection's descriptor here to give it back. */
static int handback[2];

/* The uids whose connections are served (server_allow_uids). */
static uid_t allowed_uids[SERVER_ALLOWED_UIDS_MAX];
static size_t nallowed;

static void
set_socket_timeout(int sock, int option, long long seconds)
{
	struct timeval tv = { .tv_sec = (time_t)seconds };

	if (setsockopt(sock, SOL_SOCKET, option, &tv, sizeof tv) < 0)
		log_warn("setsockopt on a connection from smtpd failed: %s", strerror(errno));
}

static void
idle_add(int sock)
{
	if (nidle == idle_capacity) {
		idle_capacity = idle_capacity > 0 ? idle_capacity * 2 : 64;
		idle = xrealloc(idle, idle_capacity * sizeof *idle);
	}
	idle[nidle].sock = sock;
	idle[nidle].since = time(NULL);
	idle[nidle].request_started = 0;
	reader_init(&idle[nidle].reader);
	nidle++;
}

static void
idle_remove(size_t i)
{
	idle[i] = idle[--nidle];
}

/* Close an idle connection with whatever part of a request it has. */
static void
idle_close(size_t i)
{
	reader_reset(&idle[i].reader);
	close(idle[i].sock);
	idle_remove(i);
}

static void
request_done(void)
{
	pthread_mutex_lock(&jobs_lock);
	requests_active--;
	pthread_mutex_unlock(&jobs_lock);
}

/*
 * Serve REQUEST from SOCK, then give the connection back to the main
 * thread. The request counts as done before the reply goes out: smtpd
 * may send its next request as soon as it has the reply.
 */
static void
serve_request(int sock, struct ipc_msg *request)
{
	struct ipc_msg *reply = request_handle(request);

	ipc_msg_free(request);
	request_done();

	if (ipc_send(sock, reply, -1) < 0) {
		log_warn("sending a reply to smtpd failed: %s", strerror(errno));
		ipc_msg_free(reply);
		close(sock);
		return;
	}
	ipc_msg_free(reply);
	if (write_all(handback[1], &sock, sizeof sock) < 0) {
		log_error("handing a connection back to the main thread failed: %s",
		    strerror(errno));
		close(sock);
	}
}

static void *
worker_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct job job;

		pthread_mutex_lock(&jobs_lock);
		workers_waiting++;
		while (njobs == 0)
			pthread_cond_wait(&jobs_cond, &jobs_lock);
		workers_waiting--;
		job = jobs[0];
		memmove(jobs, jobs + 1, --njobs * sizeof *jobs);
		pthread_mutex_unlock(&jobs_lock);

		serve_request(job.sock, job.request);
	}
	return NULL;
}

/* Start one more worker. Called with jobs_lock held. */
static void
start_worker(void)
{
	pthread_attr_t attr;
	pthread_t thread;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, WORKER_STACK_SIZE);
	rc = pthread_create(&thread, &attr, worker_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		log_error("cannot start a worker thread: %s", strerror(rc));
		return;
	}
	workers++;
}

/* Tell a connection over the limit that filterd is busy, and close it. */
static void
reject_busy(int sock, long long limit)
{
	struct ipc_msg *reply = ipc_msg_new(FILTER_REPLY_BUSY);

	log_warn("filterd_max_connections limit of %lld reached; rejecting a request from smtpd",
	    limit);
	ipc_msg_addf(reply, FILTER_KEY_ERROR, "filterd serves its limit of %lld connections", limit);
	set_socket_timeout(sock, SO_SNDTIMEO, 1);
	if (ipc_send(sock, reply, -1) < 0)
		log_debug("sending BUSY failed: %s", strerror(errno));
	ipc_msg_free(reply);
	close(sock);
}

/* Queue REQUEST, which SOCK has sent, for a worker, or reply BUSY. */
static void
dispatch(int sock, struct ipc_msg *request)
{
	long long limit = config_int("filterd_max_connections");

	pthread_mutex_lock(&jobs_lock);
	if (requests_active >= limit) {
		pthread_mutex_unlock(&jobs_lock);
		ipc_msg_free(request);
		reject_busy(sock, limit);
		return;
	}
	if (njobs == jobs_capacity) {
		jobs_capacity = jobs_capacity > 0 ? jobs_capacity * 2 : 64;
		jobs = xrealloc(jobs, jobs_capacity * sizeof *jobs);
	}
	jobs[njobs++] = (struct job){ .sock = sock, .request = request };
	requests_active++;
	if (workers_waiting < (long long)njobs && workers < limit)
		start_worker();
	pthread_cond_signal(&jobs_cond);
	pthread_mutex_unlock(&jobs_lock);
}

/* Take back the connections that workers have served. */
static void
read_handback(void)
{
	int socks[64];
	ssize_t n = read(handback[0], socks, sizeof socks);

	for (ssize_t i = 0; i < n / (ssize_t)sizeof socks[0]; i++)
		idle_add(socks[i]);
}

void
server_allow_uids(const uid_t *uids, size_t count)
{
	if (count > SERVER_ALLOWED_UIDS_MAX)
		count = SERVER_ALLOWED_UIDS_MAX;
	memcpy(allowed_uids, uids, count * sizeof *uids);
	nallowed = count;
}

/* Whether the peer of SOCK may send requests; stores its uid in UID. */
static int
peer_allowed(int sock, uid_t *uid)
{
	gid_t gid;
	pid_t pid;

	if (ipc_peer_cred(sock, uid, &gid, &pid) < 0) {
		*uid = (uid_t)-1;
		return 0;
	}
	for (size_t i = 0; i < nallowed; i++)
		if (allowed_uids[i] == *uid)
			return 1;
	return 0;
}

/* Log a refused connection at once, and the next ones at most once every
 * REFUSED_LOG_INTERVAL seconds with the count since, because any local
 * user may connect as often as it likes. */
static void
log_refused(uid_t uid)
{
	static time_t logged_at;
	static unsigned long unlogged;
	time_t now = time(NULL);

	if (logged_at != 0 && now - logged_at < REFUSED_LOG_INTERVAL) {
		unlogged++;
		return;
	}
	log_warn("connection from uid %ld refused: filterd_socket serves only smtpd and queued"
	    " (%lu more refused in the last %d seconds)", uid == (uid_t)-1 ? -1L : (long)uid,
	    unlogged, REFUSED_LOG_INTERVAL);
	logged_at = now;
	unlogged = 0;
}

/* Accept one connection. Returns 1 when one was taken (served or
 * refused), 0 when none is waiting or accepting failed. */
static int
accept_connection(int listener)
{
	int sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	uid_t uid;

	if (sock < 0) {
		/* Out of descriptors: close the connection idle the longest,
		 * or wait for workers to close some. */
		if ((errno == EMFILE || errno == ENFILE) && nidle > 0) {
			size_t oldest = 0;

			for (size_t i = 1; i < nidle; i++)
				if (idle[i].since < idle[oldest].since)
					oldest = i;
			idle_close(oldest);
		} else if (errno == EMFILE || errno == ENFILE) {
			usleep(100 * 1000);
		}
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			log_warn("accept on filterd_socket failed: %s", strerror(errno));
		return 0;
	}
	if (!peer_allowed(sock, &uid)) {
		log_refused(uid);
		close(sock);
		return 1;
	}
	set_socket_timeout(sock, SO_RCVTIMEO, config_time("filterd_timeout"));
	set_socket_timeout(sock, SO_SNDTIMEO, SEND_TIMEOUT);
	idle_add(sock);
	return 1;
}

/* Accept the connections waiting on LISTENER, up to ACCEPT_BATCH. */
static void
accept_waiting(int listener)
{
	for (int i = 0; i < ACCEPT_BATCH; i++)
		if (!accept_connection(listener))
			break;
}

/*
 * Read what the idle connection I has sent. A complete request goes to
 * a worker, and the connection leaves the idle list. A connection at EOF
 * or in error is closed and leaves it too.
 */
static void
read_request(size_t i)
{
	struct ipc_msg *request = NULL;
	int sock = idle[i].sock;
	int rc = reader_read(&idle[i].reader, sock, &request);

	if (rc == 0) {
		if (idle[i].request_started == 0 && reader_started(&idle[i].reader))
			idle[i].request_started = time(NULL);
		return;
	}
	if (rc < 0) {
		if (errno != 0)
			log_warn("reading a request from smtpd failed: %s", strerror(errno));
		idle_close(i);
		return;
	}
	idle_remove(i);
	dispatch(sock, request);
}

/* Close the connections idle for filterd_timeout, and those whose
 * request is not complete after filterd_request_timeout. */
static void
close_expired(void)
{
	time_t now = time(NULL);
	long long timeout = config_time("filterd_timeout");
	long long request_timeout = config_time("filterd_request_timeout");

	for (size_t i = 0; i < nidle;) {
		time_t started = idle[i].request_started;

		if (started != 0 && now - started >= request_timeout) {
			log_warn("closing a connection from smtpd whose request is not complete "
			    "after %llds", request_timeout);
			idle_close(i);
		} else if (started == 0 && now - idle[i].since >= timeout) {
			log_debug("closing a connection from smtpd idle for %llds", timeout);
			idle_close(i);
		} else {
			i++;
		}
	}
}

void
server_block_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		fatalx("cannot block signals");
}

/* Handle one signal from SIGNALS. Returns 1 when filterd must stop. */
static int
handle_signal(int signals)
{
	struct signalfd_siginfo info;

	if (read(signals, &info, sizeof info) != (ssize_t)sizeof info)
		return 0;
	if (info.ssi_signo == SIGHUP) {
		log_info("SIGHUP received; reloading the checks");
		chain_reload();
		return 0;
	}
	log_info("signal %u received; stopping", info.ssi_signo);
	return 1;
}

void
server_run(int listener)
{
	struct pollfd *fds = NULL;
	size_t fds_capacity = 0;
	sigset_t set;
	int signals;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	signals = signalfd(-1, &set, SFD_CLOEXEC);
	if (signals < 0)
		fatal("signalfd failed");
	if (pipe2(handback, O_CLOEXEC) < 0)
		fatal("pipe failed");

	for (;;) {
		size_t nfds = nidle + 3, polled = nidle;

		if (fds_capacity < nfds) {
			fds_capacity = nfds * 2;
			fds = xrealloc(fds, fds_capacity * sizeof *fds);
		}
		fds[0] = (struct pollfd){ .fd = listener, .events = POLLIN };
		fds[1] = (struct pollfd){ .fd = signals, .events = POLLIN };
		fds[2] = (struct pollfd){ .fd = handback[0], .events = POLLIN };
		for (size_t i = 0; i < polled; i++)
			fds[3 + i] = (struct pollfd){ .fd = idle[i].sock, .events = POLLIN };

		/* Wake once a second to close the connections idle too long. */
		if (poll(fds, nfds, 1000) < 0) {
			if (errno == EINTR)
				continue;
			fatal("poll failed");
		}
		if ((fds[1].revents & POLLIN) && handle_signal(signals))
			break;

		/* From the end, so that idle_remove moves only entries already seen. */
		for (size_t i = polled; i-- > 0;) {
			if (fds[3 + i].revents == 0)
				continue;
			read_request(i);
		}
		if (fds[2].revents & POLLIN)
			read_handback();
		if (fds[0].revents & POLLIN)
			accept_waiting(listener);
		close_expired();
	}
	free(fds);
	close(signals);
}
