/*
 * filterd's MESSAGE stage for local submissions (see local_filter.h).
 * One connection per message: connect, send MESSAGE with the data file,
 * wait for one RESULT at most smtpd_filter_timeout. When filterd is
 * down, busy, too slow or replies with something invalid,
 * smtpd_filter_failure_policy applies as it does in smtpd.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "envelope.h"
#include "filter_proto.h"
#include "filter_reply.h"
#include "header_edit.h"
#include "ipc.h"
#include "local_filter.h"
#include "log.h"
#include "privsep.h"
#include "queued.h"
#include "spool.h"
#include "util.h"

#define UNAVAILABLE_REPLY "451 4.7.0 Error: mail filter unavailable, try again later"

struct local_filter {
	struct envelope *env;
	int data_fd;
	struct ipc_conn *conn;		/* NULL before connecting and once freed */
	struct event *timer;		/* the deadline, or a failure to report */
	char send_error[256];		/* why the request could not be sent */
	int finished;			/* DONE has run */
	local_filter_done_cb done;
	void *arg;
};

void
local_filter_keep_group(void)
{
	const char *group = config_string("filterd_socket_group");
	uid_t uid;
	gid_t gid;

	if (!privsep_is_root() || !config_bool("local_filter"))
		return;
	/* With the default mode every uid may connect, and filterd checks
	 * the peer's. A group would also open every other socket it owns:
	 * smtpd_user's owns authd's. */
	if (config_mode("filterd_socket_mode") & S_IWOTH)
		return;

	if (group[0] != '\0') {
		struct group *entry = getgrnam(group);

		if (entry == NULL) {
			log_warn("filterd_socket_group %s not found; local submissions cannot reach filterd",
			    group);
			return;
		}
		gid = entry->gr_gid;
	} else if (privsep_lookup(config_string("smtpd_user"), &uid, &gid) < 0) {
		log_warn("smtpd_user %s not found; local submissions cannot reach filterd",
		    config_string("smtpd_user"));
		return;
	}
	privsep_keep_group(gid);
}

int
local_filter_wanted(const struct ipc_msg *request, uid_t uid)
{
	if (!config_bool("local_filter"))
		return 0;
	if (uid != 0 && uid != queued_settings.smtpd_uid)
		return 1;
	return ipc_msg_get(request, "client_addr") == NULL &&
	    ipc_msg_get(request, "submitter") != NULL;
}

/* Free FILTER once DONE has run and its connection is gone. */
static void
local_filter_free_if_idle(struct local_filter *filter)
{
	if (!filter->finished || filter->conn != NULL)
		return;
	event_free(filter->timer);
	free(filter);
}

/* Hand VERDICT to the caller and shut the connection down. Its final
 * callback frees it, as ipc.h requires. */
static void
local_filter_finish(struct local_filter *filter, const struct local_filter_verdict *verdict)
{
	event_del(filter->timer);
	filter->finished = 1;
	filter->done(verdict, filter->arg);
	if (filter->conn != NULL)
		ipc_conn_shutdown(filter->conn);
	local_filter_free_if_idle(filter);
}

/* Apply smtpd_filter_failure_policy because filterd gave no verdict. */
static void
local_filter_failed(struct local_filter *filter, const char *error)
{
	struct local_filter_verdict verdict = { .action = LOCAL_FILTER_TEMPFAIL };

	if (strcmp(config_string("smtpd_filter_failure_policy"), "accept") == 0) {
		log_warn("%s: filterd unavailable: %s; committing without filtering (smtpd_filter_failure_policy accept)",
		    filter->env->id, error);
		verdict.action = LOCAL_FILTER_COMMIT;
	} else {
		log_warn("%s: filterd unavailable: %s; failing the commit (smtpd_filter_failure_policy tempfail)",
		    filter->env->id, error);
		strlcpy_x(verdict.reply, UNAVAILABLE_REPLY, sizeof verdict.reply);
	}
	local_filter_finish(filter, &verdict);
}

static void
local_filter_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct local_filter *filter = arg;
	char error[256];

	if (filter->send_error[0] != '\0')
		strlcpy_x(error, filter->send_error, sizeof error);
	else
		snprintf(error, sizeof error, "no reply within %llds",
		    config_time("smtpd_filter_timeout"));
	local_filter_failed(filter, error);
}

