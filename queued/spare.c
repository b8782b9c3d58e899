/*
 * Spare files: the files of removed messages, kept in spare/ and renamed
 * back into use for new messages (see spool.h for why). No spare file
 * contains old text. A small file is zeroed in place when it becomes a
 * spare and keeps its size and blocks (scrub_file_at). A large one is
 * emptied, and so is every spare at start-up.
 *
 * The pool is a ring of file names ("1", "2", ...) under a mutex: the
 * event loop takes files for new data files, the commit thread takes
 * them for envelopes and returns the files of removed messages.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
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

/* Files up to this size keep their blocks as spares (scrub_file_at):
 * with queue_spare_files = 1000, at most about 128 MB of disk. */
#define SPARE_KEEP_BYTES	(128 * 1024)

/* Files up to this size are zeroed by writing zeros over their text,
 * larger ones with FALLOC_FL_ZERO_RANGE (scrub_file_at). The bound is an
 * estimate: only files of one and two blocks were measured. */
#define SPARE_WRITE_ZEROS_BYTES	(16 * 1024)

/* Two rings, so that envelopes reuse files of one block and data files
 * reuse larger ones. A file reused for the other kind would free or
 * allocate blocks when it is cut to its new length or written. */
enum spare_ring {
	RING_SMALL,	/* up to one block */
	RING_LARGE,
};

struct spare_ring_names {
	unsigned *names;
	size_t head, count;
};

struct spare_pool {
	pthread_mutex_t lock;
	struct spare_ring_names rings[2];	/* file names in spare/ */
	size_t capacity;	/* queue_spare_files, for both rings */
	size_t reserved;	/* files on their way in (spare_retire) */
	unsigned next_name;
};

static void
spare_name(char *out, size_t size, unsigned name)
{
	snprintf(out, size, "%u", name);
}

static size_t
pool_count(const struct spare_pool *pool)
{
	return pool->rings[RING_SMALL].count + pool->rings[RING_LARGE].count;
}

/* Append NAME to RING. The caller holds the lock and has checked that
 * the pool has room. */
static void
ring_append(struct spare_pool *pool, enum spare_ring ring, unsigned name)
{
	struct spare_ring_names *r = &pool->rings[ring];

	r->names[(r->head + r->count) % pool->capacity] = name;
	r->count++;
}

/* Take the oldest name of RING, or else of the other ring, noting which
 * in *FROM; 0 when the pool is empty. */
static unsigned
pool_pop(struct spare_pool *pool, enum spare_ring ring, enum spare_ring *from)
{
	unsigned name = 0;

	pthread_mutex_lock(&pool->lock);
	if (pool->rings[ring].count == 0)
		ring = ring == RING_SMALL ? RING_LARGE : RING_SMALL;
	if (pool->rings[ring].count > 0) {
		struct spare_ring_names *r = &pool->rings[ring];

		name = r->names[r->head];
		r->head = (r->head + 1) % pool->capacity;
		r->count--;
		*from = ring;
	}
	pthread_mutex_unlock(&pool->lock);
	return name;
}

/* Put NAME back into RING; 0 if the pool filled up meanwhile. */
static int
pool_push(struct spare_pool *pool, enum spare_ring ring, unsigned name)
{
	int pushed = 0;

	pthread_mutex_lock(&pool->lock);
	if (pool_count(pool) + pool->reserved < pool->capacity) {
		ring_append(pool, ring, name);
		pushed = 1;
	}
	pthread_mutex_unlock(&pool->lock);
	return pushed;
}

/* Reserve a slot and a new name for a file on its way into the pool;
 * 0 when the pool is full, unless EVEN_WHEN_FULL (a held file, which
 * spare_release removes if the pool is still full then). */
static unsigned
pool_reserve(struct spare_pool *pool, int even_when_full)
{
	unsigned name = 0;

	pthread_mutex_lock(&pool->lock);
	if (even_when_full || pool_count(pool) + pool->reserved < pool->capacity) {
		name = pool->next_name++;
		if (pool->next_name == 0)
			pool->next_name = 1;
		pool->reserved++;
	}
	pthread_mutex_unlock(&pool->lock);
	return name;
}

/* Give back the slot of the held file NAME, keeping it in RING if the
 * pool has room. Returns 1 if it was kept. */
static int
pool_release_held(struct spare_pool *pool, unsigned name, enum spare_ring ring)
{
	int kept = 0;

	pthread_mutex_lock(&pool->lock);
	pool->reserved--;
	if (pool_count(pool) < pool->capacity) {
		ring_append(pool, ring, name);
		kept = 1;
	}
	pthread_mutex_unlock(&pool->lock);
	return kept;
}

/* Give back a reserved slot, with NAME in RING unless NAME is 0. */
static void
pool_release_slot(struct spare_pool *pool, unsigned name, enum spare_ring ring)
{
	pthread_mutex_lock(&pool->lock);
	pool->reserved--;
	if (name != 0)
		ring_append(pool, ring, name);
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

/* Overwrite the first SIZE bytes of FD with zeros. 0, or -1 with errno. */
static int
write_zeros(int fd, off_t size)
{
	static const char zeros[SPARE_WRITE_ZEROS_BYTES];
	off_t offset = 0;

	while (offset < size) {
		off_t left = size - offset;
		size_t chunk = left < (off_t)sizeof zeros ? (size_t)left : sizeof zeros;
		ssize_t n = pwrite(fd, zeros, chunk, offset);

		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		offset += n;
	}
	return 0;
}

/* Zero the SIZE bytes of FD, keeping its blocks of BLOCK bytes. 0, or -1 with errno. */
static int
zero_in_place(int fd, off_t size, off_t block)
{
	if (size <= SPARE_WRITE_ZEROS_BYTES)
		return write_zeros(fd, size);
	return fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0,
	    (size + block - 1) / block * block);
}

