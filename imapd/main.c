/*
 * imapd master. Runs as root, binds imapd_listen, and never reads what a
 * client sends: for each connection it forks a login process that drops
 * to imapd_login_user and parses everything before authentication. A
 * login process that authenticates a user passes the client descriptor
 * back over its socket pair, and the master forks the mail process that
 * claims the login from authd and becomes the user (mail.c). This is
 * Dovecot's model with one login process per connection.
 *
 * Connections on imapd_imaps_listen start with TLS, and the others may
 * use STARTTLS, when tls_cert_file is set. The master loads the
 * certificates (it is root, so it can read the keys) and reloads them on
 * SIGHUP; a login process uses the context it was forked with, so
 * sessions in progress keep their certificate.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "daemon.h"
#include "imapd.h"
#include "ipc.h"
#include "log.h"
#include "netaddr.h"
#include "privsep.h"
#include "tls.h"
#include "util.h"

#define LISTEN_BACKLOG		128
#define MAX_LISTENERS		16

struct imapd_settings imapd_settings;
struct tls_server *imapd_tls;

/* A forked login or mail process. */
struct child {
	pid_t pid;
	int is_login;
	int is_proxy;		/* a login process relaying a TLS session to its mail process */
	struct ipc_conn *conn;	/* login processes: the handoff socket */
	unsigned long long session_id;
};

static struct event_base *base;
static struct evconnlistener *listeners[MAX_LISTENERS];
static size_t nlisteners;
static struct child *children;
static size_t nchildren, children_cap;
static size_t nproxies;		/* children with is_proxy: their sessions are counted by the mail process */
static unsigned long long next_session_id;

static void
settings_load(struct imapd_settings *s)
{
	const char *userdb_socket = config_string("userdb_socket");
	const char *slash;

	strlcpy_x(s->hostname, config_myhostname(), sizeof s->hostname);
	s->limits.max_line = (size_t)config_size("imapd_max_line_length");
	s->limits.max_literal = (size_t)config_size("imapd_max_literal_size");
	s->limits.max_append = (size_t)config_size("imapd_append_limit");
	s->login_limits.max_line = IMAPD_LOGIN_LINE_MAX;
	s->login_limits.max_literal = IMAPD_LOGIN_LINE_MAX;
	s->login_limits.max_append = IMAPD_LOGIN_LINE_MAX;
	s->login_timeout = config_time("imapd_login_timeout");
	s->idle_timeout = config_time("imapd_idle_timeout");
	s->auth_timeout = config_time("imapd_auth_timeout");
	s->max_connections = config_int("imapd_max_connections");
	s->plaintext_auth = config_string("imapd_plaintext_auth");
	s->userdb_socket = userdb_socket;

	/* authd's rule: auth_socket, or auth-client beside userdb_socket. */
	if (*config_string("auth_socket") != '\0') {
		strlcpy_x(s->auth_socket, config_string("auth_socket"), sizeof s->auth_socket);
	} else {
		slash = strrchr(userdb_socket, '/');
		snprintf(s->auth_socket, sizeof s->auth_socket, "%.*sauth-client",
		    slash != NULL ? (int)(slash - userdb_socket + 1) : 0, userdb_socket);
	}
}

static struct child *
child_add(pid_t pid, int is_login, unsigned long long session_id)
{
	if (nchildren == children_cap) {
		children_cap = children_cap == 0 ? 64 : children_cap * 2;
		children = xrealloc(children, children_cap * sizeof *children);
	}
	children[nchildren] = (struct child){ .pid = pid, .is_login = is_login,
	    .session_id = session_id };
	return &children[nchildren++];
}

static struct child *
child_find_conn(struct ipc_conn *conn)
{
	for (size_t i = 0; i < nchildren; i++)
		if (children[i].conn == conn)
			return &children[i];
	return NULL;
}

/*
 * In a forked child: close every descriptor but KEEP_A and KEEP_B (and
 * the standard ones), and take back the signals that libevent caught for
 * the master. This closes the listening sockets, other sessions' sockets,
 * and the event loop's epoll instance and signal pipe. The child shares
 * those two with the master, so an unprivileged process could otherwise
 * change what the master waits for, or fake a SIGTERM to it.
 */
static void
close_master_descriptors(int keep_a, int keep_b)
{
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	log_close_syslog();
	close_descriptors_except(keep_a, keep_b);
	log_reopen_syslog();
}

