/*
 * Maildir delivery: write into tmp/, fsync, rename into new/, fsync new/
 * (the procedure of the Maildir specification, file names as Dovecot
 * writes them so that its size field saves a stat).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include "deliverd.h"
#include "util.h"

/* Deliveries made by this process, the Q part of the unique name. */
static unsigned maildir_delivery_count;

/* The host name with '/', ':' and ',' written as octal escapes (\057,
 * \072, \054), because those characters separate parts of the name. */
static void
maildir_host_name(char *out, size_t outsize)
{
	char host[256];
	size_t n = 0;

	if (gethostname(host, sizeof host) < 0)
		strlcpy_x(host, "localhost", sizeof host);
	host[sizeof host - 1] = '\0';

	for (const char *p = host; *p != '\0' && n + 5 < outsize; p++) {
		if (*p == '/' || *p == ':' || *p == ',')
			n += (size_t)snprintf(out + n, outsize - n, "\\%03o", (unsigned char)*p);
		else
			out[n++] = *p;
	}
	out[n] = '\0';
}

/* Create DIR and its tmp, new and cur subdirectories (mode 0700) where
 * they are missing. Returns 1 if anything was created, 0 if not, -1. */
static int
maildir_create(const char *dir)
{
	static const char *const subdirs[] = { "tmp", "new", "cur" };
	char path[PATH_MAX];
	struct stat st;
	int created = 0;

	if (stat(dir, &st) < 0) {
		if (errno != ENOENT || mkdir_p(dir, 0700) < 0)
			return -1;
		created = 1;
	}
	for (size_t i = 0; i < 3; i++) {
		if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, subdirs[i]) >= sizeof path) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (mkdir(path, 0700) == 0)
			created = 1;
		else if (errno != EEXIST)
			return -1;
	}
	return created;
}

static void
maildir_failure(struct delivery_result *result, const char *what, const char *path, int error)
{
	if (error == EDQUOT)
		result_set(result, EX_TEMPFAIL, "4.2.2", "mailbox full: %s %s: %s", what, path,
		    strerror(error));
	else if (error == ENOSPC)
		result_set(result, EX_TEMPFAIL, "4.3.1", "%s %s: %s", what, path, strerror(error));
	else
		result_set(result, EX_TEMPFAIL, "4.2.0", "%s %s: %s", what, path, strerror(error));
}

void
maildir_deliver(const struct message *msg, const char *root, const char *folder,
    const char *recipient, struct delivery_result *result)
{
	char dir[PATH_MAX], host[512], base[PATH_MAX], tmp_path[PATH_MAX], new_path[PATH_MAX];
	char new_dir[PATH_MAX];
	struct timeval tv;
	struct stat st;
	char *prefix;
	int fd, created;

	if (folder != NULL && (size_t)snprintf(dir, sizeof dir, "%s/.%s", root, folder) >= sizeof dir) {
		maildir_failure(result, "path too long:", root, ENAMETOOLONG);
		return;
	}
	if (folder == NULL)
		strlcpy_x(dir, root, sizeof dir);

	created = maildir_create(dir);
	if (created < 0) {
		maildir_failure(result, "cannot create maildir", dir, errno);
		return;
	}

	gettimeofday(&tv, NULL);
	maildir_host_name(host, sizeof host);
	snprintf(base, sizeof base, "%lld.M%06ldP%ldQ%u.%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), ++maildir_delivery_count, host);
	if ((size_t)snprintf(tmp_path, sizeof tmp_path, "%s/tmp/%s", dir, base) >= sizeof tmp_path) {
		maildir_failure(result, "path too long:", dir, ENAMETOOLONG);
		return;
	}

	fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		maildir_failure(result, "cannot create", tmp_path, errno);
		return;
	}

	prefix = message_delivery_prefix(msg->sender, recipient);
	if (message_write(msg, fd, prefix, 0) < 0 || fstat(fd, &st) < 0 || fsync(fd) < 0) {
		int error = errno;

		free(prefix);
		close(fd);
		unlink(tmp_path);
		maildir_failure(result, "cannot write", tmp_path, error);
		return;
	}
	free(prefix);
	if (close(fd) < 0) {
		int error = errno;

		unlink(tmp_path);
		maildir_failure(result, "cannot write", tmp_path, error);
		return;
	}

	/* S= is the final file size, so readers like Dovecot need no stat. */
	if ((size_t)snprintf(new_path, sizeof new_path, "%s/new/%s,S=%lld", dir, base,
	    (long long)st.st_size) >= sizeof new_path ||
	    (size_t)snprintf(new_dir, sizeof new_dir, "%s/new", dir) >= sizeof new_dir) {
		unlink(tmp_path);
		maildir_failure(result, "path too long:", dir, ENAMETOOLONG);
		return;
	}
	if (rename(tmp_path, new_path) < 0) {
		int error = errno;

		unlink(tmp_path);
		maildir_failure(result, "cannot rename into", new_dir, error);
		return;
	}
	if (fsync_directory(new_dir) < 0 || (created && fsync_directory(dir) < 0)) {
		maildir_failure(result, "cannot fsync", new_dir, errno);
		return;
	}
	result_set(result, EX_OK, "2.0.0", "delivered to maildir");
}
