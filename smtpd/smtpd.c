/*
 * smtpd: the ESMTP server. One process and one libevent loop serve
 * every session. Listening sockets are bound as root, then the process
 * drops to smtpd_user before it reads anything from a client.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <systemd/sd-daemon.h>

#include "cdbmap.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "netaddr.h"
#include "privsep.h"
#include "smtpd.h"
#include "tls.h"
#include "userdb_async.h"
#include "util.h"

#define LISTEN_BACKLOG 128

struct smtpd smtpd;

static void
settings_load_hostname(struct smtpd_settings *settings)
{
	strlcpy_x(settings->hostname, config_myhostname(), sizeof settings->hostname);
}

static void
settings_load(struct smtpd_settings *settings)
{
	const char *bare_lf = config_string("smtpd_bare_lf");
	const char *delimiter = config_string("recipient_delimiter");

	settings_load_hostname(settings);
	settings->message_size_limit = config_size("message_size_limit");
	settings->recipient_limit = config_int("smtpd_recipient_limit");
	settings->transaction_limit = config_int("smtpd_session_transaction_limit");
	settings->client_connection_limit = config_int("smtpd_client_connection_limit");
	settings->max_connections = config_int("smtpd_max_connections");
	settings->timeout = config_time("smtpd_timeout");
	settings->data_timeout = config_time("smtpd_data_timeout");
	settings->queue_timeout = config_time("smtpd_queue_timeout");
	settings->userdb_timeout = config_time("smtpd_userdb_timeout");
	settings->hard_error_limit = config_int("smtpd_hard_error_limit");
	settings->line_length_limit = (size_t)config_size("smtpd_line_length_limit");
	settings->data_line_length_limit = (size_t)config_size("smtpd_data_line_length_limit");

	if (strcmp(bare_lf, "reject") == 0)
		settings->normalize_bare_lf = 0;
	else if (strcmp(bare_lf, "normalize") == 0)
		settings->normalize_bare_lf = 1;
	else
		fatalx("invalid smtpd_bare_lf value \"%s\": expected reject or normalize", bare_lf);

	if (strlen(delimiter) > 1)
		fatalx("invalid recipient_delimiter \"%s\": expected one character or nothing",
		    delimiter);
	settings->recipient_delimiter = delimiter[0];

	settings->queued_socket = config_string("queued_socket");
	settings->userdb_socket = config_string("userdb_socket");
	snprintf(settings->alias_map_path, sizeof settings->alias_map_path, "%s.cdb",
	    config_string("alias_database"));
}

static void
load_mynetworks(struct smtpd *server)
{
	char err[256];

	server->mynetworks = netaddr_list_parse(config_list("mynetworks"), err, sizeof err);
	if (server->mynetworks == NULL)
		fatalx("invalid mynetworks: %s", err);
}

/* Count the sessions from the address of SA. */
static long long
sessions_from(struct smtpd *server, const char *ip)
{
	struct session *s;
	long long count = 0;

	TAILQ_FOREACH(s, &server->sessions, entry)
		if (strcmp(s->ip, ip) == 0)
			count++;
	return count;
}

/* Reply 421 and close without starting a session (the limits were hit). */
static void
reject_connection(int fd, const char *reply)
{
	/* A fresh socket has room for one short line; nothing waits on it. */
	if (write(fd, reply, strlen(reply)) < 0)
		log_debug("write to rejected client failed: %s", strerror(errno));
	close(fd);
}

static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct smtpd *server = arg;
	const struct smtpd_settings *settings = &server->settings;
	char ip[SMTPD_IP_MAX], reply[512];
	enum listener_kind kind = LISTENER_MX;

	netaddr_format(sa, ip, sizeof ip);
	for (size_t i = 0; i < server->nlisteners; i++)
		if (server->listeners[i] == listener)
			kind = server->listener_kinds[i];

	if ((long long)server->nsessions >= settings->max_connections) {
		log_warn("connection limit of %lld reached: rejecting unknown[%s]",
		    settings->max_connections, ip);
		snprintf(reply, sizeof reply,
		    "421 4.3.2 %s Error: too many connections, try again later\r\n", settings->hostname);
		reject_connection(fd, reply);
		return;
	}
	if (settings->client_connection_limit > 0 &&
	    sessions_from(server, ip) >= settings->client_connection_limit) {
		log_warn("connection concurrency limit exceeded: %lld from unknown[%s]",
		    sessions_from(server, ip) + 1, ip);
		snprintf(reply, sizeof reply,
		    "421 4.7.0 %s Error: too many connections from %s\r\n", settings->hostname, ip);
		reject_connection(fd, reply);
		return;
	}
	if (submission_connection_rate_exceeded(server, sa, ip)) {
		snprintf(reply, sizeof reply,
		    "421 4.7.0 %s Error: too many connections from %s, try again later\r\n",
		    settings->hostname, ip);
		reject_connection(fd, reply);
		return;
	}
	session_accept(server, kind, fd, sa, (socklen_t)salen);
}

static void
accept_error_cb(struct evconnlistener *listener, void *arg)
{
	/* EMFILE and the like: the listener keeps going after a warning. */
	log_warn("accept failed: %s", strerror(errno));
}

/* Bind one item of the listener parameter PARAM. Returns the socket, or
 * -1 for an address family the kernel does not support (an IPv6-less host). */
