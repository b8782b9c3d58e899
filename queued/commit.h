/*
 * Group commit: two threads make spool changes durable off the event
 * loop. Jobs that arrive while a batch is being synced wait and form the
 * next batch, so all of them share its barriers. The sync thread runs
 * steps 1 and 2 of a batch, then hands it to the apply thread, which
 * runs steps 3 to 6 while the sync thread already works on the next
 * batch:
 *
 *   1. write each envelope to tmp/ID
 *   2. barrier: syncfs of the spool file system (queue_sync_method =
 *      syncfs), or fsync of every data file, every tmp/ file and data/
 *      (fsync)
 *   3. rename tmp/ID to queue/ID (the commit point)
 *   4. the batch's removals: queue/ID, then data/ID, go to spare/ or
 *      are unlinked
 *   5. barrier: fsync of queue/, for the commits and the removals
 *   6. completion callbacks run on the event loop, commits and updates
 *      first, each in submission order
 *
 * A crash before step 5 finishes loses no message whose client got
 * COMMIT-OK, because that reply is only sent from the callback. Batches
 * go through step 3 in the order they were synced, so an update never
 * overtakes the commit it follows.
 */
#ifndef ESTAFETA_QUEUED_COMMIT_H
#define ESTAFETA_QUEUED_COMMIT_H

#include "queue_proto.h"

struct event_base;
struct envelope;
struct spool;

enum commit_kind {
	COMMIT_NEW,	/* first envelope of a received message */
	COMMIT_UPDATE,	/* replace the envelope of a committed message */
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

/* Replace the envelope of ENV's message with ENV's current state. */
void commit_update(const struct envelope *env, commit_done_cb done, void *arg);

/* Remove the message ID from the spool. */
void commit_remove(const char *id, commit_done_cb done, void *arg);

/* Finish every submitted job (running callbacks), then stop the thread. */
void commit_stop(void);

#endif
