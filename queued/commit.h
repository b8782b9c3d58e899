/*
 * Group commit: a thread makes spool changes durable off the event loop.
 * Jobs that arrive while a round runs wait and form the next one, so all
 * of them share its barrier. A round:
 *
 *   1. write each envelope to tmp/ID, with the CRC-32 of its data file
 *      and of itself; take the envelope of each removal out of queue/
 *      (to spare/ or unlinked)
 *   2. barrier: syncfs of the spool file system (queue_sync_method =
 *      syncfs), or fsync of every data file and tmp/ file, then of
 *      data/, tmp/ and, for removals, queue/ (fsync)
 *   3. rename tmp/ID to queue/ID, then run the commits' and updates'
 *      completion callbacks on the event loop, in submission order
 *   4. the removals' data files go to spare/ or are unlinked
 *   5. the removals' callbacks
 *
 * The rule: a message is committed once its complete envelope is on
 * disk, in queue/ or in tmp/. The client's COMMIT-OK is sent from the
 * callback, after the barrier, so a crash at any later point loses no
 * acknowledged message: recovery (spool_recover) finds the envelope in
 * tmp/ if the rename did not reach the disk, checks both CRCs, and
 * moves it into queue/. An envelope update is written and renamed the
 * same way; of two copies of one envelope, recovery keeps the one with
 * the higher seq. Step 3 needs no barrier of its own, which saves the
 * second cache flush a rename-then-fsync scheme pays per round. A
 * removal's data file is removed only after the barrier that removed its
 * envelope, so no envelope on disk ever lacks its data file.
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
	char *text;		/* the envelope, formatted (by the thread for
				 * COMMIT_NEW) */
	size_t text_len;
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

/* Replace the envelope of ENV's message with ENV's current state (its
 * seq goes up by one). */
void commit_update(struct envelope *env, commit_done_cb done, void *arg);

/* Remove the message ID from the spool. */
void commit_remove(const char *id, commit_done_cb done, void *arg);

/* Finish every submitted job (running callbacks), then stop the thread. */
void commit_stop(void);

#endif
