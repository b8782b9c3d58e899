/*
 * Group commit: a thread makes spool changes durable off the event loop.
 * Jobs that arrive while a round runs wait and form the next one, so all
 * of them share its barrier. A round:
 *
 *   1. write each envelope to tmp/ID with a CRC-32 of itself and of its
 *      data file (a data file over 256 KB is synced first instead). Take
 *      the envelope of each removal out of queue/ or deferred/, to
 *      spare/ or unlinked.
 *   2. barrier: syncfs of the spool file system (queue_sync_method =
 *      syncfs), or fsync of every data file and tmp/ file, then of
 *      data/, tmp/ and the envelope directories the removals changed
 *      (fsync)
 *   3. rename tmp/ID to queue/ID for a new message, or exchange it with
 *      deferred/ID for an update. The first update of a message moves
 *      it instead: data/ID to deferred-data/ID, then tmp/ID to
 *      deferred/ID. Then the commits' and updates' completion callbacks
 *      run on the event loop, in submission order.
 *   4. only in a round with moves: a barrier (syncfs, or fsync of
 *      deferred-data/ and deferred/), then each moved message's old
 *      envelope queue/ID goes to spare/
 *   5. the removals' data files go to spare/ or are unlinked, and their
 *      callbacks run
 *
 * The rule: a message is committed once its complete envelope is on
 * disk, in queue/, deferred/ or tmp/. The client's COMMIT-OK is sent
 * from the callback, after the barrier, so a crash at any later point
 * loses no acknowledged message. If the rename did not reach the disk,
 * recovery (spool_recover) finds the envelope in tmp/, checks its CRCs
 * and moves it into place. Every update raises the envelope's
 * seq, and of two copies of one envelope recovery keeps the higher.
 * Step 3 needs no barrier of its own, which saves the second cache
 * flush that a rename-then-fsync scheme pays per round. A removal's data
 * file goes only after the barrier that removed its envelope, so no
 * envelope on disk ever lacks its data file. A round takes at most one
 * job per message, since its jobs share the message's tmp/ file. The old
 * envelope file an update swaps out, and a removed envelope, keep their
 * content until a barrier has made that change durable (spare_hold):
 * until then a crash may leave the old name pointing at the file, and a
 * reused file would put another message's text under it.
 *
 * A crash during a move leaves, at worst, the data file in the other
 * data directory than its envelope, or the old envelope in queue/ beside
 * the new one in deferred/ or tmp/. The old envelope goes only after
 * step 4 made the new one durable. Recovery keeps the newest envelope
 * and moves the data file beside it, so the message is delivered once,
 * from its old or its new envelope.
 */
#ifndef ESTAFETA_QUEUED_COMMIT_H
#define ESTAFETA_QUEUED_COMMIT_H

#include "queue_proto.h"

struct event_base;
struct envelope;
struct spool;

enum commit_kind {
	COMMIT_NEW,	/* first envelope of a received message */
	COMMIT_UPDATE,	/* replace the envelope of a committed message,
			 * in deferred/ */
	COMMIT_REMOVE,	/* remove a message: envelope, then data */
};

struct commit_job;
typedef void (*commit_done_cb)(struct commit_job *job, void *arg);

struct commit_job {
	enum commit_kind kind;
	char id[QUEUE_ID_MAX];
	struct envelope *env;	/* COMMIT_NEW: formatted by the thread; a
				 * callback may take it (set it to NULL) */
	char *text;		/* the envelope, formatted (by the thread for
				 * COMMIT_NEW) */
	size_t text_len;
	int move;		/* COMMIT_UPDATE: move the message from queue/ and
				 * data/ to deferred/ and deferred-data/ */
	int deferred;		/* COMMIT_REMOVE: the files are in deferred/ and
				 * deferred-data/ */
	int data_fd;		/* COMMIT_NEW: the data file, or -1 for the
				 * thread to open data/ID */
	int error;		/* errno of the failed step, 0 on success */
	commit_done_cb done;
	void *arg;
	struct commit_job *next;
};

/* Start the thread. SPOOL must stay open while it runs. */
void commit_start(struct event_base *base, struct spool *spool, int use_syncfs);

/* Commit a new message. Takes ENV and DATA_FD. */
void commit_new(struct envelope *env, int data_fd, commit_done_cb done, void *arg);

/* Replace the envelope of ENV's message with ENV's current state, which
 * defers it. A message still in queue/ moves to the deferred
 * directories. ENV's in_deferred flag is set at once, so that every
 * later job on the message goes there too, and its seq goes up by one. */
void commit_update(struct envelope *env, commit_done_cb done, void *arg);

/* Remove ENV's message from the spool. */
void commit_remove(const struct envelope *env, commit_done_cb done, void *arg);

/* Finish every submitted job (running callbacks), then stop the thread. */
void commit_stop(void);

#endif
