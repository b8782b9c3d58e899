/* The spool directories, queue ids and start-up recovery. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envelope.h"
#include "log.h"
#include "privsep.h"
#include "spool.h"
#include "util.h"

#define ENVELOPE_FILE_MAX (16 * 1024 * 1024)

static const char *const spool_dirs[] = { "data", "tmp", "queue", "corrupt", "spare" };

static void
create_owned_dir(const char *path, uid_t uid, gid_t gid)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		fatal("create spool directory %s", path);
	if (privsep_is_root() && chown(path, uid, gid) < 0)
		fatal("chown spool directory %s", path);
	if (chmod(path, 0700) < 0)
		fatal("chmod spool directory %s", path);
}

void
spool_create(const char *path, uid_t uid, gid_t gid)
{
	char *parent = xstrdup(path);
	char *slash = strrchr(parent, '/');

	if (slash != NULL && slash != parent) {
		*slash = '\0';
		if (mkdir_p(parent, 0755) < 0)
			fatal("create %s", parent);
	}
	free(parent);

	create_owned_dir(path, uid, gid);
	for (size_t i = 0; i < sizeof spool_dirs / sizeof spool_dirs[0]; i++) {
		char *sub = xasprintf("%s/%s", path, spool_dirs[i]);

		create_owned_dir(sub, uid, gid);
		free(sub);
	}
}

int
spool_lock(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		fatal("open queue_directory %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		fatal("lock queue_directory %s (is another queued running on it?)", path);
	return fd;
}

static int
open_dir_at(int dir_fd, const char *name, const char *spool_path)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		fatal("open spool directory %s/%s", spool_path, name);
	return fd;
}

void
spool_open(struct spool *spool, const char *path)
{
	spool->path = xstrdup(path);
	spool->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (spool->dir_fd < 0)
		fatal("open queue_directory %s", path);
	spool->data_fd = open_dir_at(spool->dir_fd, "data", path);
	spool->tmp_fd = open_dir_at(spool->dir_fd, "tmp", path);
	spool->queue_fd = open_dir_at(spool->dir_fd, "queue", path);
	spool->corrupt_fd = open_dir_at(spool->dir_fd, "corrupt", path);
	spool->spare_fd = open_dir_at(spool->dir_fd, "spare", path);
	spool->spares = NULL;
}

void
spool_close(struct spool *spool)
{
	close(spool->data_fd);
	close(spool->tmp_fd);
	close(spool->queue_fd);
	close(spool->corrupt_fd);
	close(spool->spare_fd);
	spare_free(spool);
	close(spool->dir_fd);
	free(spool->path);
	spool->path = NULL;
}

void
spool_new_id(char id[QUEUE_ID_MAX])
{
	static unsigned counter;
	static long long last_usec;
	long long usec = now_usec();

	/* The counter distinguishes ids made within one microsecond, and
	 * O_EXCL in spool_create_data catches the rest (a clock set back). */
	if (usec != last_usec)
		counter = 0;
	last_usec = usec;
	snprintf(id, QUEUE_ID_MAX, "%013llX%03X", (unsigned long long)usec & 0xFFFFFFFFFFFFFULL,
	    counter++ & 0xFFF);
}