/*
 * Remove the old text of DIR_FD/NAME. A file of up to SPARE_KEEP_BYTES
 * is zeroed in place and keeps its blocks and size, because freeing
 * blocks costs a discard request each on a file system mounted with
 * discard (0.17 ms per file against 0.02 on the benchmark machine).
 * Up to SPARE_WRITE_ZEROS_BYTES, zeros are written over the text, so the
 * blocks stay written extents. FALLOC_FL_ZERO_RANGE makes them
 * unwritten, and ext4 converts them back in a kernel worker after the
 * next write, which every syncfs waits for (writing zeros gave about 6%
 * more at 10 benchmark sessions). Larger files get FALLOC_FL_ZERO_RANGE,
 * which writes nothing. The next user of the file writes from offset 0
 * and cuts it to its length. Files over SPARE_KEEP_BYTES, and files that
 * cannot be zeroed, are emptied. Returns the ring the file belongs in,
 * or -1 with errno set.
 */
static int
scrub_file_at(int dir_fd, const char *name)
{
	int fd = openat(dir_fd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	off_t block;
	int ring = RING_SMALL;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		goto fail;

	block = st.st_blksize > 0 ? st.st_blksize : 4096;
	if (st.st_size > 0 && st.st_size <= SPARE_KEEP_BYTES &&
	    zero_in_place(fd, st.st_size, block) == 0) {
		if (st.st_size > block)
			ring = RING_LARGE;
	} else if (st.st_size > 0 && ftruncate(fd, 0) < 0) {
		goto fail;
	}
	close(fd);
	return ring;

fail:
	close(fd);
	return -1;
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
	pool->capacity = capacity > 0 ? capacity : 1;
	for (int ring = RING_SMALL; ring <= RING_LARGE; ring++)
		pool->rings[ring].names = xcalloc(pool->capacity, sizeof (unsigned));
	pool->capacity = capacity;
	pool->next_name = 1;
	spool->spares = pool;

	/* Spares left by the previous run are emptied: the run may have
	 * ended before a file was scrubbed. */
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
		    pool_count(pool) >= pool->capacity || empty_file_at(spool->spare_fd, de->d_name) < 0) {
			unlinkat(spool->spare_fd, de->d_name, 0);
			continue;
		}
		ring_append(pool, RING_SMALL, (unsigned)name);
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
	free(spool->spares->rings[RING_SMALL].names);
	free(spool->spares->rings[RING_LARGE].names);
	free(spool->spares);
	spool->spares = NULL;
}

int
spare_open(struct spool *spool, int dir_fd, const char *name, enum spare_use use, int flags)
{
	int fd;

	if (spare_take(spool, dir_fd, name, use) < 0)
		return -1;

	/* Not truncated: a spare holds only zeros, and a truncation to
	 * zero would free its blocks and make ext4 start writeback at the
	 * writer's close(), which for data files is smtpd's event loop. */
	fd = openat(dir_fd, name, flags | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		unlinkat(dir_fd, name, 0);
	return fd;
}

int
spare_take(struct spool *spool, int dir_fd, const char *name, enum spare_use use)
{
	enum spare_ring want = use == SPARE_FOR_ENVELOPE ? RING_SMALL : RING_LARGE;
	enum spare_ring from = want;
	char spare[16];
	unsigned spare_id;

	while ((spare_id = pool_pop(spool->spares, want, &from)) != 0) {
		spare_name(spare, sizeof spare, spare_id);
		if (renameat2(spool->spare_fd, spare, dir_fd, name, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST) {
			if (!pool_push(spool->spares, from, spare_id))
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

/* Remove DIR_FD/NAME; 0, or -1 with errno set (ENOENT when there was
 * no NAME). */
static int
remove_at(int dir_fd, const char *name)
{
	return unlinkat(dir_fd, name, 0);
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
	unsigned slot = pool_reserve(spool->spares, 0);
	int ring;

	if (slot == 0)
		return remove_at(dir_fd, name);

	spare_name(spare, sizeof spare, slot);
	if (renameat(dir_fd, name, spool->spare_fd, spare) < 0) {
		int saved = errno;

		pool_release_slot(spool->spares, 0, RING_SMALL);
		if (saved == ENOENT) {
			errno = saved;
			return -1;
		}
		return remove_at(dir_fd, name);
	}

	/* Scrubbed once it has left DIR_FD, so no client gets old text
	 * with it. */
	ring = scrub_file_at(spool->spare_fd, spare);
	if (ring < 0) {
		unlinkat(spool->spare_fd, spare, 0);
		pool_release_slot(spool->spares, 0, RING_SMALL);
		return 0;
	}
	pool_release_slot(spool->spares, slot, (enum spare_ring)ring);
	return 0;
}

unsigned
spare_hold(struct spool *spool, int dir_fd, const char *name)
{
	char spare[16];
	unsigned slot = pool_reserve(spool->spares, 1);

	spare_name(spare, sizeof spare, slot);
	if (renameat(dir_fd, name, spool->spare_fd, spare) < 0) {
		int saved = errno;

		pool_release_slot(spool->spares, 0, RING_SMALL);
		errno = saved;
		return 0;
	}
	return slot;
}

void
spare_release(struct spool *spool, unsigned slot)
{
	char spare[16];
	int ring;

	if (slot == 0)
		return;
	spare_name(spare, sizeof spare, slot);
	ring = scrub_file_at(spool->spare_fd, spare);
	if (ring < 0 || !pool_release_held(spool->spares, slot, (enum spare_ring)ring))
		unlinkat(spool->spare_fd, spare, 0);
	if (ring < 0)
		pool_release_slot(spool->spares, 0, RING_SMALL);
}
