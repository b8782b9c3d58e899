/*
 * The spool: queue ids and the files of each message.
 *
 * Layout under queue_directory (every directory mode 0700, owned by
 * queue_user):
 *   data/ID           the message as the client wrote it, created at NEW
 *   tmp/ID            an envelope being written, renamed into queue/ or
 *                     deferred/ once it is on disk
 *   queue/ID          the committed envelope of a message not yet
 *                     deferred (see envelope.h)
 *   deferred/ID       the envelope of a message that has been deferred
 *   deferred-data/ID  its data file
 *   corrupt/ID        envelopes that could not be read, kept for the admin
 *   spare/N           files of removed messages, waiting to be reused
 *
 * A message is committed once its complete envelope is on disk in
 * queue/, deferred/ or tmp/. The commit acknowledges after one barrier
 * that covers the data file and the envelope in tmp/, then renames the
 * envelope into place without another (commit.h). Each envelope carries
 * a CRC-32 of itself, a CRC-32 of its data file (or, for a large one,
 * the mark that it was synced first) and a seq that every update
 * raises. Recovery at start-up follows from that. An envelope in tmp/
 * whose checksums match is moved into place unless a copy there is as
 * new. Anything else in tmp/, and data files without an envelope, were
 * never acknowledged and are removed. Every envelope in queue/ and
 * deferred/ is then loaded and delivered.
 *
 * Deferred messages: the envelope update that ends an attempt with
 * recipients left to try moves the message to deferred/ and
 * deferred-data/, where it stays until it is removed. Each new message
 * is created, looked up and removed several times in its directories,
 * and a lookup costs more in a large directory (more index and name
 * blocks to read, more names compared in ext4_search_dir). Kept apart,
 * messages waiting for a retry do not slow down new ones. The move is
 * ordered so that recovery finds exactly one copy after a crash at any
 * point (commit.h). The in-memory envelope records which pair of
 * directories contains its files (in_deferred in envelope.h).
 *
 * Spare files: a file system that allocates an inode for every new file
 * and frees it again soon after pays twice per file. ext4 without a
 * journal pays more as the rate grows, because it skips inodes freed
 * within the last minute when it looks for a free one. Freeing blocks
 * costs too (a discard request each, where the file system is mounted
 * with discard).
 * So a removed envelope, and a removed data file that no process still
 * has open (a client could have kept its descriptor), is moved to
 * spare/ (up to queue_spare_files of them), and new data files and
 * envelopes are renamed out of spare/ before any file is created. A
 * file's content is zeroed when it becomes a spare. A small file keeps its
 * size and blocks, so that reusing it frees and allocates nothing, but
 * a large one is emptied. Whoever reuses a spare writes from offset 0
 * and cuts the file to the length written. Spares left by a previous
 * run are emptied at start-up. A spare file has no meaning for
 * recovery: it is never a message.
 */
#ifndef ESTAFETA_QUEUED_SPOOL_H
#define ESTAFETA_QUEUED_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

#include "queue_proto.h"

struct envelope;

struct spool {
	char *path;
	int dir_fd;		/* queue_directory itself */
	int data_fd;		/* data/ */
	int tmp_fd;		/* tmp/ */
	int queue_fd;		/* queue/ */
	int deferred_fd;	/* deferred/ */
	int deferred_data_fd;	/* deferred-data/ */
	int corrupt_fd;		/* corrupt/ */
	int spare_fd;		/* spare/ */
	struct spare_pool *spares;
};

/* Create queue_directory and its subdirectories (mode 0700) owned by
 * UID/GID when running as root. Exits on failure. */
void spool_create(const char *path, uid_t uid, gid_t gid);

/* Lock queue_directory for this process: two schedulers on one spool
 * would deliver every message twice and remove each other's files.
 * Returns the descriptor that holds the lock; exits if it is taken. */
int spool_lock(const char *path);

/* Open the directories. Exits on failure. */
void spool_open(struct spool *spool, const char *path);
void spool_close(struct spool *spool);

/*
 * Create data/ID for a new message with a fresh queue id. Stores the
 * id, a descriptor for the client and a duplicate of it for queued
 * (used for fsync, size checks and the cut to length). The two share
 * one file offset, so queued can tell how much the client wrote even
 * when a reused file was longer (spool_data_written). A reused file
 * contains only zeros. Returns 0, or -1 with errno set.
 */
int spool_create_data(struct spool *spool, char id[QUEUE_ID_MAX], int *client_fd, int *own_fd);

/* Return the number of bytes the client wrote through its descriptor of
 * data/ID (OWN_FD from spool_create_data), or -1 with errno set. */
