/*
 * deliverd [-f] [-c CONFIG] [-o name=value]...
 *
 * Binds lmtp_socket as root, then runs the master (see deliverd.h for
 * the process layout). Started as an ordinary user, every process runs
 * as that user.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "daemon.h"
#include "deliverd.h"
#include "ipc.h"
#include "log.h"
#include "privsep.h"
#include "util.h"

/* Create the socket's directory, bind, and set the group if configured. */
static int
open_listener(void)
{
	const char *path = config_string("lmtp_socket");
	const char *group = config_string("lmtp_socket_group");
	char dir[PATH_MAX];
	char *slash;
	int fd;

	strlcpy_x(dir, path, sizeof dir);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir_p(dir, 0755) < 0)
			fatal("cannot create the directory of lmtp_socket %s", dir);
	}

	fd = ipc_listen(path, config_mode("lmtp_socket_mode"));
	if (fd < 0)
		fatal("cannot listen on lmtp_socket %s", path);

	/* queued connects as queue_user, so by default its group gets the socket. */
	if (group[0] == '\0' && privsep_is_root()) {
		uid_t uid;
		gid_t gid;

		if (privsep_lookup(config_string("queue_user"), &uid, &gid) < 0)
			fatalx("queue_user %s not found: create it or set lmtp_socket_group",
			    config_string("queue_user"));
		if (chown(path, (uid_t)-1, gid) < 0)
			fatal("cannot give %s to the group of %s", path, config_string("queue_user"));
	} else if (group[0] != '\0') {
		struct group *gr = getgrnam(group);

		if (gr == NULL)
			fatalx("lmtp_socket_group %s not found", group);
		if (chown(path, (uid_t)-1, gr->gr_gid) < 0)
			fatal("cannot give %s to group %s", path, group);
	}
	return fd;
}

/* Check the users the children switch to before anyone connects. */
static void
check_users(void)
{
	uid_t uid;
	gid_t gid;

	if (!privsep_is_root())
		return;
	if (privsep_lookup(config_string("smtpd_user"), &uid, &gid) < 0)
		fatalx("smtpd_user %s not found: create it (adduser --system --group %s) or set another user",
		    config_string("smtpd_user"), config_string("smtpd_user"));
	if (privsep_lookup(config_string("default_privs"), &uid, &gid) < 0)
		log_warn("default_privs user %s not found: |command and /file aliases will fail",
		    config_string("default_privs"));
	else if (uid == 0)
		fatalx("default_privs must not be root");
}

int
main(int argc, char **argv)
{
	int fd;

	daemon_start("deliverd", argc, argv);

	check_users();
	umask(022);
	fd = open_listener();
	umask(077);
	log_info("listening for LMTP on %s", config_string("lmtp_socket"));
	sd_notify(0, "READY=1");

	master_run(fd);
	log_info("stopped");
	return 0;
}
