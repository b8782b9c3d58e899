/*
 * filterd [-f] [-c CONFIG] [-o name=value]...
 *
 * Binds filterd_socket (as root, then drops to filter_user), builds the
 * chain of checks from filterd_checks, and replies to smtpd's MAIL and
 * MESSAGE requests (lib/filter_proto.h). Started as an ordinary user,
 * everything runs as that user.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "chain.h"
#include "config.h"
#include "daemon.h"
#include "ipc.h"
#include "log.h"
#include "privsep.h"
#include "server.h"
#include "util.h"

/* Give the socket to filterd_socket_group, or by default to the group of
 * smtpd_user, the only client. */
static void
set_socket_group(const char *path)
{
	const char *group = config_string("filterd_socket_group");
	uid_t uid;
	gid_t gid;

	if (group[0] != '\0') {
		struct group *gr = getgrnam(group);

		if (gr == NULL)
			fatalx("filterd_socket_group %s not found", group);
		gid = gr->gr_gid;
	} else if (privsep_is_root()) {
		if (privsep_lookup(config_string("smtpd_user"), &uid, &gid) < 0)
			fatalx("smtpd_user %s not found: create it or set filterd_socket_group",
			    config_string("smtpd_user"));
	} else {
		return;
	}
	if (chown(path, (uid_t)-1, gid) < 0)
		fatal("cannot give %s to group %u", path, (unsigned)gid);
}

/* Serve root, the uid filterd was started as, and the uids of smtpd_user,
 * queue_user and filter_user. The socket's default mode lets every local
 * user connect, so that queued needs no group that also opens other
 * daemons' sockets. */
static void
allow_clients(void)
{
	const char *users[] = { "smtpd_user", "queue_user", "filter_user" };
	uid_t uids[SERVER_ALLOWED_UIDS_MAX];
	size_t count = 0;

	uids[count++] = 0;
	uids[count++] = getuid();
	for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
		uid_t uid;
		gid_t gid;

		if (privsep_lookup(config_string(users[i]), &uid, &gid) == 0)
			uids[count++] = uid;
	}
	server_allow_uids(uids, count);
}

static int
open_listener(void)
{
	const char *path = config_string("filterd_socket");
	char dir[PATH_MAX];
	char *slash;
	int fd;

	strlcpy_x(dir, path, sizeof dir);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir_p(dir, 0755) < 0)
			fatal("cannot create the directory of filterd_socket %s", dir);
	}

	umask(022);
	fd = ipc_listen(path, config_mode("filterd_socket_mode"));
	umask(077);
	if (fd < 0)
		fatal("cannot listen on filterd_socket %s", path);
	set_socket_group(path);
	return fd;
}

int
main(int argc, char **argv)
{
	char err[512];
	int listener;

	daemon_start("filterd", argc, argv);

	if (privsep_is_root()) {
		uid_t uid;
		gid_t gid;

		if (privsep_lookup(config_string("filter_user"), &uid, &gid) < 0)
			fatalx("filter_user %s not found: create it (adduser --system --group %s) or set another user",
			    config_string("filter_user"), config_string("filter_user"));
	}
	listener = open_listener();
	allow_clients();
	privsep_drop(config_string("filter_user"), NULL);

	/* Signals go to the signalfd of server_run, so block them before
	 * any check starts a thread. */
	server_block_signals();
	if (chain_init(err, sizeof err) < 0)
		fatalx("%s", err);

	log_info("listening on %s with %zu checks", config_string("filterd_socket"), chain_length());
	sd_notify(0, "READY=1");
	server_run(listener);

	close(listener);
	log_info("stopped");
	return 0;
}