static int
listen_socket(const char *param, const char *item)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, on = 1;

	if (netaddr_parse_listen(item, &ss, &sslen) < 0)
		fatalx("invalid %s address \"%s\": expected IPv4:port or [IPv6]:port", param, item);

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && errno == EAFNOSUPPORT) {
		log_warn("skipping %s address %s: address family not supported", param, item);
		return -1;
	}
	if (fd < 0)
		fatal("socket for %s", item);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
		fatal("SO_REUSEADDR on %s", item);
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0)
		fatal("IPV6_V6ONLY on %s", item);
	if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
		if (errno == EADDRNOTAVAIL && ss.ss_family == AF_INET6) {
			log_warn("skipping %s address %s: no IPv6 on this host", param, item);
			close(fd);
			return -1;
		}
		fatal("bind %s", item);
	}
	if (listen(fd, LISTEN_BACKLOG) < 0)
		fatal("listen on %s", item);
	return fd;
}

static void
listen_on(struct smtpd *server, const char *param, enum listener_kind kind)
{
	static const char *const kind_names[] = { "mx", "submission", "smtps" };
	char *const *items = config_list(param);

	for (size_t i = 0; items[i] != NULL; i++) {
		int fd = listen_socket(param, items[i]);
		struct evconnlistener *listener;

		if (fd < 0)
			continue;
		if (server->nlisteners == SMTPD_MAX_LISTENERS)
			fatalx("too many listen addresses in smtpd_listen, smtpd_submission_listen and smtpd_smtps_listen (at most %d in all)",
			    SMTPD_MAX_LISTENERS);
		listener = evconnlistener_new(server->base, accept_cb, server,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (listener == NULL)
			fatalx("cannot watch listening socket %s", items[i]);
		evconnlistener_set_error_cb(listener, accept_error_cb);
		server->listener_kinds[server->nlisteners] = kind;
		server->listeners[server->nlisteners++] = listener;
		log_info("listening on %s (%s)", items[i], kind_names[kind]);
	}
}

static void
listen_all(struct smtpd *server)
{
	listen_on(server, "smtpd_listen", LISTENER_MX);
	listen_on(server, "smtpd_submission_listen", LISTENER_SUBMISSION);
	listen_on(server, "smtpd_smtps_listen", LISTENER_SMTPS);
	if (server->nlisteners == 0)
		fatalx("no usable smtpd_listen, smtpd_submission_listen or smtpd_smtps_listen address");
}

/* Each session holds up to three descriptors: the client, queued and the spool file. */
static void
raise_file_limit(long long max_connections)
{
	struct rlimit rl;
	rlim_t wanted = (rlim_t)max_connections * 3 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= wanted)
		return;
	rl.rlim_cur = wanted < rl.rlim_max ? wanted : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_warn("cannot raise the open file limit to %llu: %s",
		    (unsigned long long)rl.rlim_cur, strerror(errno));
}

static void
signal_stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct smtpd *server = arg;

	log_info("received signal %d, stopping", (int)sig);
	event_base_loopbreak(server->base);
}

static void
signal_reload_cb(evutil_socket_t sig, short what, void *arg)
{
	struct smtpd *server = arg;

	/* The alias map is also reopened on its own when the file changes. */
	log_info("received SIGHUP, reopening the alias map and the TLS certificates");
	cdbmap_close(server->aliases);
	server->aliases = cdbmap_open(server->settings.alias_map_path);
	tls_reload(server);
}

int
main(int argc, char **argv)
{
	struct smtpd *server = &smtpd;
	struct event *sigterm, *sigint, *sighup;

	daemon_start("smtpd", argc, argv);
	TAILQ_INIT(&server->sessions);
	settings_load(&server->settings);
	auth_settings_load(&server->auth_settings);
	load_mynetworks(server);
	raise_file_limit(server->settings.max_connections);

	server->base = event_base_new();
	if (server->base == NULL)
		fatalx("event_base_new failed");
	/* TLS first: a bad certificate stops smtpd before it accepts anyone. */
	tls_setup(server);
	listen_all(server);

	privsep_drop(config_string("smtpd_user"), NULL);

	server->aliases = cdbmap_open(server->settings.alias_map_path);
	server->userdb = userdb_async_new(server->base, server->settings.userdb_socket,
	    server->settings.userdb_timeout);
	submission_start(server);

	sigterm = evsignal_new(server->base, SIGTERM, signal_stop_cb, server);
	sigint = evsignal_new(server->base, SIGINT, signal_stop_cb, server);
	sighup = evsignal_new(server->base, SIGHUP, signal_reload_cb, server);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	evsignal_add(sighup, NULL);

	log_info("daemon started: myhostname=%s", server->settings.hostname);
	sd_notify(0, "READY=1");
	event_base_dispatch(server->base);

	sd_notify(0, "STOPPING=1");
	for (size_t i = 0; i < server->nlisteners; i++)
		evconnlistener_free(server->listeners[i]);
	session_free_all(server);
	tls_server_free(server->tls);
	submission_stop(server);
	userdb_async_free(server->userdb);
	cdbmap_close(server->aliases);
	netaddr_list_free(server->mynetworks);
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	event_base_free(server->base);
	log_info("daemon stopped");
	return 0;
}
