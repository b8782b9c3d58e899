/*
 * mbox delivery (mboxrd): a "From sender date" line, the message with
 * lines matching ^>*From  quoted by one more '>', and a blank line.
 * Locking is what Debian's mail tools and Postfix use together: a
 * USER.lock dotlock file next to the mailbox, then an fcntl lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "deliverd.h"
#include "log.h"
#include "util.h"

/* Postfix 3.7 defaults: deliver_lock_attempts, deliver_lock_delay and
 * stale_lock_time. */
#define LOCK_ATTEMPTS		20
#define LOCK_DELAY_SECONDS	1
#define STALE_LOCK_SECONDS	500

/*
 * Create PATH.lock with O_EXCL, retrying while another process holds it
 * and removing a lock older than STALE_LOCK_SECONDS. Returns 0, or -1
 * with RESULT filled.
 */
static int
dotlock_acquire(const char *lock_path, struct delivery_result *result)
{
	for (int attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
		struct stat st;
		int fd = open(lock_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (errno != EEXIST) {
			result_set(result, EX_TEMPFAIL, "4.2.0", "cannot create lock file %s: %s",
			    lock_path, strerror(errno));
			return -1;
		}
		if (stat(lock_path, &st) == 0 && time(NULL) - st.st_mtime > STALE_LOCK_SECONDS) {
			log_warn("removing stale lock file %s (older than %d seconds)", lock_path,
			    STALE_LOCK_SECONDS);
			unlink(lock_path);
			continue;
		}
		sleep(LOCK_DELAY_SECONDS);
	}
	result_set(result, EX_TEMPFAIL, "4.2.0", "mailbox is locked: %s exists", lock_path);
	return -1;
}

static int
fcntl_lock_acquire(int fd, const char *path, struct delivery_result *result)
{
	struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	for (int attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
		if (fcntl(fd, F_SETLK, &lock) == 0)
			return 0;
		if (errno != EACCES && errno != EAGAIN) {
			result_set(result, EX_TEMPFAIL, "4.2.0", "cannot lock %s: %s", path,
			    strerror(errno));
			return -1;
		}
		sleep(LOCK_DELAY_SECONDS);
	}
	result_set(result, EX_TEMPFAIL, "4.2.0", "mailbox is locked: %s has an fcntl lock", path);
	return -1;
}

/* Open the mailbox for appending, refusing anything but a plain file
 * with one link (a hard link could make us write into another file). */
static int
mbox_open(const char *path, int flags, struct delivery_result *result)
{
	struct stat st;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);

	/* Permissions are often fixed by an admin, so this failure is temporary. */
	if (fd < 0) {
		result_set(result, EX_TEMPFAIL, "4.2.0", "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		result_set(result, EX_CANTCREAT, "5.2.0", "%s is not a regular file with one link",
		    path);
		close(fd);
		return -1;
	}
	if ((flags & MBOX_CHECK_OWNER) && st.st_uid != geteuid()) {
		result_set(result, EX_CANTCREAT, "5.2.0", "%s is owned by uid %u, not by the recipient",
		    path, (unsigned)st.st_uid);
		close(fd);
		return -1;
	}
	return fd;
}

/* Whether the message ends with a line end. */
static int
message_ends_with_newline(const struct message *msg)
{
	char last;

	if (msg->size == 0)
		return 0;
	return pread(msg->fd, &last, 1, msg->size - 1) == 1 && last == '\n';
}

/* Append the message to FD; on failure cut the file back to its size
 * before, so no partial message remains. */
static void
mbox_append(const struct message *msg, int fd, const char *path, const char *recipient,
    struct delivery_result *result)
{
	char *separator = message_mbox_separator(msg->sender);
	char *headers = message_delivery_prefix(msg->sender, recipient);
	char *prefix = xasprintf("%s%s", separator, headers);
	const char *trailer = message_ends_with_newline(msg) ? "\n" : "\n\n";
	struct stat st;
	int error = 0;

	if (fstat(fd, &st) < 0) {
		error = errno;
	} else if (message_write(msg, fd, prefix, 1) < 0 ||
	    write_all(fd, trailer, strlen(trailer)) < 0 || fsync(fd) < 0) {
		error = errno;
		if (ftruncate(fd, st.st_size) < 0)
			log_error("cannot truncate %s back to %lld bytes after a failed write: %s",
			    path, (long long)st.st_size, strerror(errno));
	}

	if (error == EDQUOT || error == EFBIG)
		result_set(result, EX_TEMPFAIL, "4.2.2", "mailbox full: %s: %s", path,
		    strerror(error));
	else if (error != 0)
		result_set(result, EX_TEMPFAIL, "4.2.0", "cannot write %s: %s", path, strerror(error));
	else
		result_set(result, EX_OK, "2.0.0", "delivered to mailbox %s", path);

	free(prefix);
	free(headers);
	free(separator);
}

void
mbox_deliver(const struct message *msg, const char *path, const char *recipient, int flags,
    struct delivery_result *result)
{
	char lock_path[PATH_MAX];
	int fd;

	if ((size_t)snprintf(lock_path, sizeof lock_path, "%s.lock", path) >= sizeof lock_path) {
		result_set(result, EX_CANTCREAT, "5.2.0", "mailbox path too long: %s", path);
		return;
	}
	if ((flags & MBOX_DOTLOCK) && dotlock_acquire(lock_path, result) < 0)
		return;

	fd = mbox_open(path, flags, result);
	if (fd >= 0) {
		if (fcntl_lock_acquire(fd, path, result) == 0)
			mbox_append(msg, fd, path, recipient, result);
		close(fd);
	}

	if ((flags & MBOX_DOTLOCK) && unlink(lock_path) < 0)
		log_warn("cannot remove lock file %s: %s", lock_path, strerror(errno));
}
