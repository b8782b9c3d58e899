/*
 * A mailbox worker: a long-lived delivery process for one owner (uid,
 * gid, and for a system user that user's groups), started by the master
 * and fed DELIVER requests over its channel (see pool.c).
 *
 * It reads every request that has arrived, looks each user up in the
 * userdb, checks that the user still maps to its own uid and gid, and
 * writes the Maildir deliveries into tmp/. Then the whole batch shares
 * one barrier for the files and one for the renames into new/, and a
 * RESULT goes back for each request.
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

struct mailbox_worker {
	int channel;
	uid_t uid;
	gid_t gid;
	int use_syncfs;
	int userdb_lost;	/* cannot reconnect as this uid: stop after the batch */
	struct userdb_client *userdb;
	struct mailbox_job jobs[BATCH_MAX];
	struct maildir_file files[BATCH_MAX];
	struct delivery_result results[BATCH_MAX];
};

/* Read the requests waiting on the channel, blocking for the first.
 * Returns how many, 0 when the master closed the channel. */
static size_t
read_batch(struct mailbox_worker *w)
{
	struct pollfd pfd = { .fd = w->channel, .events = POLLIN };
	size_t count = 0;

	while (count < BATCH_MAX) {
		struct ipc_msg *msg;

		if (count > 0 && poll(&pfd, 1, 0) <= 0)
			break;
		msg = ipc_recv(w->channel);
		if (msg == NULL)
			break;
		memset(&w->jobs[count], 0, sizeof w->jobs[count]);
		w->jobs[count].msg = msg;
		count++;
	}
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
 * so one lookup serves all of its deliveries to that user. Returns as
 * userdb_lookup does. */
static int
lookup_user(struct mailbox_worker *w, size_t i, char *err, size_t errsize)
{
	struct mailbox_job *job = &w->jobs[i];
	int found;

	for (size_t j = 0; j < i; j++) {
		const struct mailbox_job *earlier = &w->jobs[j];

		if (earlier->user_found && strcmp(earlier->request.user, job->request.user) == 0) {
			job->user = earlier->user;
			job->user_found = 1;
			return 1;
		}
	}
	found = userdb_lookup(w->userdb, job->request.user, "lmtp", USERDB_TIMEOUT_MS, &job->user,
	    err, errsize);
	job->user_found = found == 1;
	return found;
}

/* Everything before the barrier for job I. */
static void
job_start(struct mailbox_worker *w, size_t i)
{
	struct mailbox_job *job = &w->jobs[i];
	struct delivery_result *result = &w->results[i];
	char err[256], path[PATH_MAX];
	struct stat st;
	int found;

	w->files[i].fd = -1;
	job->state = JOB_DONE;
	if (request_from_msg(&job->request, job->msg) < 0 || job->msg->fd < 0 ||
	    strcmp(job->request.kind, "mailbox") != 0 || fstat(job->msg->fd, &st) < 0) {
		job->request.id = (long)ipc_msg_get_int(job->msg, "id", -1);
		result_set(result, EX_TEMPFAIL, "4.3.0", "invalid delivery request");
		return;
	}

	/* The connection to the userdb was made as root; once it breaks, a
	 * new worker has to make the next one. */
	found = w->userdb_lost ? -1 : lookup_user(w, i, err, sizeof err);
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

	job->message.fd = job->msg->fd;
	job->message.size = st.st_size;
	job->message.sender = job->request.sender;
	if (job->request.forward &&
	    forward_deliver(&job->message, &job->request, &job->user, result))
		return;
	if (maildir_write(&job->message, path, mailbox_folder(&job->request),
	    job->request.recipient, &w->files[i], result) < 0) {
		log_delivery(&job->request, result, job->request.recipient);
		return;
	}
	job->state = JOB_STAGED;
}

static void
send_result(struct mailbox_worker *w, size_t i)
{
	struct ipc_msg *reply = result_to_msg(&w->results[i], w->jobs[i].request.id);

	if (w->jobs[i].state == JOB_REDO)
		ipc_msg_add(reply, "redo", "yes");
	if (ipc_send(w->channel, reply, -1) < 0)
		fatal("cannot send a delivery result to the master");
	ipc_msg_free(reply);
}

static void
run_batch(struct mailbox_worker *w, size_t count)
{
	for (size_t i = 0; i < count; i++)
		job_start(w, i);

	maildir_commit(w->files, w->results, count, w->use_syncfs);
	for (size_t i = 0; i < count; i++)
		if (w->jobs[i].state == JOB_STAGED)
			log_delivery(&w->jobs[i].request, &w->results[i], w->jobs[i].request.recipient);

	for (size_t i = 0; i < count; i++) {
		send_result(w, i);
		ipc_msg_free(w->jobs[i].msg);
		w->jobs[i].msg = NULL;
	}
}

void
mailbox_worker_run(int channel, uid_t uid, gid_t gid, struct userdb_client *userdb)
{
	struct mailbox_worker *w = xcalloc(1, sizeof *w);
	size_t count;

	w->channel = channel;
	w->uid = uid;
	w->gid = gid;
	w->use_syncfs = strcmp(config_string("maildir_sync_method"), "syncfs") == 0;
	w->userdb = userdb;

	while (!w->userdb_lost && (count = read_batch(w)) > 0)
		run_batch(w, count);

	userdb_client_free(w->userdb);
	free(w);
}
