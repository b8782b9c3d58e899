/* The group-commit thread (see commit.h for the steps and the rule). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "commit.h"
#include "envelope.h"
#include "log.h"
#include "spool.h"
#include "util.h"

#define COMMIT_BATCH_MAX 1024

/* Data files up to this size get a CRC-32 in their envelope; larger ones
 * are synced before it is written (syncs_data_first). */
#define DATA_CRC_MAX (256 * 1024)

static struct {
	struct spool *spool;
	int use_syncfs;

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wakeup;		/* jobs are pending, or stopping is set */
	struct commit_job *pending_head, *pending_tail;
	struct commit_job *done_head, *done_tail;
	int stopping;

	/* Envelope files moved to spare/ whose content must stay intact
	 * until the next barrier (spare_hold), and those of them that the
	 * last barrier covers. Only the commit thread uses them. */
	unsigned *held, *covered;
	size_t nheld, ncovered, held_capacity;

	int done_fd;		/* eventfd: the thread signals finished batches */
	struct event *done_ev;
} committer = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wakeup = PTHREAD_COND_INITIALIZER,
};

/* Thread side. */

/*
 * Read the data file once: its CRC-32 goes into the envelope, so that
 * recovery can tell a data file that reached the disk from one that did
 * not, and a local submission without a body= field gets BODY=8BITMIME
 * on the way out if it has bytes >= 0x80. Returns 0, or -1 with errno.
 */
static int
scan_data(struct commit_job *job)
{
	char buf[65536];
	unsigned long crc = 0;
	off_t offset = 0;
	int want_8bit = envelope_attr(job->env, "body") == NULL;
	ssize_t n = 0;

	while (offset < job->env->size &&
	    (n = pread(job->data_fd, buf, sizeof buf, offset)) > 0) {
		if (n > job->env->size - offset)
			n = (ssize_t)(job->env->size - offset);
		crc = envelope_crc(crc, buf, (size_t)n);
		if (want_8bit) {
			for (ssize_t i = 0; i < n; i++) {
				if ((unsigned char)buf[i] >= 0x80) {
					envelope_set_attr(job->env, "body", "8BITMIME");
					want_8bit = 0;
					break;
				}
			}
		}
		offset += n;
	}
	if (offset < job->env->size) {
		if (n == 0)
			errno = EIO;	/* shorter than its committed size */
		return -1;
	}
	job->env->data_crc = crc;
	job->env->have_data_crc = 1;
	return 0;
}

/*
 * Return whether the data file of JOB is synced on its own before its
 * envelope is written, instead of being read back for its CRC. For a
 * large file one more cache flush costs less than the read (about 1 ms
 * per MB on the benchmark machine). A file without a body= field is read
 * anyway, for its 8-bit check.
 */
static int
syncs_data_first(const struct commit_job *job)
{
	return job->kind == COMMIT_NEW && job->env->size > DATA_CRC_MAX &&
	    envelope_attr(job->env, "body") != NULL;
}

/* Step 1: write tmp/ID. Returns the open file (for fsync) or -1. */
static int
write_tmp_envelope(struct commit_job *job)
{
	int fd;

	if (job->kind == COMMIT_NEW) {
		if (job->data_fd < 0)
			job->data_fd = spool_open_data(committer.spool, job->env);
		if (job->data_fd < 0 || spool_cut(job->data_fd, job->env->size) < 0) {
			job->error = errno;
			return -1;
		}
		if (syncs_data_first(job)) {
			if (fdatasync(job->data_fd) < 0) {
				job->error = errno;
				return -1;
			}
			job->env->data_synced = 1;
		} else if (scan_data(job) < 0) {
			job->error = errno;
			return -1;
		}
		job->text = envelope_format(job->env, &job->text_len);
	}
	fd = spare_open(committer.spool, committer.spool->tmp_fd, job->id, SPARE_FOR_ENVELOPE,
	    O_WRONLY);
	if (fd < 0)
		fd = openat(committer.spool->tmp_fd, job->id, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0600);
	if (fd < 0) {
		job->error = errno;
		return -1;
	}
	if (write_all(fd, job->text, job->text_len) < 0 ||
	    spool_cut(fd, (off_t)job->text_len) < 0) {
		job->error = errno;
		close(fd);
		unlinkat(committer.spool->tmp_fd, job->id, 0);
		return -1;
	}
	return fd;
}

