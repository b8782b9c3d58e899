/*
 * queued: the durable mail queue. It creates queue files for clients
 * (smtpd, sendmail), commits them crash-safely, delivers local
 * recipients to deliverd over LMTP, retries with backoff and returns
 * undeliverable mail to the sender. See man/queued.8.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "commit.h"
#include "config.h"
#include "daemon.h"
#include "envelope.h"
#include "ipc.h"
#include "lmtp_client.h"
#include "local_filter.h"
#include "log.h"
#include "log_repeat.h"
#include "outbound.h"
#include "privsep.h"
#include "queued.h"
#include "scheduler.h"
#include "spool.h"
#include "submission.h"
#include "uid_limits.h"
#include "util.h"

struct queued_settings queued_settings;
struct spool queued_spool;
struct event_base *queued_base;

static void
read_settings(void)
{
	struct queued_settings *s = &queued_settings;
	uid_t uid;
	gid_t gid;

	s->myhostname = config_myhostname();
	s->lmtp_socket = config_string("lmtp_socket");
	s->lmtp_concurrency = (int)config_int("lmtp_concurrency");
	s->lmtp_timeout = config_time("lmtp_timeout");
	s->minimal_backoff_time = config_time("minimal_backoff_time");
	s->maximal_backoff_time = config_time("maximal_backoff_time");
	s->queue_run_delay = config_time("queue_run_delay");
	s->maximal_queue_lifetime = config_time("maximal_queue_lifetime");
	s->bounce_queue_lifetime = config_time("bounce_queue_lifetime");
	s->delay_warning_time = config_time("delay_warning_time");
	s->queue_uid = privsep_lookup(config_string("queue_user"), &uid, &gid) == 0 ? uid : (uid_t)-1;
	if (!privsep_is_root())
		s->smtpd_uid = getuid();
	else if (privsep_lookup(config_string("smtpd_user"), &uid, &gid) == 0)
		s->smtpd_uid = uid;
	else
		s->smtpd_uid = (uid_t)-1;

	if (s->minimal_backoff_time > s->maximal_backoff_time)
		fatalx("configuration error: minimal_backoff_time (%llds) is larger than maximal_backoff_time (%llds)",
		    s->minimal_backoff_time, s->maximal_backoff_time);
	if (strcmp(config_string("queue_sync_method"), "syncfs") != 0 &&
	    strcmp(config_string("queue_sync_method"), "fsync") != 0)
		fatalx("configuration error: queue_sync_method must be syncfs or fsync, not %s",
		    config_string("queue_sync_method"));
}

/* As root: create the spool for queue_user and the socket directory,
 * and bind the socket. Returns the listening socket. */
static int
prepare_files(void)
{
	const char *queue_user = config_string("queue_user");
	const char *socket_path = config_string("queued_socket");
	char *socket_dir = xstrdup(socket_path);
	char *slash = strrchr(socket_dir, '/');
	uid_t uid = getuid();
	gid_t gid = getgid();
	int sock;

	if (privsep_is_root() && privsep_lookup(queue_user, &uid, &gid) < 0)
		fatalx("user %s not found: create it (adduser --system --group %s) or set queue_user",
		    queue_user, queue_user);
	spool_create(config_string("queue_directory"), uid, gid);
	spool_lock(config_string("queue_directory"));

	if (slash != NULL && slash != socket_dir) {
		*slash = '\0';
		if (mkdir_p(socket_dir, 0755) < 0)
			fatal("create socket directory %s", socket_dir);
	}
	free(socket_dir);

	sock = ipc_listen(socket_path, 0666);
	if (sock < 0)
		fatal("listen on %s", socket_path);
	return sock;
}

/* Raise the soft RLIMIT_NOFILE to the hard limit, since every client
 * connection and uncommitted queue file takes a descriptor. Returns the
 * soft limit in effect. */
static long long
raise_descriptor_limit(void)
{
	struct rlimit limit;

	if (getrlimit(RLIMIT_NOFILE, &limit) < 0)
		fatal("getrlimit RLIMIT_NOFILE");
	if (limit.rlim_cur < limit.rlim_max) {
		rlim_t before = limit.rlim_cur;

		limit.rlim_cur = limit.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &limit) < 0) {
			log_warn("cannot raise the descriptor limit from %llu to %llu: %s",
			    (unsigned long long)before, (unsigned long long)limit.rlim_max, strerror(errno));
			limit.rlim_cur = before;
		}
	}
	return limit.rlim_cur == RLIM_INFINITY ? LLONG_MAX : (long long)limit.rlim_cur;
}

static void
load_message(struct envelope *env, void *arg)
{
	scheduler_add(env);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGHUP) {
		log_info("SIGHUP received: reloading transport_maps and relayhost_password_file; restart queued to apply other configuration changes");
		outbound_reload();
		return;
	}
	log_info("stopping on signal %d", (int)sig);
	event_base_loopbreak(queued_base);
}

int
main(int argc, char **argv)
{
	struct event *signal_events[3];
	const int signals[3] = { SIGTERM, SIGINT, SIGHUP };
	long long descriptor_limit;
	int listen_fd;
	size_t loaded;

	daemon_start("queued", argc, argv);
	read_settings();
	descriptor_limit = raise_descriptor_limit();
	uid_limits_init(descriptor_limit);

	listen_fd = prepare_files();
	outbound_load_secrets();
	local_filter_keep_group();
	privsep_drop(config_string("queue_user"), NULL);

	queued_base = event_base_new();
	if (queued_base == NULL)
		fatalx("event_base_new failed");
	spool_open(&queued_spool, config_string("queue_directory"));
	spare_load(&queued_spool, (size_t)config_int("queue_spare_files"));
	commit_start(queued_base, &queued_spool,
	    strcmp(config_string("queue_sync_method"), "syncfs") == 0);
	lmtp_init();
	outbound_init();
	scheduler_init();
	loaded = spool_recover(&queued_spool, load_message, NULL);
	submission_start(listen_fd);

	for (size_t i = 0; i < 3; i++) {
		signal_events[i] = evsignal_new(queued_base, signals[i], signal_cb, NULL);
		event_add(signal_events[i], NULL);
	}

	log_info("started: %zu messages in %s, listening on %s, descriptor limit %lld", loaded,
	    config_string("queue_directory"), config_string("queued_socket"), descriptor_limit);
	sd_notify(0, "READY=1");
	event_base_dispatch(queued_base);

	sd_notify(0, "STOPPING=1");
	submission_stop();
	lmtp_stop();
	outbound_stop();
	commit_stop();
	scheduler_stop();
	for (size_t i = 0; i < 3; i++)
		event_free(signal_events[i]);
	log_repeat_flush_all();
	spool_close(&queued_spool);
	event_base_free(queued_base);
	log_info("stopped");
	return 0;
}
