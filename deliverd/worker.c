/*
 * A delivery worker: forked by the root master for one DELIVER request.
 * It looks the recipient up in authd's userdb itself (the unprivileged
 * session only names the user), creates a missing home directory while
 * it is still root, switches to the recipient's uid, and delivers.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "deliverd.h"
#include "ipc.h"
#include "log.h"
#include "privsep.h"
#include "userdb.h"
#include "util.h"

#define USERDB_TIMEOUT_MS 10000
#define MAX_GROUPS 256

/*
 * Keep the user from attaching to this process: it has connections
 * made as root (to authd's userdb, and to queued for a forward), which
 * would give the user root's rights there. The kernel makes a process
 * that changed its uid non-dumpable only while fs.suid_dumpable is 0.
 */
static int
become_undumpable(int rc, int was_root)
{
	if (rc == 0 && was_root && prctl(PR_SET_DUMPABLE, 0) < 0)
		return -1;
	return rc;
}

/* The extra group is the group of a mail spool directory such as
 * Debian's /var/mail (root:mail, mode 2775): the user needs it to create
 * USER.lock there, and nothing else in the worker uses it. */
int
worker_become(uid_t uid, gid_t gid, const char *name, gid_t extra_gid)
{
	gid_t groups[MAX_GROUPS];
	int count, was_root = privsep_is_root();

	if (extra_gid == (gid_t)-1)
		return become_undumpable(privsep_become(uid, gid, name), was_root);
	if (!was_root)
		return 0;
	if (uid == 0) {
		errno = EPERM;
		return -1;
	}

	if (name != NULL) {
		if (initgroups(name, gid) < 0)
			return -1;
	} else if (setgroups(1, &gid) < 0) {
		return -1;
	}
	count = getgroups(MAX_GROUPS - 1, groups);
	if (count < 0)
		return -1;
	groups[count++] = extra_gid;
	if (setgroups((size_t)count, groups) < 0)
		return -1;

	if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -1;
	if (setuid(0) == 0) {
		errno = EPERM;
		return -1;
	}
	return become_undumpable(0, 1);
}

/* The group to add for mbox delivery into a spool directory that only
 * its group may write, or (gid_t)-1. */
static gid_t
spool_group_for(const char *mbox_path)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;

	strlcpy_x(dir, mbox_path, sizeof dir);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return (gid_t)-1;
	*slash = '\0';
	if (stat(dir[0] != '\0' ? dir : "/", &st) < 0)
		return (gid_t)-1;
	if ((st.st_mode & S_IWOTH) || !(st.st_mode & S_IWGRP))
		return (gid_t)-1;
	return st.st_gid;
}

/* The mail location of USER: its userdb mail field, else mail_location. */
static const char *
user_mail_location(const struct userdb_entry *user)
{
	return user->mail[0] != '\0' ? user->mail : config_string("mail_location");
}

const char *
mailbox_folder(const struct delivery_request *request)
{
	const char *folder = config_string("deliverd_quarantine_folder");

	return request->quarantine && folder[0] != '\0' ? folder : NULL;
}

void
mailbox_deliver(const struct message *msg, const struct delivery_request *request,
    const struct userdb_entry *user, struct delivery_result *result)
{
	const char *location = user_mail_location(user);
	char type[16], path[PATH_MAX];

	if (mail_location_inbox(location, user, config_string("mail_spool_directory"), type,
	    sizeof type, path, sizeof path) < 0) {
		result_set(result, EX_TEMPFAIL, "4.3.5", "unsupported mail location \"%s\" for %s",
		    location, user->user);
		return;
	}
	if (strcmp(type, "maildir") == 0) {
		maildir_deliver(msg, path, mailbox_folder(request), request->recipient, result);
		return;
	}

	/* TODO: deliver into the quarantine folder of mbox locations too
	 * (a file next to the inbox, as Dovecot's mbox layout has it). */
	if (mailbox_folder(request) != NULL)
		log_warn("%s: quarantined message for %s goes to the mbox inbox %s: the quarantine "
		    "folder needs a Maildir", request->session_id, request->recipient, path);
	mbox_deliver(msg, path, request->recipient, MBOX_DOTLOCK | MBOX_CHECK_OWNER, result);
}

void
file_deliver(const struct message *msg, const char *path, const char *recipient,
    struct delivery_result *result)
{
	size_t len = strlen(path);
	char dir[PATH_MAX];
	char *slash;

	if (len > 1 && path[len - 1] == '/') {
		strlcpy_x(dir, path, sizeof dir);
		dir[len - 1] = '\0';
		maildir_deliver(msg, dir, NULL, recipient, result);
		return;
	}

	/* Dotlock only where the lock file can be created: /var/log/x and
	 * similar targets make do with the fcntl lock. */
	strlcpy_x(dir, path, sizeof dir);
	slash = strrchr(dir, '/');
	if (slash != NULL)
		slash[slash == dir ? 1 : 0] = '\0';
	mbox_deliver(msg, path, recipient, access(dir, W_OK) == 0 ? MBOX_DOTLOCK : 0, result);
	if (result->status == EX_OK)
		result_set(result, EX_OK, "2.0.0", "delivered to file: %s", path);
}

/*
 * As root: look the user up, check the uid, create a missing home
 * directory and switch to the user. Returns 0, or -1 with RESULT filled.
 */
