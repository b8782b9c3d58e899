/*
 * Group commit: two threads make spool changes durable off the event
 * loop. Jobs that arrive while a batch is being synced wait and form the
 * next batch, so all of them share its barriers. The sync thread runs
 * steps 1 and 2 of a batch, then hands it to the apply thread, which
 * runs steps 3 to 7 while the sync thread already works on the next
 * batch:
 *
 *   1. write each envelope to tmp/ID
 *   2. barrier: syncfs of the spool file system (queue_sync_method =
 *      syncfs), or fsync of every data file, every tmp/ file and data/
 *      (fsync)
 *   3. rename tmp/ID to queue/ID for a new message (the commit point),
 *      or exchange it with deferred/ID for an update. The first update
 *      of a message moves it instead: data/ID to deferred-data/ID, then
 *      tmp/ID to deferred/ID.
 *   4. barrier, only in a batch with moves: syncfs, or fsync of
 *      deferred-data/ and deferred/, then each moved message's old
 *      envelope queue/ID goes to spare/
 *   5. the batch's removals: the envelope, then the data file, go to
 *      spare/ or are unlinked
 *   6. barrier: fsync of queue/ and of deferred/, each only if the
 *      batch changed it
 *   7. completion callbacks run on the event loop, commits and updates
 *      first, each in submission order
 *
 * A crash before step 6 finishes loses no message whose client got
 * COMMIT-OK, because that reply is only sent from the callback. Batches
 * go through step 3 in the order they were synced, so an update never
 * overtakes the commit it follows, nor a removal the move before it.
 *
 * A crash during a move leaves, at worst, the data file in the other
 * data directory than its envelope, or the old envelope in queue/
 * beside the new one in deferred/. The old envelope goes only after
 * step 4 made the new one durable. Recovery keeps the envelope in
 * deferred/ and moves the data file beside it (spool_recover), so the
 * message is delivered once, from its old or its new envelope.
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
	char *text;		/* COMMIT_UPDATE: the envelope, formatted */
	size_t text_len;
	int move;		/* COMMIT_UPDATE: move the message from queue/ and
				 * data/ to deferred/ and deferred-data/ */
	int deferred;		/* COMMIT_REMOVE: the files are in deferred/ and
				 * deferred-data/ */
	int data_fd;		/* COMMIT_NEW: read-only data file, or -1 */
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
 * later job on the message goes there too. */
void commit_update(struct envelope *env, commit_done_cb done, void *arg);

/* Remove ENV's message from the spool. */
void commit_remove(const struct envelope *env, commit_done_cb done, void *arg);

/* Finish every submitted job (running callbacks), then stop the thread. */
void commit_stop(void);

#endif