static void
start_mail_process(struct child *login, struct ipc_msg *msg)
{
	int client_fd = ipc_msg_take_fd(msg);
	int login_fd = dup(ipc_conn_fd(login->conn));
	pid_t pid;

	if (client_fd < 0 || login_fd < 0) {
		log_warn("session=%llu: login handoff without a client descriptor", login->session_id);
		if (client_fd >= 0)
			close(client_fd);
		if (login_fd >= 0)
			close(login_fd);
		return;
	}
	pid = fork();
	if (pid < 0) {
		log_error("session=%llu: fork of the mail process failed: %s", login->session_id,
		    strerror(errno));
		close(client_fd);
		close(login_fd);
		return;
	}
	if (pid == 0) {
		pid_t login_pid = login->pid;

		close_master_descriptors(client_fd, login_fd);
		/* The user's session must not be able to read the private keys. */
		tls_server_free(imapd_tls);
		imapd_tls = NULL;
		mail_process_run(msg, client_fd, login_fd, login_pid);
	}
	close(client_fd);
	close(login_fd);
	child_add(pid, 0, login->session_id);
}

static void
login_message_cb(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct child *login = child_find_conn(conn);

	if (msg == NULL) {
		if (login != NULL)
			login->conn = NULL;
		ipc_conn_free(conn);
		return;
	}
	if (login != NULL && strcmp(msg->type, "LOGIN") == 0) {
		/* On TLS the login process stays, as the session's proxy. */
		if (strcmp(ipc_msg_get(msg, "tls") != NULL ? ipc_msg_get(msg, "tls") : "no", "yes") == 0) {
			login->is_proxy = 1;
			nproxies++;
		}
		start_mail_process(login, msg);
		login = child_find_conn(conn);	/* the table may have moved */
	} else
		log_warn("unexpected message %s from a login process", msg->type);
	ipc_msg_free(msg);

	/* A login process hands over one connection at most. */
	if (login != NULL)
		login->conn = NULL;
	ipc_conn_shutdown(conn);
}

static void
client_from_socket(struct imapd_client *client, int fd, struct sockaddr *sa)
{
	struct sockaddr_storage local;
	socklen_t locallen = sizeof local;

	client->fd = fd;
	netaddr_format(sa, client->rip, sizeof client->rip);
	client->lip[0] = '\0';
	if (getsockname(fd, (struct sockaddr *)&local, &locallen) == 0)
		netaddr_format((struct sockaddr *)&local, client->lip, sizeof client->lip);
	client->loopback = strncmp(client->rip, "127.", 4) == 0 || strcmp(client->rip, "::1") == 0;
}

/* ARG is nonzero for a listener on imapd_imaps_listen. */
static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct imapd_client client = { 0 };
	int pair[2];
	pid_t pid;

	client_from_socket(&client, fd, sa);
	client.session_id = ++next_session_id;
	client.implicit_tls = arg != NULL;
	if ((long long)(nchildren - nproxies) >= imapd_settings.max_connections) {
		static const char reply[] = "* BYE Too many connections, try again later\r\n";

		log_warn("connection limit of %lld reached: rejecting %s",
		    imapd_settings.max_connections, client.rip);
		if (write(fd, reply, sizeof reply - 1) < 0)
			log_debug("write to rejected client failed: %s", strerror(errno));
		close(fd);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		log_error("socketpair failed: %s", strerror(errno));
		close(fd);
		return;
	}
	pid = fork();
	if (pid < 0) {
		log_error("fork of a login process failed: %s", strerror(errno));
		close(fd);
		close(pair[0]);
		close(pair[1]);
		return;
	}
	if (pid == 0) {
		const char *user = config_string("imapd_login_user");

		close_master_descriptors(fd, pair[1]);
		privsep_drop(*user != '\0' ? user : config_string("smtpd_user"), NULL);
		login_session_run(&client, pair[1]);
	}
	close(fd);
	close(pair[1]);
	log_info("session=%llu: connect from %s%s, login process %ld", client.session_id, client.rip,
	    client.implicit_tls ? " (IMAPS)" : "", (long)pid);
	child_add(pid, 1, client.session_id)->conn = ipc_conn_new(base, pair[0], login_message_cb,
	    NULL);
}

static void
accept_error_cb(struct evconnlistener *listener, void *arg)
{
	log_warn("accept failed: %s", strerror(errno));
}

/* Bind one item of the listener parameter PARAM; -1 for an address family the host lacks. */
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