static int
become_mailbox_owner(const struct delivery_request *request, struct userdb_entry *user,
    struct delivery_result *result)
{
	struct userdb_client *client = userdb_client_new(config_string("userdb_socket"));
	char err[256], type[16], path[PATH_MAX];
	gid_t extra_gid = (gid_t)-1;
	int found = userdb_lookup(client, request->user, "lmtp", USERDB_TIMEOUT_MS, user, err,
	    sizeof err);

	userdb_client_free(client);
	if (found < 0) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "user lookup for %s failed: %s", request->user,
		    err);
		return -1;
	}
	if (found == 0) {
		result_set(result, EX_NOUSER, "5.1.1", "user %s unknown", request->user);
		return -1;
	}

	if (privsep_is_root()) {
		if (user->uid == (uid_t)-1 || user->gid == (gid_t)-1) {
			result_set(result, EX_TEMPFAIL, "4.3.5", "userdb entry of %s has no uid or gid",
			    user->user);
			return -1;
		}
		if (user->uid == 0) {
			result_set(result, EX_TEMPFAIL, "4.3.5",
			    "mail for %s (uid 0) is not delivered as root: add an alias for it",
			    user->user);
			return -1;
		}
	}
	if (user->home[0] == '\0' && strchr(user_mail_location(user), '~') != NULL) {
		result_set(result, EX_TEMPFAIL, "4.3.5", "userdb entry of %s has no home directory",
		    user->user);
		return -1;
	}
	if (user->home[0] != '\0' && access(user->home, F_OK) < 0 &&
	    privsep_create_home(user->home, user->uid, user->gid) < 0) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "cannot create home directory %s: %s",
		    user->home, strerror(errno));
		return -1;
	}

	if (mail_location_inbox(user_mail_location(user), user,
	    config_string("mail_spool_directory"), type, sizeof type, path, sizeof path) == 0 &&
	    strcmp(type, "mbox") == 0)
		extra_gid = spool_group_for(path);

	/* A forward must reach queued over a connection made as root. */
	if (request->forward && forward_needs_root(user->home))
		forward_connect_early();

	/* System users get their supplementary groups; virtual users have
	 * none (their names are not in /etc/group). */
	if (worker_become(user->uid, user->gid, request->forward ? user->user : NULL,
	    extra_gid) < 0) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "cannot switch to uid %u for %s: %s",
		    (unsigned)user->uid, user->user, strerror(errno));
		return -1;
	}
	return 0;
}

/* Deliver to a user's mailbox, or through their ~/.forward (which logs
 * each of its destinations itself). */
static void
worker_mailbox(const struct delivery_request *request, const struct message *msg,
    struct delivery_result *result)
{
	struct userdb_entry user;

	if (become_mailbox_owner(request, &user, result) < 0) {
		log_delivery(request, result, request->recipient);
		return;
	}
	if (request->forward && forward_deliver(msg, request, &user, result))
		return;
	mailbox_deliver(msg, request, &user, result);
	log_delivery(request, result, request->recipient);
}

/* Run a |command or /file target of the aliases file as default_privs. */
static void
worker_alias_target(const struct delivery_request *request, const struct message *msg,
    struct delivery_result *result)
{
	const char *privs = config_string("default_privs");
	struct passwd *pw = getpwnam(privs);
	char local[320], domain[256];
	const char *at = strrchr(request->recipient, '@');
	struct command_env env = {
		.sender = msg->sender,
		.recipient = request->recipient,
		.local = local,
		.domain = domain,
		.extension = request->detail,
		.home = "/",
		.user = privs,
	};

	if (pw == NULL && privsep_is_root()) {
		result_set(result, EX_TEMPFAIL, "4.3.5", "default_privs user %s not found", privs);
		log_delivery(request, result, request->recipient);
		return;
	}
	if (pw != NULL && worker_become(pw->pw_uid, pw->pw_gid, privs, (gid_t)-1) < 0) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "cannot switch to %s: %s", privs,
		    strerror(errno));
		log_delivery(request, result, request->recipient);
		return;
	}

	strlcpy_x(local, request->recipient, sizeof local);
	if (at != NULL && (size_t)(at - request->recipient) < sizeof local)
		local[at - request->recipient] = '\0';
	strlcpy_x(domain, at != NULL ? at + 1 : "", sizeof domain);

	if (strcmp(request->kind, "command") == 0)
		command_deliver(msg, request->text, &env, result);
	else
		file_deliver(msg, request->text, request->recipient, result);
	log_delivery(request, result, request->recipient);
}

void
worker_run(const struct ipc_msg *request_msg, int msg_fd, int result_fd)
{
	struct delivery_request request;
	struct delivery_result result;
	struct message msg;
	struct stat st;
	struct ipc_msg *reply;

	if (request_from_msg(&request, request_msg) < 0 || fstat(msg_fd, &st) < 0) {
		result_set(&result, EX_TEMPFAIL, "4.3.0", "invalid delivery request");
		request.id = ipc_msg_get_int(request_msg, "id", -1);
	} else {
		msg.fd = msg_fd;
		msg.size = st.st_size;
		msg.sender = request.sender;
		if (strcmp(request.kind, "mailbox") == 0)
			worker_mailbox(&request, &msg, &result);
		else
			worker_alias_target(&request, &msg, &result);
	}

	reply = result_to_msg(&result, request.id);
	if (ipc_send(result_fd, reply, -1) < 0)
		log_error("%s: cannot send the delivery result to the master: %s",
		    ipc_msg_get(request_msg, "session") ? ipc_msg_get(request_msg, "session") : "-",
		    strerror(errno));
	ipc_msg_free(reply);
}