static int
fsync_or_error(int fd, int *error)
{
	if (fsync(fd) == 0)
		return 0;
	if (*error == 0)
		*error = errno;
	return -1;
}

/* Keep the spare slot of a file held until the next barrier. */
static void
hold_until_barrier(unsigned slot)
{
	if (slot == 0)
		return;
	/* Both lists fit in the capacity: covered files wait for a barrier
	 * that succeeds, and held ones join them at the next. */
	if (committer.nheld + committer.ncovered == committer.held_capacity) {
		committer.held_capacity = committer.held_capacity ? committer.held_capacity * 2 : 64;
		committer.held = xrealloc(committer.held,
		    committer.held_capacity * sizeof *committer.held);
		committer.covered = xrealloc(committer.covered,
		    committer.held_capacity * sizeof *committer.covered);
	}
	committer.held[committer.nheld++] = slot;
}

/* A barrier is about to start: the files held so far are covered once
 * it has finished. */
static void
cover_held(void)
{
	if (committer.nheld == 0)
		return;
	memcpy(committer.covered + committer.ncovered, committer.held,
	    committer.nheld * sizeof *committer.held);
	committer.ncovered += committer.nheld;
	committer.nheld = 0;
}

/* The barrier has finished: the files it covers may be reused. */
static void
release_covered(void)
{
	for (size_t i = 0; i < committer.ncovered; i++)
		spare_release(committer.spool, committer.covered[i]);
	committer.ncovered = 0;
}

/* Where a round changed envelope directories, for the fsync barrier. */
enum {
	CHANGED_QUEUE = 1,
	CHANGED_DEFERRED = 2,
};

/* The jobs of one round. */
struct commit_batch {
	struct commit_job *commits[COMMIT_BATCH_MAX];	/* new and updates */
	struct commit_job *removals[COMMIT_BATCH_MAX];
	char moved[COMMIT_BATCH_MAX][QUEUE_ID_MAX];	/* ids whose old envelope step 4
							 * retires (the jobs are gone by then) */
	int tmp_fds[COMMIT_BATCH_MAX];
	int removed_from[COMMIT_BATCH_MAX];	/* 1: the removal's envelope left deferred/ */
	int has_large;		/* a data file over DATA_CRC_MAX: no syncfs */
	size_t ncommits, nremovals, nmoves;
	unsigned changed;	/* CHANGED_ flags, for the barrier */
};

/* Step 2: the barrier, for the data files and tmp/ envelopes of the
 * commits and for the envelopes the removals took out of queue/. */
static void
sync_batch(struct commit_batch *batch)
{
	const struct spool *spool = committer.spool;
	int error = 0, have_new = 0;

	/* syncfs waits for everything dirty on the file system, which with
	 * large messages includes those still being received and delivered:
	 * a round with a large data file syncs its own files instead. */
	cover_held();
	if (committer.use_syncfs && !batch->has_large) {
		if (syncfs(spool->dir_fd) < 0)
			error = errno;
	} else {
		for (size_t i = 0; i < batch->ncommits; i++) {
			struct commit_job *job = batch->commits[i];

			if (job->error != 0 || batch->tmp_fds[i] < 0)
				continue;
			if (job->kind == COMMIT_NEW) {
				have_new = 1;
				if (fsync_or_error(job->data_fd, &job->error) < 0)
					continue;
			}
			fsync_or_error(batch->tmp_fds[i], &job->error);
		}
		if (have_new && fsync(spool->data_fd) < 0)
			error = errno;
		if (batch->ncommits > 0 && fsync(spool->tmp_fd) < 0)
			error = errno;
		if ((batch->changed & CHANGED_QUEUE) && fsync(spool->queue_fd) < 0)
			error = errno;
		/* The held files of exchanges wait for deferred/ too. */
		if (((batch->changed & CHANGED_DEFERRED) || committer.ncovered > 0) &&
		    fsync(spool->deferred_fd) < 0)
			error = errno;
	}
	if (error == 0)
		release_covered();

	for (size_t i = 0; i < batch->ncommits; i++)
		if (batch->commits[i]->error == 0 && error != 0)
			batch->commits[i]->error = error;
	for (size_t i = 0; i < batch->nremovals; i++)
		if (batch->removals[i]->error == 0 && error != 0)
			batch->removals[i]->error = error;
}