static int
parse_action(const char *word, enum local_filter_action *action)
{
	static const struct {
		const char *word;
		enum local_filter_action action;
	} actions[] = {
		{ FILTER_ACTION_ACCEPT, LOCAL_FILTER_COMMIT },
		{ FILTER_ACTION_QUARANTINE, LOCAL_FILTER_QUARANTINE },
		{ FILTER_ACTION_DISCARD, LOCAL_FILTER_DISCARD },
		{ FILTER_ACTION_TEMPFAIL, LOCAL_FILTER_TEMPFAIL },
		{ FILTER_ACTION_REJECT, LOCAL_FILTER_REJECT },
	};

	for (size_t i = 0; word != NULL && i < sizeof actions / sizeof actions[0]; i++) {
		if (strcmp(word, actions[i].word) == 0) {
			*action = actions[i].action;
			return 0;
		}
	}
	return -1;
}

/* Parse a RESULT into VERDICT and EDITS. Return NULL, or a description
 * of what is invalid in it. */
static const char *
parse_result(const struct ipc_msg *msg, struct local_filter_verdict *verdict,
    struct header_edits *edits)
{
	const char *reply = ipc_msg_get(msg, FILTER_KEY_REPLY);

	if (parse_action(ipc_msg_get(msg, FILTER_KEY_ACTION), &verdict->action) < 0)
		return "missing or unknown action";
	if (verdict->action == LOCAL_FILTER_REJECT || verdict->action == LOCAL_FILTER_TEMPFAIL) {
		if (!filter_reply_valid(reply, verdict->action == LOCAL_FILTER_REJECT))
			return "reject or tempfail without a valid SMTP reply";
		strlcpy_x(verdict->reply, reply, sizeof verdict->reply);
	}
	return filter_reply_edits(msg, edits);
}

/*
 * Apply EDITS to the data file of a message that will be committed. On
 * failure, turn VERDICT into a reject when a retry would fail the same
 * way, or else into a tempfail, and log the error.
 */
static void
apply_edits(struct local_filter *filter, const struct header_edits *edits,
    struct local_filter_verdict *verdict)
{
	off_t new_size;
	char err[256];
	int rc;

	if (edits->nfields == 0 && edits->nremovals == 0 && edits->subject_prefix[0] == '\0')
		return;

	/* NOTE: this rewrites the file on the event loop, moving the body
	 * once when fields are inserted, as smtpd does on its own loop. */
	rc = header_edit_apply(filter->data_fd, (off_t)filter->env->size, edits, &new_size, err,
	    sizeof err);
	if (rc == HEADER_EDIT_TOO_LARGE) {
		log_warn("%s: cannot apply filterd's header edits: %s", filter->env->id, err);
		verdict->action = LOCAL_FILTER_REJECT;
		strlcpy_x(verdict->reply, "552 5.3.4 Error: message header section too large",
		    sizeof verdict->reply);
		return;
	}
	if (rc < 0) {
		log_error("%s: applying filterd's header edits failed: %s", filter->env->id, err);
		verdict->action = LOCAL_FILTER_TEMPFAIL;
		strlcpy_x(verdict->reply, "451 4.3.0 Error: queue file write error",
		    sizeof verdict->reply);
		return;
	}
	filter->env->size = (long long)new_size;
}

static void
handle_result(struct local_filter *filter, const struct ipc_msg *msg)
{
	struct local_filter_verdict verdict = { .action = LOCAL_FILTER_TEMPFAIL };
	struct header_edits edits = { 0 };
	const char *reason = ipc_msg_get(msg, FILTER_KEY_REASON);
	const char *fields = ipc_msg_get(msg, FILTER_KEY_LOG);
	const char *invalid = NULL;
	char text[512];

	if (strcmp(msg->type, FILTER_REPLY_RESULT) != 0) {
		const char *error = ipc_msg_get(msg, FILTER_KEY_ERROR);

		snprintf(text, sizeof text, "%s %s", msg->type, error != NULL ? error : "");
		local_filter_failed(filter, text);
		return;
	}
	invalid = parse_result(msg, &verdict, &edits);
	if (invalid != NULL) {
		header_edits_clear(&edits);
		snprintf(text, sizeof text, "invalid reply: %s", invalid);
		local_filter_failed(filter, text);
		return;
	}

	/* The log fields of the checks contain the reason when there are any. */
	if (fields != NULL && fields[0] != '\0')
		log_info("%s: filterd action=%s, %s", filter->env->id,
		    ipc_msg_get(msg, FILTER_KEY_ACTION), fields);
	else
		log_info("%s: filterd action=%s, reason=%s", filter->env->id,
		    ipc_msg_get(msg, FILTER_KEY_ACTION), reason != NULL ? reason : "none");

	if (verdict.action == LOCAL_FILTER_COMMIT || verdict.action == LOCAL_FILTER_QUARANTINE)
		apply_edits(filter, &edits, &verdict);
	header_edits_clear(&edits);
	local_filter_finish(filter, &verdict);
}

