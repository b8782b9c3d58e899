/*
 * Accepting smtpd's connections. The checks block (DNS lookups, spamd
 * and clamd round trips), so each connection gets a detached worker
 * thread that reads a request, runs the chain and sends the reply, until
 * smtpd closes the connection or it stays idle for filterd_timeout.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chain.h"
#include "config.h"
#include "filter_proto.h"
#include "ipc.h"
#include "log.h"
#include "request.h"
#include "server.h"

/* NOTE: an estimate, not a measurement: the checks' libraries (libspf2,
 * libopendkim, libopendmarc) keep their buffers on the heap, and only
 * the stack pages a thread touches take memory. */
#define WORKER_STACK_SIZE (1024 * 1024)

/* Time a worker waits for smtpd to take a reply. */
#define SEND_TIMEOUT 30

static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;
static long long workers_active;

static void
set_socket_timeout(int sock, int option, long long seconds)
{
	struct timeval tv = { .tv_sec = (time_t)seconds };

	if (setsockopt(sock, SOL_SOCKET, option, &tv, sizeof tv) < 0)
		log_warn("setsockopt on a connection from smtpd failed: %s", strerror(errno));
}

static void *
worker_main(void *arg)
{
	int sock = (int)(intptr_t)arg;

	set_socket_timeout(sock, SO_RCVTIMEO, config_time("filterd_timeout"));
	set_socket_timeout(sock, SO_SNDTIMEO, SEND_TIMEOUT);

	for (;;) {
		struct ipc_msg *request = ipc_recv(sock);
		struct ipc_msg *reply;

		if (request == NULL) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				log_debug("closing a connection from smtpd idle for %llds",
				    config_time("filterd_timeout"));
			else if (errno != 0)
				log_warn("reading a request from smtpd failed: %s", strerror(errno));
			break;
		}

		reply = request_handle(request);
		ipc_msg_free(request);
		if (ipc_send(sock, reply, -1) < 0) {
			log_warn("sending a reply to smtpd failed: %s", strerror(errno));
			ipc_msg_free(reply);
			break;
		}
		ipc_msg_free(reply);
	}

	close(sock);
	pthread_mutex_lock(&workers_lock);
	workers_active--;
	pthread_mutex_unlock(&workers_lock);
	return NULL;
}

/* Tell a connection over the limit that filterd is busy, and close it. */
static void
reject_busy(int sock, long long limit)
{
	struct ipc_msg *reply = ipc_msg_new(FILTER_REPLY_BUSY);

	log_warn("filterd_max_connections limit of %lld reached; rejecting a connection from smtpd",
	    limit);
	ipc_msg_addf(reply, FILTER_KEY_ERROR, "filterd serves its limit of %lld connections", limit);
	set_socket_timeout(sock, SO_SNDTIMEO, 1);
	if (ipc_send(sock, reply, -1) < 0)
		log_debug("sending BUSY failed: %s", strerror(errno));
	ipc_msg_free(reply);
	close(sock);
}

static void
start_worker(int sock)
{
	long long limit = config_int("filterd_max_connections");
	pthread_attr_t attr;
	pthread_t thread;
	int rc;

	pthread_mutex_lock(&workers_lock);
	if (workers_active >= limit) {
		pthread_mutex_unlock(&workers_lock);
		reject_busy(sock, limit);
		return;
	}
	workers_active++;
	pthread_mutex_unlock(&workers_lock);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, WORKER_STACK_SIZE);
	rc = pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)sock);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		log_error("cannot start a worker thread: %s", strerror(rc));
		close(sock);
		pthread_mutex_lock(&workers_lock);
		workers_active--;
		pthread_mutex_unlock(&workers_lock);
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

/* Handle one signal from SIGNALS; returns 1 when filterd must stop. */
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
	struct pollfd fds[2];
	sigset_t set;
	int signals;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	signals = signalfd(-1, &set, SFD_CLOEXEC);
	if (signals < 0)
		fatal("signalfd failed");

	fds[0] = (struct pollfd){ .fd = listener, .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = signals, .events = POLLIN };
	for (;;) {
		int sock;

		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fatal("poll failed");
		}
		if ((fds[1].revents & POLLIN) && handle_signal(signals))
			break;
		if ((fds[0].revents & POLLIN) == 0)
			continue;

		sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (sock < 0) {
			/* Out of descriptors: wait for workers to close some. */
			if (errno == EMFILE || errno == ENFILE)
				usleep(100 * 1000);
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
				log_warn("accept on filterd_socket failed: %s", strerror(errno));
			continue;
		}
		start_worker(sock);
	}
	close(signals);
}