static void
fail_update(struct commit_job *job, int error)
{
	job->error = error;
	spare_retire(committer.spool, committer.spool->tmp_fd, job->id);
}

/*
 * Step 3 for the first update of a message: the data file, then the new
 * envelope, go to the deferred directories. The old envelope stays in
 * queue/ until step 4 has made both renames durable, so that a crash
 * at any point leaves an envelope and a data file that recovery pairs
 * up again.
 */
static void
start_move(struct commit_batch *batch, struct commit_job *job)
{
	struct spool *spool = committer.spool;
	int data_moved;

	/* ENOENT: an earlier move that failed at the envelope left the data
	 * file in deferred-data/ already. */
	data_moved = renameat(spool->data_fd, job->id, spool->deferred_data_fd, job->id) == 0;
	if (!data_moved && errno != ENOENT) {
		fail_update(job, errno);
		return;
	}
	if (renameat(spool->tmp_fd, job->id, spool->deferred_fd, job->id) < 0) {
		int error = errno;

		/* Put the data file back beside its envelope. Should that fail
		 * too, readers and recovery look in both data directories. */
		if (data_moved)
			renameat(spool->deferred_data_fd, job->id, spool->data_fd, job->id);
		fail_update(job, error);
		return;
	}
	strlcpy_x(batch->moved[batch->nmoves++], job->id, QUEUE_ID_MAX);
}

/* Step 3 for an update. */
static void
rename_update(struct commit_batch *batch, struct commit_job *job)
{
	struct spool *spool = committer.spool;

	if (job->move) {
		start_move(batch, job);
		return;
	}

	/* The exchange swaps the new envelope in and the old one out in one
	 * step, so the old file can become a spare instead of being freed.
	 * Until the next barrier either copy may be the one on disk, so the
	 * old file keeps its content until then (recovery keeps the higher
	 * seq). */
	if (renameat2(spool->tmp_fd, job->id, spool->deferred_fd, job->id, RENAME_EXCHANGE) == 0) {
		hold_until_barrier(spare_hold(spool, spool->tmp_fd, job->id));
		return;
	}

	/* No deferred/ID: the move of an earlier update failed, and the
	 * message is still in queue/. */
	if (errno == ENOENT) {
		start_move(batch, job);
		return;
	}
	if (renameat(spool->tmp_fd, job->id, spool->deferred_fd, job->id) < 0)
		fail_update(job, errno);
}

/* Step 3 for one new message or update. */
static void
rename_commit(struct commit_batch *batch, struct commit_job *job)
{
	struct spool *spool = committer.spool;

	if (job->error != 0) {
		spare_retire(spool, spool->tmp_fd, job->id);
		return;
	}
	if (job->kind == COMMIT_UPDATE) {
		rename_update(batch, job);
		return;
	}
	if (renameat(spool->tmp_fd, job->id, spool->queue_fd, job->id) < 0) {
		job->error = errno;
		unlinkat(spool->tmp_fd, job->id, 0);
	}
}

/* Step 4: make the moves of BATCH durable, then retire the old envelope
 * of each moved message from queue/. */
static void
finish_moves(struct commit_batch *batch)
{
	struct spool *spool = committer.spool;
	int error = 0;

	if (batch->nmoves == 0)
		return;
	if (committer.use_syncfs) {
		if (syncfs(spool->dir_fd) < 0)
			error = errno;
	} else if (fsync(spool->deferred_data_fd) < 0 || fsync(spool->deferred_fd) < 0) {
		error = errno;
	}

	for (size_t i = 0; i < batch->nmoves; i++) {
		const char *id = batch->moved[i];

		/* NOTE: after a failed barrier the old envelope stays in queue/,
		 * so that a crash cannot lose the message, and recovery keeps the
		 * newer one in deferred/. If the message is removed in this run,
		 * the old one stays behind and goes to corrupt/ at the next start
		 * (its data file is gone). */
		if (error != 0) {
			log_error("%s: move to deferred/: %s; the old envelope stays in queue/", id,
			    strerror(error));
			continue;
		}
		if (spare_retire(spool, spool->queue_fd, id) < 0 && errno != ENOENT)
			log_error("%s: remove the old envelope from queue/: %s", id, strerror(errno));
	}
}

