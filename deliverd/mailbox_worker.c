/*
 * A mailbox worker: a long-lived delivery process for one owner (uid,
 * gid, and for a system user that user's groups), started by the master
 * and fed DELIVER requests over its channel (see pool.c).
 *
 * It reads every request that has arrived, looks each user up in the
 * userdb (keeping the results for deliverd_userdb_cache_time, as the
 * sessions do), checks that the user still maps to its own uid and gid,
 * and writes the Maildir deliveries into tmp/. Then the whole batch shares
 * one barrier for the files and one for the renames into new/, and a
 * RESULT goes back for each request. While requests keep coming, the
 * second barrier of a batch is the first of the next (run_batch).
 *
 * What it cannot do as this uid, such as creating a missing home
 * directory, delivering to an mbox (which may need the mail spool's
 * group) or serving a user whose uid changed, it hands back with
 * redo=yes, and the master forks a one-shot worker for it.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "deliverd.h"
#include "ipc.h"
#include "log.h"
#include "userdb.h"
#include "userdb_cache.h"
#include "util.h"

#define BATCH_MAX 64
#define USERDB_TIMEOUT_MS 10000

struct mailbox_job {
	struct ipc_msg *msg;		/* owns the message descriptor */
	struct delivery_request request;
	struct message message;
	struct userdb_entry user;
	int user_found;		/* USER holds this job's userdb entry */
	int state;
};

enum {
	JOB_DONE,			/* result final and logged */
	JOB_STAGED,			/* written to tmp/, waiting for the barrier */
	JOB_REDO,			/* for a one-shot worker */
};

struct mailbox_batch {
	struct mailbox_job jobs[BATCH_MAX];
	struct maildir_file files[BATCH_MAX];
	struct delivery_result results[BATCH_MAX];
	size_t count;
};

struct mailbox_worker {
	int channel;
	uid_t uid;
	gid_t gid;
	int use_syncfs;
	int userdb_lost;	/* cannot reconnect as this uid: stop after the batch */
	int closed;		/* the master closed the channel */
	struct userdb_client *userdb;
	struct userdb_cache *users;	/* results of userdb, for deliverd_userdb_cache_time */
	struct mailbox_batch batches[2];
	struct mailbox_batch *renamed;	/* in new/, waiting for the second
					 * barrier and its results, or NULL */
};

/* Read the requests waiting on the channel into B, blocking for the
 * first unless WAIT is 0. Return how many were read. The closed flag is
 * set when the master closed the channel. */
static size_t
read_batch(struct mailbox_worker *w, struct mailbox_batch *b, int wait)
{
	struct pollfd pfd = { .fd = w->channel, .events = POLLIN };
	size_t count = 0;

	while (count < BATCH_MAX) {
		struct ipc_msg *msg;

		if ((count > 0 || !wait) && poll(&pfd, 1, 0) <= 0)
			break;
		msg = ipc_recv(w->channel);
		if (msg == NULL) {
			w->closed = 1;
			break;
		}
		memset(&b->jobs[count], 0, sizeof b->jobs[count]);
		b->jobs[count].msg = msg;
		count++;
	}
	b->count = count;
	return count;
}

/* Whether this process can deliver to USER's mailbox; if not, a one-shot
 * worker will. Fills PATH with the Maildir. */
static int
can_deliver(const struct mailbox_worker *w, const struct userdb_entry *user, char *path,
    size_t pathsize)
{
	const char *location = user->mail[0] != '\0' ? user->mail : config_string("mail_location");
	char type[16];

	if (user->uid != w->uid || user->gid != w->gid)
		return 0;
	if (user->home[0] == '\0' ? strchr(location, '~') != NULL : access(user->home, F_OK) < 0)
		return 0;
	if (mail_location_inbox(location, user, config_string("mail_spool_directory"), type,
	    sizeof type, path, pathsize) < 0)
		return 0;
	return strcmp(type, "maildir") == 0;
}

/* Look up the user of job I, or reuse the entry an earlier job of the
 * same batch found for the same user. The batch was read at one moment,
 * so one lookup serves all of its deliveries to that user, even with the
 * cache off. Returns as userdb_lookup does. */
static int
lookup_user(struct mailbox_worker *w, struct mailbox_batch *b, size_t i, char *err,
    size_t errsize)
{
	struct mailbox_job *job = &b->jobs[i];
	int found;

	for (size_t j = 0; j < i; j++) {
		const struct mailbox_job *earlier = &b->jobs[j];

		if (earlier->user_found && strcmp(earlier->request.user, job->request.user) == 0) {
			job->user = earlier->user;
			job->user_found = 1;
			return 1;
		}
	}
	found = userdb_cache_lookup(w->users, w->userdb, job->request.user, "lmtp",
	    USERDB_TIMEOUT_MS, &job->user, err, errsize);
	job->user_found = found == 1;
	return found;
}

