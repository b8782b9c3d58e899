/*
 * authd: serves user lookups (userdb) on userdb_socket with the Dovecot
 * auth-master protocol, from system users and a Dovecot-style
 * passwd-file. It binds as root, then runs as smtpd_user.
 */
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "authd.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "privsep.h"
#include "util.h"

#define MAX_OVERRIDES 64

static void
usage(void)
{
	fprintf(stderr, "usage: authd [-f] [-c config] [-o name=value]...\n");
	exit(EX_USAGE);
}

/* Apply the -o name=value options on top of the loaded configuration. */
static void
apply_overrides(char **overrides, int count)
{
	char err[512];

	for (int i = 0; i < count; i++) {
		char *eq = strchr(overrides[i], '=');

		if (eq == NULL) {
			fprintf(stderr, "authd: invalid -o %s: expected name=value\n", overrides[i]);
			exit(EX_USAGE);
		}
		*eq = '\0';
		if (config_set(overrides[i], eq + 1, err, sizeof err) < 0) {
			fprintf(stderr, "authd: -o %s: %s\n", overrides[i], err);
			exit(EX_USAGE);
		}
	}
}

static mode_t
socket_mode(void)
{
	const char *text = config_string("userdb_socket_mode");
	char *end;
	long mode;

	errno = 0;
	mode = strtol(text, &end, 8);
	if (*text == '\0' || *end != '\0' || errno != 0 || mode < 0 || mode > 0777)
		fatalx("invalid userdb_socket_mode \"%s\": expected octal permissions such as 0660",
		    text);
	return (mode_t)mode;
}

static gid_t
socket_group(void)
{
	const char *name = config_string("userdb_socket_group");
	struct group *gr;
	uid_t uid;
	gid_t gid;

	if (*name == '\0') {
		if (privsep_lookup(config_string("smtpd_user"), &uid, &gid) < 0)
			fatalx("smtpd_user %s not found: create it or set userdb_socket_group",
			    config_string("smtpd_user"));
		return gid;
	}
	gr = getgrnam(name);
	if (gr == NULL)
		fatalx("userdb_socket_group %s not found", name);
	return gr->gr_gid;
}

/* Create userdb_socket (and its directory) with the configured mode and group. */
static int
userdb_socket_open(int as_root)
{
	const char *path = config_string("userdb_socket");
	mode_t mode = socket_mode();
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
	if (as_root && setegid(socket_group()) < 0)
		fatal("cannot switch to the group of %s", path);
	old_umask = umask(0777 & ~mode);
	fd = ipc_listen(path, mode);
	umask(old_umask);
	if (fd < 0)
		fatal("cannot listen on userdb_socket %s", path);
	if (as_root && setegid(0) < 0)
		fatal("cannot switch back to group root");
	return fd;
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	log_info("stopping on signal %d", (int)sig);
	event_base_loopbreak(arg);
}

static void
on_reload(evutil_socket_t sig, short what, void *arg)
{
	log_info("reloading the passwd-file on SIGHUP");
	users_reload();
}

int
main(int argc, char **argv)
{
	char *overrides[MAX_OVERRIDES];
	const char *config_file = NULL;
	int foreground = 0, noverrides = 0, opt, listen_fd, as_root;
	struct event_base *base;
	struct event *sigterm, *sigint, *sighup;

	while ((opt = getopt(argc, argv, "fc:o:")) != -1) {
		switch (opt) {
		case 'f':
			foreground = 1;
			break;
		case 'c':
			config_file = optarg;
			break;
		case 'o':
			if (noverrides == MAX_OVERRIDES)
				usage();
			overrides[noverrides++] = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	config_load_or_die(config_file);
	apply_overrides(overrides, noverrides);
	log_init("authd", foreground, config_bool("syslog"));
	log_set_debug(config_bool("debug"));
	signal(SIGPIPE, SIG_IGN);

	as_root = privsep_is_root();
	listen_fd = userdb_socket_open(as_root);
	privsep_drop(config_string("smtpd_user"), NULL);
	users_init(as_root);

	base = event_base_new();
	if (base == NULL)
		fatalx("cannot create the event loop");
	master_listen(base, listen_fd);
	sigterm = evsignal_new(base, SIGTERM, on_stop, base);
	sigint = evsignal_new(base, SIGINT, on_stop, base);
	sighup = evsignal_new(base, SIGHUP, on_reload, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	evsignal_add(sighup, NULL);

	log_info("started: userdb_socket=%s, virtual_passwd_file=%s",
	    config_string("userdb_socket"), config_string("virtual_passwd_file"));
	sd_notify(0, "READY=1");
	event_base_dispatch(base);

	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	event_base_free(base);
	log_info("stopped");
	return 0;
}