int
spool_id_valid(const char *id)
{
	size_t len = strlen(id);

	if (len < 12 || len > 20)
		return 0;
	for (const char *p = id; *p != '\0'; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')))
			return 0;
	return 1;
}

int
spool_create_data(struct spool *spool, char id[QUEUE_ID_MAX], int *client_fd, int *own_fd)
{
	for (int tries = 0; tries < 100; tries++) {
		spool_new_id(id);
		*client_fd = spare_open(spool, spool->data_fd, id, SPARE_FOR_DATA, O_RDWR);
		if (*client_fd < 0 && errno == EEXIST)
			continue;
		if (*client_fd < 0)
			*client_fd = openat(spool->data_fd, id, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
			    0600);
		if (*client_fd < 0 && errno == EEXIST)
			continue;
		if (*client_fd < 0)
			return -1;

		*own_fd = fcntl(*client_fd, F_DUPFD_CLOEXEC, 0);
		if (*own_fd < 0) {
			int saved = errno;

			close(*client_fd);
			unlinkat(spool->data_fd, id, 0);
			errno = saved;
			return -1;
		}
		return 0;
	}
	errno = EEXIST;
	return -1;
}

off_t
spool_data_written(int own_fd)
{
	return lseek(own_fd, 0, SEEK_CUR);
}

int
spool_cut(int fd, off_t size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -1;
	if (st.st_size > size && ftruncate(fd, size) < 0)
		return -1;
	return 0;
}

int
spool_open_data(const struct spool *spool, const char *id)
{
	return openat(spool->data_fd, id, O_RDONLY | O_CLOEXEC);
}

void
spool_remove_data(const struct spool *spool, const char *id)
{
	if (unlinkat(spool->data_fd, id, 0) < 0 && errno != ENOENT)
		log_warn("%s: remove data file: %s", id, strerror(errno));
}

/* Read a whole small file at DIR_FD/NAME into a new buffer. */
static char *
read_file_at(int dir_fd, const char *name, size_t *len)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	ssize_t n;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || st.st_size > ENVELOPE_FILE_MAX) {
		close(fd);
		errno = EFBIG;
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		errno = EIO;
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

/* A directory stream on a copy of DIR_FD, from its first entry (the
 * copy shares the file offset, so it is rewound). NULL on error. */
static DIR *
open_dir_stream(int dir_fd)
{
	int fd = dup(dir_fd);
	DIR *dir;

	if (fd < 0)
		return NULL;
	dir = fdopendir(fd);
	if (dir == NULL) {
		close(fd);
		return NULL;
	}
	rewinddir(dir);
	return dir;
}

static void
move_to_corrupt(struct spool *spool, const char *name, const char *why)
{
	log_error("%s: unreadable envelope (%s); moved to %s/corrupt", name, why, spool->path);
	if (renameat(spool->queue_fd, name, spool->corrupt_fd, name) < 0)
		log_error("%s: move to corrupt/: %s", name, strerror(errno));
}

/* Load queue/NAME; returns the envelope or NULL (already logged and moved). */
static struct envelope *
load_envelope(struct spool *spool, const char *name)
{
	struct envelope *env;
	const char *why;
	char *text;
	size_t len;
	struct stat st;

	text = read_file_at(spool->queue_fd, name, &len);
	if (text == NULL) {
		move_to_corrupt(spool, name, strerror(errno));
		return NULL;
	}
	env = envelope_parse(text, len, &why);
	free(text);
	if (env == NULL) {
		move_to_corrupt(spool, name, why);
		return NULL;
	}
	if (strcmp(env->id, name) != 0) {
		envelope_free(env);
		move_to_corrupt(spool, name, "id does not match the file name");
		return NULL;
	}
	if (fstatat(spool->data_fd, name, &st, 0) < 0) {
		envelope_free(env);
		move_to_corrupt(spool, name, "data file missing");
		return NULL;
	}
	return env;
}

/* Whether data/ID holds the SIZE bytes whose CRC-32 ENV records. */
static int
data_file_matches(const struct spool *spool, const struct envelope *env)
{
	char buf[65536];
	unsigned long crc = 0;
	off_t offset = 0;
	struct stat st;
	ssize_t n;
	int fd = openat(spool->data_fd, env->id, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || st.st_size != env->size) {
		close(fd);
		return 0;
	}
	while (offset < env->size && (n = pread(fd, buf, sizeof buf, offset)) > 0) {
		crc = envelope_crc(crc, buf, (size_t)n);
		offset += n;
	}
	close(fd);
	return offset == env->size && crc == env->data_crc;
}

/* Parse DIR_FD/NAME; NULL if it is missing or not a complete envelope. */
static struct envelope *
parse_envelope_at(int dir_fd, const char *name)
{
	struct envelope *env;
	const char *why;
	size_t len;
	char *text = read_file_at(dir_fd, name, &len);

	if (text == NULL)
		return NULL;
	env = envelope_parse(text, len, &why);
	free(text);
	return env;
}

/*
 * Decide the fate of tmp/NAME. A commit is acknowledged once its
 * envelope is complete in tmp/ (commit.h), so a tmp/ envelope whose
 * checksums hold may be a committed message whose rename into queue/
 * never reached the disk, or an update newer than queue/NAME. Either
 * way it replaces queue/NAME unless that copy has the same or a higher
 * seq. Anything else in tmp/ was never acknowledged. Returns the log
 * text for what was done.
 */
static const char *
recover_tmp_envelope(struct spool *spool, const char *name)
{
	struct envelope *tmp = parse_envelope_at(spool->tmp_fd, name), *queued;
	const char *outcome = NULL;

	if (tmp == NULL || !tmp->checksummed || strcmp(tmp->id, name) != 0)
		outcome = "removed unfinished envelope file";
	queued = outcome == NULL ? parse_envelope_at(spool->queue_fd, name) : NULL;
	if (outcome == NULL && queued != NULL && queued->seq >= tmp->seq)
		outcome = "removed envelope file older than the one in queue/";
	if (outcome == NULL && queued == NULL &&
	    (!tmp->have_data_crc || !data_file_matches(spool, tmp)))
		outcome = "removed envelope file whose data file is incomplete";

	if (outcome == NULL) {
		if (renameat(spool->tmp_fd, name, spool->queue_fd, name) == 0)
			outcome = queued != NULL ? "recovered envelope update from tmp/" :
			    "recovered committed envelope from tmp/";
		else
			outcome = "could not move the envelope from tmp/ to queue/";
	} else {
		unlinkat(spool->tmp_fd, name, 0);
	}
	envelope_free(tmp);
	envelope_free(queued);
	return outcome;
}

static void
recover_tmp(struct spool *spool)
{
	DIR *dir = open_dir_stream(spool->tmp_fd);
	struct dirent *de;

	if (dir == NULL)
		fatal("read spool directory %s/tmp", spool->path);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		log_info("%s: %s", de->d_name, recover_tmp_envelope(spool, de->d_name));
	}
	closedir(dir);
}