/*
 * Retire JOB's file from DIR_FDS[DEFERRED] through RETIRE, or else from
 * DIR_FDS[!DEFERRED]: a move that failed leaves a file in the queue/
 * pair. Returns the index of the directory the file left, or -1 when it
 * was in neither or could not be removed (JOB's error is set then).
 */
static int
retire_either(int (*retire)(struct spool *, int, const char *), const int dir_fds[2],
    int deferred, struct commit_job *job)
{
	for (int tries = 0; tries < 2; tries++, deferred = !deferred) {
		if (retire(committer.spool, dir_fds[deferred], job->id) == 0)
			return deferred;
		if (errno != ENOENT) {
			if (job->error == 0)
				job->error = errno;
			return -1;
		}
	}
	return -1;
}

/*
 * Step 1 for the removal BATCH->removals[I]: the envelope leaves first,
 * and that is the removal. Its file is held until the round's barrier
 * has made the removal durable, so that no stale name on disk points at
 * a reused file.
 */
static void
retire_envelope(struct commit_batch *batch, size_t i)
{
	struct spool *spool = committer.spool;
	struct commit_job *job = batch->removals[i];
	int from = job->deferred;

	for (int tries = 0; tries < 2; tries++, from = !from) {
		unsigned slot = spare_hold(spool, spool_envelope_dir(spool, from), job->id);

		if (slot != 0) {
			hold_until_barrier(slot);
			batch->removed_from[i] = from;
			batch->changed |= from ? CHANGED_DEFERRED : CHANGED_QUEUE;
			return;
		}
		if (errno != ENOENT) {
			job->error = errno;
			break;
		}
	}
	batch->removed_from[i] = job->deferred;
}

/* Step 5 for a removal whose envelope is gone from the disk. */
static void
retire_data(struct commit_batch *batch, size_t i)
{
	struct spool *spool = committer.spool;
	struct commit_job *job = batch->removals[i];
	const int data_dirs[2] = { spool->data_fd, spool->deferred_data_fd };

	if (job->error == 0)
		retire_either(spare_retire_closed, data_dirs, batch->removed_from[i], job);
}

/* Sort JOBS into BATCH. */
static void
batch_fill(struct commit_batch *batch, struct commit_job **jobs, size_t count)
{
	batch->ncommits = batch->nremovals = batch->nmoves = 0;
	batch->changed = 0;
	for (size_t i = 0; i < count; i++) {
		if (jobs[i]->kind == COMMIT_REMOVE)
			batch->removals[batch->nremovals++] = jobs[i];
		else
			batch->commits[batch->ncommits++] = jobs[i];
	}
}

#define ID_SET_SIZE (2 * COMMIT_BATCH_MAX)

/* The queue ids of one batch: an open-addressing hash set. */
struct id_set {
	const char *ids[ID_SET_SIZE];
};

/* Add ID to SET; 0 if it was there already. */
static int
id_set_add(struct id_set *set, const char *id)
{
	unsigned long hash = 5381;

	for (const char *p = id; *p != '\0'; p++)
		hash = hash * 33 + (unsigned char)*p;
	for (size_t i = hash % ID_SET_SIZE;; i = (i + 1) % ID_SET_SIZE) {
		if (set->ids[i] == NULL) {
			set->ids[i] = id;
			return 1;
		}
		if (strcmp(set->ids[i], id) == 0)
			return 0;
	}
}

/*
 * Move up to COMMIT_BATCH_MAX pending jobs into JOBS, at most one per
 * message: jobs for one message share its tmp/ file, and a round takes
 * removals out of queue/ before it renames its commits into place, so a
 * second job for a message waits for the next round. The caller holds
 * the lock (or the thread has stopped). Returns the count.
 */
