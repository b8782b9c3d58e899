/*
 * Maildir delivery: write into tmp/, fsync, rename into new/, fsync new/
 * (the procedure of the Maildir specification, file names as Dovecot
 * writes them so that its size field saves a stat). A large batch of
 * files shares each barrier: one syncfs for all the files, then one for
 * all the renames. A mailbox worker with batch after batch lets one
 * syncfs serve as the first barrier of a batch and the second of the one
 * before (maildir_barrier).
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

/* Batches with a file larger than this sync file by file. */
#define MAILDIR_SYNCFS_MAX (256 * 1024)

/* Batches with fewer files sync file by file too: syncfs writes back
 * everything dirty on the file system, queued's spool included, and for
 * a few files that takes longer than an fsync of each file and folder. */
#define MAILDIR_SYNCFS_MIN_FILES 32

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

/* The directory a delivery goes to: ROOT, or ROOT/.FOLDER. */
static int
maildir_folder_path(char *dir, size_t size, const char *root, const char *folder)
{
	if (folder == NULL) {
		strlcpy_x(dir, root, size);
		return 0;
	}
	if ((size_t)snprintf(dir, size, "%s/.%s", root, folder) >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int
maildir_write(const struct message *msg, const char *root, const char *folder,
    const char *recipient, struct maildir_file *file, struct delivery_result *result)
{
	char host[512], base[PATH_MAX];
	struct timeval tv;
	struct stat st;
	char *prefix;
	int fd;

	file->fd = -1;
	file->renamed = 0;
	strlcpy_x(file->folder, folder != NULL ? folder : "", sizeof file->folder);
	if (maildir_folder_path(file->dir, sizeof file->dir, root, folder) < 0) {
		maildir_failure(result, "path too long:", root, ENAMETOOLONG);
		return -1;
	}

	/* A folder lives inside a complete Maildir, so the inbox comes first. */
	if (folder != NULL && maildir_create(root) < 0) {
		maildir_failure(result, "cannot create maildir", root, errno);
		return -1;
	}
	file->created = maildir_create(file->dir);
	if (file->created < 0) {
		maildir_failure(result, "cannot create maildir", file->dir, errno);
		return -1;
	}
	if (folder != NULL && file->created)
		maildir_folder_setup(root, folder, file->dir);

	gettimeofday(&tv, NULL);
	maildir_host_name(host, sizeof host);
	snprintf(base, sizeof base, "%lld.M%06ldP%ldQ%u.%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), ++maildir_delivery_count, host);
	if ((size_t)snprintf(file->tmp_path, sizeof file->tmp_path, "%s/tmp/%s", file->dir,
	    base) >= sizeof file->tmp_path) {
		maildir_failure(result, "path too long:", file->dir, ENAMETOOLONG);
		return -1;
	}

	fd = open(file->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		maildir_failure(result, "cannot create", file->tmp_path, errno);
		return -1;
	}
	prefix = message_delivery_prefix(msg->sender, recipient);
	if (message_write(msg, fd, prefix, 0) < 0 || fstat(fd, &st) < 0) {
		int error = errno;

		free(prefix);
		close(fd);
		unlink(file->tmp_path);
		maildir_failure(result, "cannot write", file->tmp_path, error);
		return -1;
	}
	free(prefix);

	/* S= is the final file size, so readers like Dovecot need no stat. */
	if ((size_t)snprintf(file->new_path, sizeof file->new_path, "%s/new/%s,S=%lld", file->dir,
	    base, (long long)st.st_size) >= sizeof file->new_path) {
		close(fd);
		unlink(file->tmp_path);
		maildir_failure(result, "path too long:", file->dir, ENAMETOOLONG);
		return -1;
	}
	file->fd = fd;
	file->size = st.st_size;
	file->dev = st.st_dev;
	return 0;
}

/* Drop FILE from the batch with RESULT set to the failure. */
static void
maildir_abandon(struct maildir_file *file, struct delivery_result *result, const char *what,
    const char *path, int error)
{
	if (file->fd >= 0)
		close(file->fd);
	file->fd = -1;
	unlink(file->tmp_path);
	maildir_failure(result, what, path, error);
}

/* fsync the parent of DIR, whose entry for DIR is new. */
static int
maildir_fsync_parent(const char *dir)
{
	char parent[PATH_MAX];
	char *slash;

	strlcpy_x(parent, dir, sizeof parent);
	slash = strrchr(parent, '/');
	if (slash == NULL)
		return fsync_directory(".");
	if (slash == parent)
		slash++;
	*slash = '\0';
	return fsync_directory(parent);
}

/* A batch may span file systems (homes on several mounts), so each
 * barrier is one syncfs per file system. */
struct synced_devices {
	dev_t devices[16];
	size_t count;
};

/* syncfs the file system of FD unless SYNCED has it already. 0, or -1
 * (also when the batch spans more file systems than SYNCED holds). */
static int
syncfs_once(int fd, struct synced_devices *synced)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -1;
	for (size_t i = 0; i < synced->count; i++)
		if (synced->devices[i] == st.st_dev)
			return 0;
	if (synced->count == sizeof synced->devices / sizeof synced->devices[0] || syncfs(fd) < 0)
		return -1;
	synced->devices[synced->count++] = st.st_dev;
	return 0;
}

static int
syncfs_files(struct maildir_file *files, size_t count, struct synced_devices *synced)
{
	for (size_t i = 0; i < count; i++)
		if (files[i].fd >= 0 && syncfs_once(files[i].fd, synced) < 0)
			return -1;
	return 0;
}

/* syncfs the file systems of the renamed FILES that SYNCED lacks. */
static int
syncfs_folders(const struct maildir_file *files, size_t count, struct synced_devices *synced)
{
	for (size_t i = 0; i < count; i++) {
		int fd, rc, known = 0;

		if (!files[i].renamed)
			continue;
		for (size_t j = 0; j < synced->count && !known; j++)
			known = synced->devices[j] == files[i].dev;
		if (known)
			continue;
		fd = open(files[i].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		rc = syncfs_once(fd, synced);
		close(fd);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int
maildir_barrier(struct maildir_file *files, size_t count, const struct maildir_file *renamed,
    size_t nrenamed)
{
	struct synced_devices synced = { .count = 0 };

	if (syncfs_files(files, count, &synced) < 0)
		return -1;
	return syncfs_folders(renamed, nrenamed, &synced);
}

void
maildir_sync_files(struct maildir_file *files, struct delivery_result *results, size_t count,
    int use_syncfs)
{
	if (use_syncfs && maildir_barrier(files, count, NULL, 0) == 0)
		return;
	for (size_t i = 0; i < count; i++)
		if (files[i].fd >= 0 && fsync(files[i].fd) < 0)
			maildir_abandon(&files[i], &results[i], "cannot write", files[i].tmp_path, errno);
}

/* fsync each new/ that FILES were renamed into, and the folders just
 * created with their parents. */
static void
fsync_dirs(struct maildir_file *files, struct delivery_result *results, size_t count)
{
	char new_dir[PATH_MAX];

	for (size_t i = 0; i < count; i++) {
		int repeated = 0;

		if (!files[i].renamed)
			continue;
		/* One fsync per directory, however many files went into it. */
		for (size_t j = 0; j < i && !repeated; j++)
			repeated = files[j].renamed && strcmp(files[j].dir, files[i].dir) == 0;
		if (repeated)
			continue;
		snprintf(new_dir, sizeof new_dir, "%s/new", files[i].dir);
		if (fsync_directory(new_dir) < 0 || (files[i].created &&
		    (fsync_directory(files[i].dir) < 0 || maildir_fsync_parent(files[i].dir) < 0))) {
			int error = errno;

			/* Every file of this directory shares the failure. */
			for (size_t j = i; j < count; j++)
				if (files[j].renamed && strcmp(files[j].dir, files[i].dir) == 0)
					maildir_failure(&results[j], "cannot fsync", new_dir, error);
		}
	}
}

void
maildir_sync_dirs(struct maildir_file *files, struct delivery_result *results, size_t count,
    int use_syncfs)
{
	if (!use_syncfs || maildir_barrier(NULL, 0, files, count) < 0)
		fsync_dirs(files, results, count);
	for (size_t i = 0; i < count; i++)
		files[i].renamed = 0;
}

/*
 * Return whether a batch contains a file over MAILDIR_SYNCFS_MAX.
 * syncfs waits for everything dirty on the file system, which with large
 * messages includes those still being received and queued, so such a
 * batch syncs its own files instead.
 */
static int
has_large_file(const struct maildir_file *files, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (files[i].fd >= 0 && files[i].size > MAILDIR_SYNCFS_MAX)
			return 1;
	return 0;
}

int
maildir_syncfs_suits(const struct maildir_file *files, size_t count)
{
	return count >= MAILDIR_SYNCFS_MIN_FILES && !has_large_file(files, count);
}

void
maildir_set_results(const struct maildir_file *files, struct delivery_result *results,
    size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (files[i].fd >= 0 && files[i].folder[0] != '\0')
			result_set(&results[i], EX_OK, "2.0.0", "delivered to maildir folder %s",
			    files[i].folder);
		else if (files[i].fd >= 0)
			result_set(&results[i], EX_OK, "2.0.0", "delivered to maildir");
}

void
maildir_rename(struct maildir_file *files, struct delivery_result *results, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (files[i].fd < 0)
			continue;
		if (close(files[i].fd) < 0) {
			files[i].fd = -1;
			maildir_abandon(&files[i], &results[i], "cannot write", files[i].tmp_path, errno);
			continue;
		}
		files[i].fd = -1;
		if (rename(files[i].tmp_path, files[i].new_path) < 0) {
			int error = errno;

			unlink(files[i].tmp_path);
			maildir_failure(&results[i], "cannot rename into", files[i].dir, error);
			continue;
		}
		files[i].renamed = 1;
	}
}

void
maildir_commit(struct maildir_file *files, struct delivery_result *results, size_t count,
    int use_syncfs)
{
	use_syncfs = use_syncfs && maildir_syncfs_suits(files, count);

	maildir_set_results(files, results, count);
	maildir_sync_files(files, results, count, use_syncfs);
	maildir_rename(files, results, count);
	maildir_sync_dirs(files, results, count, use_syncfs);
}

void
maildir_deliver(const struct message *msg, const char *root, const char *folder,
    const char *recipient, struct delivery_result *result)
{
	struct maildir_file file;

	if (maildir_write(msg, root, folder, recipient, &file, result) < 0)
		return;
	maildir_commit(&file, result, 1, 0);
}
