/*
 * Spare files: the files of removed messages, kept in spare/ and renamed
 * back into use for new messages (see spool.h for why). Every spare
 * file is empty: emptied when it becomes a spare, and at start-up.
 *
 * The pool is a ring of file names ("1", "2", ...) under a mutex: the
 * event loop takes files for new data files, the commit thread takes
 * them for envelopes and returns the files of removed messages.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"
#include "util.h"

struct spare_pool {
	pthread_mutex_t lock;
	unsigned *names;	/* ring of file names in spare/ */
	size_t capacity;	/* queue_spare_files */
	size_t head, count;
	size_t reserved;	/* files on their way in (spare_retire) */
	unsigned next_name;
};

static void
spare_name(char *out, size_t size, unsigned name)
{
	snprintf(out, size, "%u", name);
}

/* Take the oldest spare name; 0 when the pool is empty. */
static unsigned
pool_pop(struct spare_pool *pool)
{
	unsigned name = 0;

	pthread_mutex_lock(&pool->lock);
	if (pool->count > 0) {
		name = pool->names[pool->head];
		pool->head = (pool->head + 1) % pool->capacity;
		pool->count--;
	}
	pthread_mutex_unlock(&pool->lock);
	return name;
}

/* Put NAME back; 0 if the pool filled up meanwhile. */
static int
pool_push(struct spare_pool *pool, unsigned name)
{
	int pushed = 0;

	pthread_mutex_lock(&pool->lock);
	if (pool->count + pool->reserved < pool->capacity) {
		pool->names[(pool->head + pool->count) % pool->capacity] = name;
		pool->count++;
		pushed = 1;
	}
	pthread_mutex_unlock(&pool->lock);
	return pushed;
}

/* Reserve a slot and a new name for a retired file; 0 when full. */
static unsigned
pool_reserve(struct spare_pool *pool)
{
	unsigned name = 0;

	pthread_mutex_lock(&pool->lock);
	if (pool->count + pool->reserved < pool->capacity) {
		name = pool->next_name++;
		if (pool->next_name == 0)
			pool->next_name = 1;
		pool->reserved++;
	}
	pthread_mutex_unlock(&pool->lock);
	return name;
}

/* Give back a reserved slot, with NAME in the pool unless it is 0. */
static void
pool_release_slot(struct spare_pool *pool, unsigned name)
{
	pthread_mutex_lock(&pool->lock);
	pool->reserved--;
	if (name != 0) {
		pool->names[(pool->head + pool->count) % pool->capacity] = name;
		pool->count++;
	}
	pthread_mutex_unlock(&pool->lock);
}

/* Empty DIR_FD/NAME, so no old text stays in spare/. */
static int
empty_file_at(int dir_fd, const char *name)
{
	int fd = openat(dir_fd, name, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

void
spare_load(struct spool *spool, size_t capacity)
{
	struct spare_pool *pool = xcalloc(1, sizeof *pool);
	struct dirent *de;
	DIR *dir;
	int fd;

	/* Another process opening a file while open_nowhere holds its
	 * lease makes the kernel send SIGIO, which would end queued. */
	signal(SIGIO, SIG_IGN);

	pthread_mutex_init(&pool->lock, NULL);
	pool->capacity = capacity;
	pool->names = xcalloc(capacity > 0 ? capacity : 1, sizeof *pool->names);
	pool->next_name = 1;
	spool->spares = pool;

	fd = dup(spool->spare_fd);
	if (fd < 0 || (dir = fdopendir(fd)) == NULL)
		fatal("read spool directory %s/spare", spool->path);
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL) {
		char *end;
		unsigned long name;

		if (de->d_name[0] == '.')
			continue;
		errno = 0;
		name = strtoul(de->d_name, &end, 10);
		if (errno != 0 || *end != '\0' || name == 0 || name > 0xFFFFFFFFUL ||
		    pool->count >= pool->capacity || empty_file_at(spool->spare_fd, de->d_name) < 0) {
			unlinkat(spool->spare_fd, de->d_name, 0);
			continue;
		}
		pool->names[pool->count++] = (unsigned)name;
		if ((unsigned)name >= pool->next_name)
			pool->next_name = (unsigned)name + 1;
	}
	closedir(dir);
}

void
spare_free(struct spool *spool)
{
	if (spool->spares == NULL)
		return;
	pthread_mutex_destroy(&spool->spares->lock);
	free(spool->spares->names);
	free(spool->spares);
	spool->spares = NULL;
}

int
spare_open(struct spool *spool, int dir_fd, const char *name)
{
	struct stat st;
	int fd;

	if (spare_take(spool, dir_fd, name) < 0)
		return -1;

	/* Spare files are empty, so there is nothing to truncate: a
	 * truncation would make ext4 start writeback at the writer's
	 * close(), which for data files is smtpd's event loop. */
	fd = openat(dir_fd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0 && ftruncate(fd, 0) < 0) {
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		unlinkat(dir_fd, name, 0);
	return fd;
}

int
spare_take(struct spool *spool, int dir_fd, const char *name)
{
	char spare[16];
	unsigned spare_id;

	while ((spare_id = pool_pop(spool->spares)) != 0) {
		spare_name(spare, sizeof spare, spare_id);
		if (renameat2(spool->spare_fd, spare, dir_fd, name, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST) {
			if (!pool_push(spool->spares, spare_id))
				unlinkat(spool->spare_fd, spare, 0);
			errno = EEXIST;
			return -1;
		}
		/* Gone (an admin cleaned spare/) or unusable: try the next. */
		unlinkat(spool->spare_fd, spare, 0);
	}
	errno = ENOENT;
	return -1;
}

/* Remove DIR_FD/NAME; 0 if it is gone, -1 with errno set. */
static int
remove_at(int dir_fd, const char *name)
{
	if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
		return -1;
	return 0;
}

/* Whether DIR_FD/NAME is open nowhere: a write lease is granted only
 * when no other open file refers to the file. */
static int
open_nowhere(int dir_fd, const char *name)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int granted;

	if (fd < 0)
		return 0;
	granted = fcntl(fd, F_SETLEASE, F_WRLCK) == 0;
	if (granted)
		fcntl(fd, F_SETLEASE, F_UNLCK);
	close(fd);
	return granted;
}

int
spare_retire_closed(struct spool *spool, int dir_fd, const char *name)
{
	/* A client that kept its descriptor could write into the message
	 * that reuses the file, so such a file is removed instead. No other
	 * process can open it anew: the spool directories are the queue
	 * user's, mode 0700. */
	if (!open_nowhere(dir_fd, name))
		return remove_at(dir_fd, name);
	return spare_retire(spool, dir_fd, name);
}

int
spare_retire(struct spool *spool, int dir_fd, const char *name)
{
	char spare[16];
	unsigned slot = pool_reserve(spool->spares);

	if (slot == 0)
		return remove_at(dir_fd, name);

	spare_name(spare, sizeof spare, slot);
	if (renameat(dir_fd, name, spool->spare_fd, spare) < 0) {
		pool_release_slot(spool->spares, 0);
		return errno == ENOENT ? 0 : remove_at(dir_fd, name);
	}

	/* Emptied once it has left DIR_FD, so a spare contains neither old
	 * text nor disk space, and no client gets old text with it. */
	if (empty_file_at(spool->spare_fd, spare) < 0) {
		unlinkat(spool->spare_fd, spare, 0);
		pool_release_slot(spool->spares, 0);
		return 0;
	}
	pool_release_slot(spool->spares, slot);
	return 0;
}