/* Run everything before the barrier for job I of B. */
static void
job_start(struct mailbox_worker *w, struct mailbox_batch *b, size_t i)
{
	struct mailbox_job *job = &b->jobs[i];
	struct delivery_result *result = &b->results[i];
	char err[256], path[PATH_MAX];
	struct stat st;
	int found;

	b->files[i].fd = -1;
	b->files[i].renamed = 0;
	job->state = JOB_DONE;
	if (request_from_msg(&job->request, job->msg) < 0 || job->msg->fd < 0 ||
	    strcmp(job->request.kind, "mailbox") != 0 || fstat(job->msg->fd, &st) < 0) {
		job->request.id = (long)ipc_msg_get_int(job->msg, "id", -1);
		result_set(result, EX_TEMPFAIL, "4.3.0", "invalid delivery request");
		return;
	}

	/* The connection to the userdb was made as root; once it breaks, a
	 * new worker has to make the next one. */
	found = w->userdb_lost ? -1 : lookup_user(w, b, i, err, sizeof err);
	if (found < 0) {
		w->userdb_lost = 1;
		job->state = JOB_REDO;
		result_set(result, EX_TEMPFAIL, "4.3.0", "handed to a one-shot worker");
		return;
	}
	if (found == 0) {
		result_set(result, EX_NOUSER, "5.1.1", "user %s unknown", job->request.user);
		log_delivery(&job->request, result, job->request.recipient);
		return;
	}
	if (!can_deliver(w, &job->user, path, sizeof path)) {
		job->state = JOB_REDO;
		result_set(result, EX_TEMPFAIL, "4.3.0", "handed to a one-shot worker");
		return;
	}

	if (job->request.forward && forward_needs_root(job->user.home)) {
		job->state = JOB_REDO;
		result_set(result, EX_TEMPFAIL, "4.3.0", "handed to a one-shot worker");
		return;
	}

	job->message.fd = job->msg->fd;
	job->message.size = st.st_size;
	job->message.sender = job->request.sender;
	if (job->request.forward &&
	    forward_deliver(&job->message, &job->request, &job->user, result))
		return;
	if (maildir_write(&job->message, path, mailbox_folder(&job->request),
	    job->request.recipient, &b->files[i], result) < 0) {
		log_delivery(&job->request, result, job->request.recipient);
		return;
	}
	job->state = JOB_STAGED;
}

static void
send_result(struct mailbox_worker *w, struct mailbox_batch *b, size_t i)
{
	struct ipc_msg *reply = result_to_msg(&b->results[i], b->jobs[i].request.id);

	if (b->jobs[i].state == JOB_REDO)
		ipc_msg_add(reply, "redo", "yes");
	if (ipc_send(w->channel, reply, -1) < 0)
		fatal("cannot send a delivery result to the master");
	ipc_msg_free(reply);
}

/* Log B's deliveries, which are final now, and send every result. */
static void
finish_batch(struct mailbox_worker *w, struct mailbox_batch *b)
{
	for (size_t i = 0; i < b->count; i++)
		if (b->jobs[i].state == JOB_STAGED)
			log_delivery(&b->jobs[i].request, &b->results[i], b->jobs[i].request.recipient);

	for (size_t i = 0; i < b->count; i++) {
		send_result(w, b, i);
		ipc_msg_free(b->jobs[i].msg);
		b->jobs[i].msg = NULL;
	}
	b->count = 0;
}

/* Run the second barrier of the batch in new/ on its own and finish
 * it. This is for when no next batch's first barrier can serve as it. */
static void
finish_renamed(struct mailbox_worker *w)
{
	struct mailbox_batch *b = w->renamed;

	if (b == NULL)
		return;
	maildir_sync_dirs(b->files, b->results, b->count, w->use_syncfs);
	finish_batch(w, b);
	w->renamed = NULL;
}

/*
 * Deliver batch B. A batch that suits syncfs overlaps with the batch
 * before it, which is already renamed into new/. One syncfs is the
 * first barrier of B and the second barrier of that batch, whose results
 * go out next. Then B's files are renamed and wait for the next barrier.
 * Under a steady load this saves one syncfs per batch.
 */
static void
run_batch(struct mailbox_worker *w, struct mailbox_batch *b)
{
	struct mailbox_batch *earlier = w->renamed;
	int overlap;

	for (size_t i = 0; i < b->count; i++)
		job_start(w, b, i);
	overlap = w->use_syncfs && maildir_syncfs_suits(b->files, b->count);
	if (!overlap) {
		finish_renamed(w);
		maildir_commit(b->files, b->results, b->count, w->use_syncfs);
		finish_batch(w, b);
		return;
	}

	maildir_set_results(b->files, b->results, b->count);
	if (maildir_barrier(b->files, b->count, earlier != NULL ? earlier->files : NULL,
	    earlier != NULL ? earlier->count : 0) < 0) {
		/* Fall back on fsync, file by file and folder by folder. */
		maildir_sync_files(b->files, b->results, b->count, 0);
		if (earlier != NULL)
			maildir_sync_dirs(earlier->files, earlier->results, earlier->count, 0);
	}
	if (earlier != NULL)
		finish_batch(w, earlier);

	maildir_rename(b->files, b->results, b->count);
	w->renamed = b;
}

void
mailbox_worker_run(int channel, uid_t uid, gid_t gid, struct userdb_client *userdb)
{
	struct mailbox_worker *w = xcalloc(1, sizeof *w);

	w->channel = channel;
	w->uid = uid;
	w->gid = gid;
	w->use_syncfs = strcmp(config_string("maildir_sync_method"), "syncfs") == 0;
	w->userdb = userdb;
	w->users = userdb_cache_new(config_time("deliverd_userdb_cache_time"));

	/* Without a batch in new/, wait for requests. With one, take only the
	 * requests already there, or finish that batch if there are none. */
	while (!w->userdb_lost && !w->closed) {
		struct mailbox_batch *b = w->renamed == &w->batches[0] ? &w->batches[1] :
		    &w->batches[0];

		if (read_batch(w, b, w->renamed == NULL) == 0) {
			finish_renamed(w);
			continue;
		}
		run_batch(w, b);
	}
	finish_renamed(w);

	userdb_cache_free(w->users);
	userdb_client_free(w->userdb);
	free(w);
}