off_t spool_data_written(int own_fd);

/*
 * Replace data/ID, which the client of OWN_FD may still be able to write
 * (through a descriptor, a shared mapping or pages pinned by io_uring),
 * by a copy of its first SIZE bytes in a file that no client has seen.
 * The old file leaves the spool and is never reused, so a client cannot
 * change a message after its COMMIT. Returns the copy's descriptor, or
 * -1 with errno set (EIO: the file is shorter than SIZE). OWN_FD is
 * closed in every case.
 */
int spool_take_data(const struct spool *spool, const char *id, int own_fd, off_t size);

/* Cut the file FD to SIZE bytes if a reused file left it longer.
 * Returns 0, or -1 with errno set. */
int spool_cut(int fd, off_t size);

/* The envelope directory of a message: deferred/ when DEFERRED is
 * set, else queue/. */
static inline int
spool_envelope_dir(const struct spool *spool, int deferred)
{
	return deferred ? spool->deferred_fd : spool->queue_fd;
}

/* The data directory of a message: deferred-data/ when DEFERRED is set,
 * else data/. */
static inline int
spool_data_dir(const struct spool *spool, int deferred)
{
	return deferred ? spool->deferred_data_fd : spool->data_fd;
}

/* Open the data file of the committed message ENV for reading, in the
 * data directory ENV's in_deferred flag names, or else in the other one
 * (a move may be under way, or may have failed). Descriptor or -1 with
 * errno set. */
int spool_open_data(const struct spool *spool, const struct envelope *env);

/* Remove the files of an uncommitted message (data/ID). */
void spool_remove_data(const struct spool *spool, const char *id);

/* spare.c: load the names in spare/ (emptying each), keeping at most
 * CAPACITY of them. Exits on failure. */
void spare_load(struct spool *spool, size_t capacity);
void spare_free(struct spool *spool);

/* The use a spare is taken for. Envelopes prefer files of one block, and
 * data files prefer larger ones. */
enum spare_use {
	SPARE_FOR_ENVELOPE,
	SPARE_FOR_DATA,
};

/* Rename a spare file to DIR_FD/NAME. 0, or -1 with errno EEXIST when
 * NAME exists, ENOENT when there is no spare file. Thread-safe. */
int spare_take(struct spool *spool, int dir_fd, const char *name, enum spare_use use);

/* Take a spare as spare_take does, then open it with FLAGS (O_WRONLY or
 * O_RDWR) without truncating it. The file contains only zeros but may be
 * longer than what the caller writes. Returns the descriptor, or -1 with
 * errno set. Thread-safe. */
int spare_open(struct spool *spool, int dir_fd, const char *name, enum spare_use use, int flags);

/* Zero DIR_FD/NAME and keep it as a spare file, or remove it when the
 * pool is full. 0 once NAME is gone from DIR_FD, -1 with errno set:
 * ENOENT when DIR_FD had no NAME. Thread-safe. */
int spare_retire(struct spool *spool, int dir_fd, const char *name);

/*
 * Move DIR_FD/NAME to spare/ as it is, neither scrubbed nor offered for
 * reuse: its content must stay intact until a barrier has made durable
 * the rename that took its place (an envelope update's exchange), since
 * until then a crash may leave the old name pointing at it. Returns the
 * slot to pass to spare_release after that barrier, or 0 when NAME could
 * not be moved (it stays where it is). Thread-safe.
 */
unsigned spare_hold(struct spool *spool, int dir_fd, const char *name);

/* Scrub a held file and offer it for reuse, or remove it when the pool
 * is full. Nothing for slot 0. Thread-safe. */
void spare_release(struct spool *spool, unsigned slot);

/* spare_retire for a data file, which a client wrote through a passed
 * descriptor: only if no process still has the file open, else it is
 * removed. */
int spare_retire_closed(struct spool *spool, int dir_fd, const char *name);

/* Queue ids: 13 hex digits of the microsecond clock, then 3 of a counter. */
void spool_new_id(char id[QUEUE_ID_MAX]);
int spool_id_valid(const char *id);

/*
 * Recover after a start: remove tmp/ files, keep only the deferred/
 * copy of an envelope that is in queue/ too, move each data file to the
 * data directory of its envelope, remove data files without an
 * envelope, move unreadable envelopes to corrupt/, and call LOAD for
 * each committed message (LOAD owns the envelope, whose in_deferred
 * flag is set). Returns the number of messages loaded.
 */
size_t spool_recover(struct spool *spool,
    void (*load)(struct envelope *env, void *arg), void *arg);

#endif
