/*
 * authd: serves user lookups (userdb) on userdb_socket with the Dovecot
 * auth-master protocol, from system users and a Dovecot-style
 * passwd-file, and password checks (passdb) on auth_socket with the
 * Dovecot authentication protocol, of the passwd-file's users and of
 * system users through PAM. It binds as root, then runs as smtpd_user;
 * only the pam worker it forks first keeps root.
 */
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "authd.h"
#include "config.h"
#include "daemon.h"
#include "ipc.h"
#include "log.h"
#include "privsep.h"
#include "util.h"

/* The group in parameter NAME, or the primary group of smtpd_user when it is empty. */
static gid_t
socket_group(const char *name)
{
	const char *group = config_string(name);
	struct group *gr;
	uid_t uid;
	gid_t gid;

	if (*group == '\0') {
		if (privsep_lookup(config_string("smtpd_user"), &uid, &gid) < 0)
			fatalx("smtpd_user %s not found: create it or set %s",
			    config_string("smtpd_user"), name);
		return gid;
	}
	gr = getgrnam(group);
	if (gr == NULL)
		fatalx("%s %s not found", name, group);
	return gr->gr_gid;
}

/*
 * Create the socket PATH of parameter PREFIX (and its directory) with the
 * mode and group in PREFIX_mode and PREFIX_group.
 */
static int
socket_open(const char *prefix, const char *path, int as_root)
{
	char *mode_name = xasprintf("%s_mode", prefix), *group_name = xasprintf("%s_group", prefix);
	mode_t mode = config_mode(mode_name);
	char *dir = xstrdup(path);
	mode_t old_umask;
	int fd;

	if (mkdir_p(dirname(dir), 0755) < 0)
		log_warn("cannot create the directory of %s: %s", path, strerror(errno));
	free(dir);

	/*
	 * The socket is created with its final mode and, as root, with its
	 * final group (the effective gid at bind time), so no client ever sees
	 * it with other permissions.
	 */
	if (as_root && setegid(socket_group(group_name)) < 0)
		fatal("cannot switch to the group of %s", path);
	old_umask = umask(0777 & ~mode);
	fd = ipc_listen(path, mode);
	umask(old_umask);
	if (fd < 0)
		fatal("cannot listen on %s %s", prefix, path);
	if (as_root && setegid(0) < 0)
		fatal("cannot switch back to group root");
	free(mode_name);
	free(group_name);
	return fd;
}

/* auth_socket, or auth-client next to userdb_socket when it is empty. */
static const char *
auth_socket_path(void)
{
	static char *path;
	char *dir;

	if (*config_string("auth_socket") != '\0')
		return config_string("auth_socket");
	if (path == NULL) {
		dir = xstrdup(config_string("userdb_socket"));
		path = xasprintf("%s/auth-client", dirname(dir));
		free(dir);
	}
	return path;
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	log_info("stopping on signal %d", (int)sig);
	event_base_loopbreak(arg);
}

/* The pam worker is authd's only child; log how it ended and reap it. */
static void
on_child(evutil_socket_t sig, short what, void *arg)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (WIFSIGNALED(status))
			log_error("pam worker pid %ld killed by signal %d", (long)pid,
			    WTERMSIG(status));
		else
			log_error("pam worker pid %ld exited with status %d", (long)pid,
			    WEXITSTATUS(status));
	}
}

static void
on_reload(evutil_socket_t sig, short what, void *arg)
{
	log_info("reloading the passwd-file on SIGHUP");
	users_reload();
}

/* The passdb list for the started line, such as "passwd-file pam". */
static const char *
passdb_names(void)
{
	static char names[256];
	size_t len = 0;

	names[0] = '\0';
	for (char *const *item = config_list("passdb"); *item != NULL; item++)
		len += (size_t)snprintf(names + len, sizeof names - len, "%s%s",
		    len > 0 ? " " : "", *item);
	return names;
}

int
main(int argc, char **argv)
{
	int userdb_fd, auth_fd, pam_fd = -1, as_root;
	struct event_base *base;
	struct event *sigterm, *sigint, *sighup, *sigchld;

	daemon_start("authd", argc, argv);

	as_root = privsep_is_root();
	/* Forked first, so the only process that keeps root has no listening socket. */
	if (passdb_uses("pam"))
		pam_fd = pam_worker_start();
	/* userdb_socket last: clients take it as the sign that authd is ready. */
	auth_fd = socket_open("auth_socket", auth_socket_path(), as_root);
	userdb_fd = socket_open("userdb_socket", config_string("userdb_socket"), as_root);
	privsep_drop(config_string("smtpd_user"), NULL);
	users_init(as_root);

	base = event_base_new();
	if (base == NULL)
		fatalx("cannot create the event loop");
	passdb_init(base, pam_fd);
	master_listen(base, userdb_fd);
	client_listen(base, auth_fd);
	sigterm = evsignal_new(base, SIGTERM, on_stop, base);
	sigint = evsignal_new(base, SIGINT, on_stop, base);
	sighup = evsignal_new(base, SIGHUP, on_reload, NULL);
	sigchld = evsignal_new(base, SIGCHLD, on_child, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	evsignal_add(sighup, NULL);
	evsignal_add(sigchld, NULL);
	/* A worker that ended before the handler was in place. */
	on_child(SIGCHLD, 0, NULL);

	log_info("started: userdb_socket=%s, auth_socket=%s, virtual_passwd_file=%s, passdb=%s",
	    config_string("userdb_socket"), auth_socket_path(),
	    config_string("virtual_passwd_file"), passdb_names());
	sd_notify(0, "READY=1");
	event_base_dispatch(base);

	listener_free_all();
	client_close_all();
	master_close_all();
	passdb_close();
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	event_free(sigchld);
	event_base_free(base);
	log_info("stopped");
	return 0;
}