static void
local_filter_message_cb(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct local_filter *filter = arg;

	if (msg == NULL) {
		/* filterd closed the connection, it failed, or finish shut
		 * it down: free it here, as ipc.h requires. */
		ipc_conn_free(conn);
		filter->conn = NULL;
		if (!filter->finished)
			local_filter_failed(filter, "lost the connection");
		else
			local_filter_free_if_idle(filter);
		return;
	}
	if (!filter->finished)
		handle_result(filter, msg);
	ipc_msg_free(msg);
}

/* Build the MESSAGE request of a local submission by LOGIN. */
static struct ipc_msg *
build_request(const struct envelope *env, const char *login)
{
	struct ipc_msg *msg = ipc_msg_new(FILTER_REQUEST_MESSAGE);

	ipc_msg_add(msg, FILTER_KEY_CLIENT_ADDR, "127.0.0.1");
	ipc_msg_add(msg, FILTER_KEY_CLIENT_NAME, "localhost");
	ipc_msg_add(msg, FILTER_KEY_HELO, "localhost");
	ipc_msg_add(msg, FILTER_KEY_SENDER, env->sender);
	ipc_msg_add(msg, FILTER_KEY_AUTH_USER, login);
	ipc_msg_add(msg, FILTER_KEY_MYNETWORKS, "1");
	if (envelope_attr(env, "forward") != NULL)
		ipc_msg_add(msg, FILTER_KEY_FORWARD, "1");
	ipc_msg_add(msg, FILTER_KEY_QUEUE_ID, env->id);
	for (size_t i = 0; i < env->nrcpts; i++)
		ipc_msg_add(msg, FILTER_KEY_RCPT, env->rcpts[i].address);
	ipc_msg_addf(msg, FILTER_KEY_SIZE, "%lld", env->size);
	return msg;
}

void
local_filter_start(struct envelope *env, int data_fd, const char *login,
    local_filter_done_cb done, void *arg)
{
	struct local_filter *filter = xcalloc(1, sizeof *filter);
	struct timeval tv = { .tv_sec = (time_t)config_time("smtpd_filter_timeout") };
	const char *path = config_string("filterd_socket");
	struct ipc_msg *msg;
	int sock, reader;

	filter->env = env;
	filter->data_fd = data_fd;
	filter->done = done;
	filter->arg = arg;
	filter->timer = evtimer_new(queued_base, local_filter_timeout_cb, filter);

	/* A failure to send is reported from the event loop, as a reply
	 * would be, so DONE never runs inside this call. */
	sock = ipc_connect_nowait(path);
	if (sock < 0) {
		snprintf(filter->send_error, sizeof filter->send_error, "cannot connect to %s: %s",
		    path, strerror(errno));
		event_active(filter->timer, EV_TIMEOUT, 1);
		return;
	}
	filter->conn = ipc_conn_new(queued_base, sock, local_filter_message_cb, filter);

	/* filterd, and clamd with clamd_use_fildes, get a read-only
	 * descriptor of their own, so they cannot write to the file. */
	reader = spool_open_data(&queued_spool, env);
	if (reader < 0) {
		snprintf(filter->send_error, sizeof filter->send_error,
		    "cannot open the data file for reading: %s", strerror(errno));
		event_active(filter->timer, EV_TIMEOUT, 1);
		return;
	}

	msg = build_request(env, login);
	if (ipc_conn_send(filter->conn, msg, reader) < 0) {
		snprintf(filter->send_error, sizeof filter->send_error, "cannot send %s: %s",
		    msg->type, strerror(errno));
		event_active(filter->timer, EV_TIMEOUT, 1);
	} else {
		evtimer_add(filter->timer, &tv);
	}
	ipc_msg_free(msg);
	close(reader);
}