static void
remove_orphan_data(struct spool *spool)
{
	DIR *dir = open_dir_stream(spool->data_fd);
	struct dirent *de;
	struct stat st;

	if (dir == NULL)
		fatal("read spool directory %s/data", spool->path);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(spool->queue_fd, de->d_name, &st, 0) == 0)
			continue;
		log_info("%s: removed uncommitted data file", de->d_name);
		unlinkat(spool->data_fd, de->d_name, 0);
	}
	closedir(dir);
}

static int
compare_arrival(const void *a, const void *b)
{
	const struct envelope *left = *(struct envelope *const *)a;
	const struct envelope *right = *(struct envelope *const *)b;

	return (left->arrival_usec > right->arrival_usec) - (left->arrival_usec < right->arrival_usec);
}

size_t
spool_recover(struct spool *spool, void (*load)(struct envelope *env, void *arg), void *arg)
{
	struct envelope **envs = NULL;
	size_t count = 0, capacity = 0;
	struct dirent *de;
	DIR *dir;

	recover_tmp(spool);
	remove_orphan_data(spool);

	dir = open_dir_stream(spool->queue_fd);
	if (dir == NULL)
		fatal("read spool directory %s/queue", spool->path);
	while ((de = readdir(dir)) != NULL) {
		struct envelope *env;

		if (de->d_name[0] == '.')
			continue;
		env = load_envelope(spool, de->d_name);
		if (env == NULL)
			continue;
		if (count == capacity) {
			capacity = capacity ? capacity * 2 : 256;
			envs = xrealloc(envs, capacity * sizeof *envs);
		}
		envs[count++] = env;
	}
	closedir(dir);

	/* Oldest first, so delivery and the queue listing follow arrival. */
	if (count > 0)
		qsort(envs, count, sizeof *envs, compare_arrival);
	for (size_t i = 0; i < count; i++)
		load(envs[i], arg);
	free(envs);
	return count;
}