static size_t
take_pending(struct commit_job **jobs)
{
	struct id_set *seen = xcalloc(1, sizeof *seen);
	size_t count = 0;

	while (committer.pending_head != NULL && count < COMMIT_BATCH_MAX &&
	    id_set_add(seen, committer.pending_head->id)) {
		jobs[count++] = committer.pending_head;
		committer.pending_head = committer.pending_head->next;
	}
	if (committer.pending_head == NULL)
		committer.pending_tail = NULL;
	free(seen);
	return count;
}

/* Append finished jobs to the done list; same locking rule. */
static void
append_done(struct commit_job **jobs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		jobs[i]->next = NULL;
		if (committer.done_tail != NULL)
			committer.done_tail->next = jobs[i];
		else
			committer.done_head = jobs[i];
		committer.done_tail = jobs[i];
	}
}

/* Hand finished jobs to the event loop. */
static void
finish_jobs(struct commit_job **jobs, size_t count)
{
	uint64_t increment = 1;

	if (count == 0)
		return;
	pthread_mutex_lock(&committer.lock);
	append_done(jobs, count);
	pthread_mutex_unlock(&committer.lock);
	if (write(committer.done_fd, &increment, sizeof increment) < 0 && errno != EAGAIN)
		log_error("commit: signal the event loop: %s", strerror(errno));
}

/*
 * One round: steps 1 to 5 for a batch. The commits are acknowledged
 * right after their renames, which need no barrier of their own: the
 * envelopes were complete on disk in tmp/ before. The removals' data
 * files go only after the barrier that took their envelopes away, so
 * that no envelope on disk ever lacks its data file.
 */
