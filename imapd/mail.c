/*
 * The start of a mail process. Forked by the master as root, it claims
 * the login from authd (REQUEST with the login process's pid, the auth
 * id and the cookie), sends the result to the login process, becomes
 * the user and runs the session. It reads nothing from the client while
 * it is root.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "imapd.h"
#include "ipc.h"
#include "log.h"
#include "privsep.h"
#include "session.h"
#include "userdb.h"
#include "util.h"

static void
send_result(int login_fd, const char *status)
{
	struct ipc_msg *result = ipc_msg_new("RESULT");

	ipc_msg_add(result, "status", status);
	if (ipc_send(login_fd, result, -1) < 0)
		log_debug("result to the login process not sent: %s", strerror(errno));
	ipc_msg_free(result);
	close(login_fd);
}

/*
 * The Maildir directory of ENTRY from its mail field, or from
 * mail_location (deliverd's default) when it has none, in Dovecot's
 * syntax "maildir:~/Maildir[:options]". Other formats are not served.
 */
static int
maildir_location(const struct userdb_entry *entry, char *out, size_t outsize)
{
	const char *location = entry->mail[0] != '\0' ? entry->mail : config_string("mail_location");
	size_t len;

	if (strncmp(location, "maildir:", 8) != 0)
		return -1;
	location += 8;
	len = strcspn(location, ":");
	if (location[0] == '~' && (location[1] == '/' || len == 1)) {
		if (snprintf(out, outsize, "%s%.*s", entry->home, (int)len - 1, location + 1) >= (int)outsize)
			return -1;
	} else if (snprintf(out, outsize, "%.*s", (int)len, location) >= (int)outsize) {
		return -1;
	}
	return out[0] == '/' ? 0 : -1;
}

/* Decode the hex-encoded pipelined input; returns its length. */
static size_t
decode_input(const char *hex, char *out, size_t outsize)
{
	size_t n = 0;

	for (; hex[0] != '\0' && hex[1] != '\0' && n < outsize; hex += 2) {
		unsigned int byte;

		if (sscanf(hex, "%2x", &byte) != 1)
			break;
		out[n++] = (char)byte;
	}
	return n;
}

static void __attribute__((noreturn))
fail(int client_fd, const char *tag, const char *text)
{
	char line[512];

	snprintf(line, sizeof line, "%s %s\r\n", tag, text);
	if (write_all(client_fd, line, strlen(line)) < 0)
		log_debug("write to the client failed: %s", strerror(errno));
	_exit(1);
}

/* System users get their supplementary groups, virtual users none. */
static const char *
system_user_name(const struct userdb_entry *entry)
{
	struct passwd *pw = getpwnam(entry->user);

	return pw != NULL && pw->pw_uid == entry->uid ? entry->user : NULL;
}

void
mail_process_run(struct ipc_msg *handoff, int client_fd, int login_fd, pid_t login_pid)
{
	struct userdb_client *userdb = userdb_client_new(imapd_settings.userdb_socket);
	struct userdb_entry entry;
	const char *tag = ipc_msg_get(handoff, "tag");
	const char *cookie = ipc_msg_get(handoff, "cookie");
	unsigned long long session_id = (unsigned long long)ipc_msg_get_int(handoff, "session", 0);
	long long auth_id = ipc_msg_get_int(handoff, "auth_id", -1);
	char err[256], maildir[PATH_MAX], input[IMAPD_HANDOFF_INPUT_MAX];
	size_t inputlen;
	int r;

	if (tag == NULL || cookie == NULL || auth_id < 0 || auth_id > 0xffffffffLL) {
		send_result(login_fd, "fail");
		log_error("session=%llu: incomplete login handoff", session_id);
		_exit(1);
	}
	r = userdb_request(userdb, login_pid, (unsigned)auth_id, cookie,
	    (int)imapd_settings.auth_timeout * 1000, &entry, err, sizeof err);
	userdb_client_free(userdb);
	send_result(login_fd, r == 1 ? "ok" : "fail");
	if (r != 1) {
		log_error("session=%llu: authd did not confirm the login: %s", session_id, err);
		fail(client_fd, tag, r == 0 ? "NO [AUTHENTICATIONFAILED] Authentication failed." :
		    "NO [UNAVAILABLE] Login failed: user database unavailable, try again later");
	}
	if (maildir_location(&entry, maildir, sizeof maildir) < 0) {
		log_error("session=%llu: user=<%s>: unsupported mail location \"%s\"", session_id,
		    entry.user, entry.mail);
		fail(client_fd, tag, "NO [UNAVAILABLE] Mailbox format not supported");
	}
	if (entry.uid == (uid_t)-1 || entry.gid == (gid_t)-1 || entry.uid == 0) {
		log_error("session=%llu: user=<%s>: no usable uid and gid", session_id, entry.user);
		fail(client_fd, tag, "NO [UNAVAILABLE] Login failed: internal error");
	}
	if (entry.home[0] != '\0' && access(entry.home, F_OK) < 0 &&
	    privsep_create_home(entry.home, entry.uid, entry.gid) < 0)
		log_warn("session=%llu: cannot create home directory %s: %s", session_id, entry.home,
		    strerror(errno));
	/* TODO: virtual users share virtual_mail_user's uid, so only the mailbox
	 * name checks keep one from another's files. A chroot into the home
	 * (Dovecot's mail_chroot) would make the kernel enforce it, once
	 * SEARCH's iconv charsets are loaded before it. */
	if (privsep_become(entry.uid, entry.gid, system_user_name(&entry)) < 0) {
		log_error("session=%llu: user=<%s>: cannot switch to uid %ld: %s", session_id,
		    entry.user, (long)entry.uid, strerror(errno));
		fail(client_fd, tag, "NO [UNAVAILABLE] Login failed: internal error");
	}
	if (entry.home[0] != '\0' && chdir(entry.home) < 0 && errno != ENOENT)
		log_warn("session=%llu: chdir %s: %s", session_id, entry.home, strerror(errno));

	inputlen = decode_input(ipc_msg_get(handoff, "input") != NULL ?
	    ipc_msg_get(handoff, "input") : "", input, sizeof input);
	session_run(&(struct session_start){
	    .fd = client_fd, .session_id = session_id, .tag = tag, .user = entry.user,
	    .maildir = maildir, .input = input, .inputlen = inputlen });
}