/* Bind every address of PARAM; connections on them start with TLS when IMPLICIT_TLS. */
static void
listen_param(const char *param, int implicit_tls)
{
	char *const *items = config_list(param);

	for (size_t i = 0; items[i] != NULL; i++) {
		int fd = listen_socket(param, items[i]);

		if (fd < 0)
			continue;
		if (nlisteners == MAX_LISTENERS)
			fatalx("too many imapd_listen and imapd_imaps_listen addresses (at most %d)",
			    MAX_LISTENERS);
		listeners[nlisteners] = evconnlistener_new(base, accept_cb,
		    implicit_tls ? (void *)(uintptr_t)1 : NULL,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (listeners[nlisteners] == NULL)
			fatalx("cannot watch listening socket %s", items[i]);
		evconnlistener_set_error_cb(listeners[nlisteners], accept_error_cb);
		nlisteners++;
		log_info("listening on %s%s", items[i], implicit_tls ? " (IMAPS)" : "");
	}
}

static void
listen_all(void)
{
	if (config_list("imapd_imaps_listen")[0] != NULL && imapd_tls == NULL)
		fatalx("imapd_imaps_listen is set but tls_cert_file is not: "
		    "set tls_cert_file and tls_key_file, or empty imapd_imaps_listen");
	listen_param("imapd_listen", 0);
	listen_param("imapd_imaps_listen", 1);
	if (nlisteners == 0)
		fatalx("no usable imapd_listen or imapd_imaps_listen address");
}

/* Load the certificates named by the tls_* parameters, when tls_cert_file is set. */
static void
tls_load(void)
{
	char err[512];

	if (!tls_configured())
		return;
	imapd_tls = tls_server_load(err, sizeof err);
	if (imapd_tls == NULL)
		fatalx("cannot load the TLS certificates: %s", err);
}

static void
reap_children(evutil_socket_t sig, short what, void *arg)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < nchildren; i++) {
			if (children[i].pid != pid)
				continue;
			if (WIFSIGNALED(status))
				log_warn("session=%llu: %s process %ld killed by signal %d",
				    children[i].session_id, children[i].is_login ? "login" : "mail",
				    (long)pid, WTERMSIG(status));
			if (children[i].conn != NULL)
				ipc_conn_shutdown(children[i].conn);
			if (children[i].is_proxy)
				nproxies--;
			children[i] = children[--nchildren];
			break;
		}
	}
}

/* Other settings are read once, and sessions already running keep their
 * TLS context: only new connections get the reloaded certificates. */
static void
signal_reload_cb(evutil_socket_t sig, short what, void *arg)
{
	char err[512];

	if (imapd_tls == NULL) {
		log_info("received SIGHUP: no TLS certificates to reload, restart imapd to apply a new configuration");
		return;
	}
	if (tls_server_reload(&imapd_tls, "imapd", err, sizeof err) == 0)
		log_info("received SIGHUP: TLS certificates reloaded for new connections");
}

static void
signal_stop_cb(evutil_socket_t sig, short what, void *arg)
{
	log_info("received signal %d, stopping", (int)sig);
	event_base_loopbreak(base);
}

int
main(int argc, char **argv)
{
	struct event *sigterm, *sigint, *sigchld, *sighup;

	daemon_start("imapd", argc, argv);
	settings_load(&imapd_settings);

	tls_load();
	base = event_base_new();
	if (base == NULL)
		fatalx("event_base_new failed");
	listen_all();

	sigterm = evsignal_new(base, SIGTERM, signal_stop_cb, NULL);
	sigint = evsignal_new(base, SIGINT, signal_stop_cb, NULL);
	sigchld = evsignal_new(base, SIGCHLD, reap_children, NULL);
	sighup = evsignal_new(base, SIGHUP, signal_reload_cb, NULL);
	evsignal_add(sighup, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	evsignal_add(sigchld, NULL);

	log_info("started: auth_socket=%s, plaintext_auth=%s, tls=%s", imapd_settings.auth_socket,
	    imapd_settings.plaintext_auth, imapd_tls != NULL ? "yes" : "no");
	sd_notify(0, "READY=1");
	event_base_dispatch(base);

	/* Like Dovecot's shutdown_clients = yes: sessions end with the master. */
	sd_notify(0, "STOPPING=1");
	for (size_t i = 0; i < nchildren; i++)
		kill(children[i].pid, SIGTERM);
	for (size_t i = 0; i < nlisteners; i++)
		evconnlistener_free(listeners[i]);
	for (size_t i = 0; i < nchildren; i++)
		if (children[i].conn != NULL)
			ipc_conn_free(children[i].conn);
	free(children);
	tls_server_free(imapd_tls);
	event_free(sigterm);
	event_free(sigint);
	event_free(sigchld);
	event_free(sighup);
	event_base_free(base);
	log_info("stopped");
	return 0;
}