static void
run_batch(struct commit_batch *batch, void (*finish)(struct commit_job **, size_t))
{
	/* Start the writeback of every large data file, so that their
	 * fdatasync calls in step 1 wait for all of them at once. */
	batch->has_large = 0;
	for (size_t i = 0; i < batch->ncommits; i++) {
		if (!syncs_data_first(batch->commits[i]))
			continue;
		batch->has_large = 1;
		if (batch->commits[i]->data_fd >= 0)
			sync_file_range(batch->commits[i]->data_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	for (size_t i = 0; i < batch->ncommits; i++)
		batch->tmp_fds[i] = write_tmp_envelope(batch->commits[i]);
	for (size_t i = 0; i < batch->nremovals; i++)
		retire_envelope(batch, i);

	sync_batch(batch);
	for (size_t i = 0; i < batch->ncommits; i++)
		if (batch->tmp_fds[i] >= 0)
			close(batch->tmp_fds[i]);

	for (size_t i = 0; i < batch->ncommits; i++)
		rename_commit(batch, batch->commits[i]);
	finish(batch->commits, batch->ncommits);
	finish_moves(batch);

	for (size_t i = 0; i < batch->nremovals; i++)
		retire_data(batch, i);
	finish(batch->removals, batch->nremovals);
}

/* The thread: each round takes the jobs that arrived while the last one
 * ran, so they all share its barrier. */
static void *
commit_thread_main(void *unused)
{
	struct commit_job *jobs[COMMIT_BATCH_MAX];
	struct commit_batch *batch = xcalloc(1, sizeof *batch);

	for (;;) {
		size_t count;

		pthread_mutex_lock(&committer.lock);
		while (committer.pending_head == NULL && !committer.stopping)
			pthread_cond_wait(&committer.wakeup, &committer.lock);
		if (committer.pending_head == NULL) {
			pthread_mutex_unlock(&committer.lock);
			break;
		}
		count = take_pending(jobs);
		pthread_mutex_unlock(&committer.lock);

		batch_fill(batch, jobs, count);
		run_batch(batch, finish_jobs);
	}
	free(batch);
	return NULL;
}

/* At exit, one more barrier lets the held files go. */
static void
release_at_exit(void)
{
	const struct spool *spool = committer.spool;
	int rc;

	cover_held();
	if (committer.ncovered > 0) {
		rc = committer.use_syncfs ? syncfs(spool->dir_fd) : fsync(spool->deferred_fd);
		if (rc == 0)
			release_covered();
	}
	free(committer.held);
	free(committer.covered);
}

/* Event loop side. */

static void
job_free(struct commit_job *job)
{
	envelope_free(job->env);
	free(job->text);
	if (job->data_fd >= 0)
		close(job->data_fd);
	free(job);
}

static void
run_done_callbacks(void)
{
	struct commit_job *job;

	pthread_mutex_lock(&committer.lock);
	job = committer.done_head;
	committer.done_head = committer.done_tail = NULL;
	pthread_mutex_unlock(&committer.lock);

	while (job != NULL) {
		struct commit_job *next = job->next;

		if (job->done != NULL)
			job->done(job, job->arg);
		job_free(job);
		job = next;
	}
}

static void
done_event_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t count;

	if (read(fd, &count, sizeof count) < 0 && errno != EAGAIN)
		log_error("commit: read eventfd: %s", strerror(errno));
	run_done_callbacks();
}

void
commit_start(struct event_base *base, struct spool *spool, int use_syncfs)
{
	int rc;

	committer.spool = spool;
	committer.use_syncfs = use_syncfs;
	committer.done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (committer.done_fd < 0)
		fatal("eventfd");
	committer.done_ev = event_new(base, committer.done_fd, EV_READ | EV_PERSIST,
	    done_event_cb, NULL);
	event_add(committer.done_ev, NULL);

	rc = pthread_create(&committer.thread, NULL, commit_thread_main, NULL);
	if (rc != 0) {
		errno = rc;
		fatal("start the commit thread");
	}
}

static void
submit_job(struct commit_job *job)
{
	pthread_mutex_lock(&committer.lock);
	if (committer.pending_tail != NULL)
		committer.pending_tail->next = job;
	else
		committer.pending_head = job;
	committer.pending_tail = job;
	pthread_cond_signal(&committer.wakeup);
	pthread_mutex_unlock(&committer.lock);
}

static struct commit_job *
job_new(enum commit_kind kind, const char *id, commit_done_cb done, void *arg)
{
	struct commit_job *job = xcalloc(1, sizeof *job);

	job->kind = kind;
	strlcpy_x(job->id, id, sizeof job->id);
	job->data_fd = -1;
	job->done = done;
	job->arg = arg;
	return job;
}

void
commit_new(struct envelope *env, int data_fd, commit_done_cb done, void *arg)
{
	struct commit_job *job = job_new(COMMIT_NEW, env->id, done, arg);

	job->env = env;
	job->data_fd = data_fd;
	submit_job(job);
}

void
commit_update(struct envelope *env, commit_done_cb done, void *arg)
{
	struct commit_job *job = job_new(COMMIT_UPDATE, env->id, done, arg);

	env->seq++;
	job->text = envelope_format(env, &job->text_len);
	job->move = !env->in_deferred;
	env->in_deferred = 1;
	submit_job(job);
}

void
commit_remove(const struct envelope *env, commit_done_cb done, void *arg)
{
	struct commit_job *job = job_new(COMMIT_REMOVE, env->id, done, arg);

	job->deferred = env->in_deferred;
	submit_job(job);
}

void
commit_stop(void)
{
	pthread_mutex_lock(&committer.lock);
	committer.stopping = 1;
	pthread_cond_signal(&committer.wakeup);
	pthread_mutex_unlock(&committer.lock);

	pthread_join(committer.thread, NULL);
	run_done_callbacks();

	/* Callbacks may have submitted more jobs (a bounce commit leads to
	 * an envelope update). Run them here: blocking is fine at exit. */
	while (committer.pending_head != NULL) {
		struct commit_job *jobs[COMMIT_BATCH_MAX];
		struct commit_batch *batch = xcalloc(1, sizeof *batch);

		batch_fill(batch, jobs, take_pending(jobs));
		run_batch(batch, append_done);
		free(batch);
		run_done_callbacks();
	}
	release_at_exit();
	event_free(committer.done_ev);
	close(committer.done_fd);
}
