/*
 * Group commit: one thread makes spool changes durable off the event
 * loop. Jobs that arrive while a batch is being synced wait and form the
 * next batch, so all of them share its two barriers:
 *
 *   1. write each envelope to tmp/ID
 *   2. barrier: syncfs of the spool file system (queue_sync_method =
 *      syncfs), or fsync of every data file, every tmp/ file and data/
 *      (fsync)
 *   3. rename tmp/ID to queue/ID (the commit point)
 *   4. barrier: fsync of queue/
 *   5. completion callbacks of the commits and updates run on the
 *      event loop, in submission order
 *   6. the removals taken with the batch: queue/ID, then data/ID, go
 *      to spare/ or are unlinked
 *   7. their callbacks run after the next batch's step 4, which makes
 *      the removals durable too, or after an fsync of queue/ of their
 *      own when no jobs are waiting
 *
 * A crash before step 4 finishes loses no message whose client got
 * COMMIT-OK, because that reply is only sent from the callback. The
 * removals come last so that the batch's clients do not wait for them,
 * and share the next batch's barrier so that they cost no barrier of
 * their own under load.
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
