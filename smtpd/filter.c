/*
 * The session's connection to filterd (lib/filter_proto.h): a MAIL
 * request after smtpd's own MAIL FROM checks, a MESSAGE request with
 * the spool file at the end of the data. One connection per session,
 * opened at the first request and kept for the next ones. The session
 * waits (paused) for each reply, at most smtpd_filter_timeout. When
 * filterd is down, busy, too slow or sends an invalid reply,
 * smtpd_filter_failure_policy decides what happens, and smtpd logs it:
 * tempfail replies 451 4.7.0, accept goes on without filtering.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "filter_client.h"
#include "filter_proto.h"
#include "filter_reply.h"
#include "ipc.h"
#include "log.h"
#include "smtpd.h"
#include "util.h"

/* Limits on what one RESULT may ask for, far above what the checks add. */

enum filter_request { FILTER_IDLE, FILTER_MAIL, FILTER_MESSAGE };

struct filter_client {
	struct ipc_conn *conn;
	struct ipc_conn *dropped;	/* shut down, freed by its last callback */
	struct event *timer;		/* the deadline, or a failure to report */
	char send_error[256];		/* why the request could not be sent */
	enum filter_request request;

	/* The MAIL command waiting for the verdict. */
	struct mailaddr sender;
	struct mail_params params;

	/* What the MAIL stage found, passed back at the MESSAGE stage. */
	char spf_result[16];
	char spf_domain[256];

	struct filter_verdict verdict;
};

static void filter_message_cb(struct ipc_conn *conn, struct ipc_msg *msg, void *arg);

int
filter_enabled(void)
{
	return config_bool("smtpd_filter");
}

static const char *
filter_log_id(const struct session *s)
{
	return s->tx.queue_id[0] != '\0' ? s->tx.queue_id : "NOQUEUE";
}

static struct filter_client *
filter_client_get(struct session *s)
{
	if (s->filter == NULL) {
		s->filter = xcalloc(1, sizeof *s->filter);
		s->filter->timer = evtimer_new(s->server->base, NULL, NULL);
	}
	return s->filter;
}

/*
 * Drop the connection. It may be the one whose callback is running, so
 * it is only shut down here, and freed by its final callback (or by
 * filter_close). A late reply on it can then not be taken for the reply
 * to a later request.
 */
static void
filter_drop(struct filter_client *client)
{
	if (client->conn == NULL)
		return;
	if (client->dropped != NULL)
		ipc_conn_free(client->dropped);
	ipc_conn_shutdown(client->conn);
	client->dropped = client->conn;
	client->conn = NULL;
}

static void
verdict_reset(struct filter_verdict *verdict)
{
	header_edits_clear(&verdict->edits);
	memset(verdict, 0, sizeof *verdict);
}

/* Hand the verdict of the request in flight to the stage that waits for it. */
static void
filter_finish(struct session *s)
{
	struct filter_client *client = s->filter;
	enum filter_request request = client->request;

	event_del(client->timer);
	client->request = FILTER_IDLE;
	if (request == FILTER_MAIL)
		mail_filter_done(s, &client->sender, &client->params, &client->verdict);
	else if (request == FILTER_MESSAGE)
		data_filter_done(s, &client->verdict);
}

/* filterd could not give a verdict: apply smtpd_filter_failure_policy. */
static void
filter_failed(struct session *s, const char *error)
{
	struct filter_verdict *verdict = &s->filter->verdict;

	verdict_reset(verdict);
	if (strcmp(config_string("smtpd_filter_failure_policy"), "accept") == 0) {
		log_warn("%s: filterd unavailable: %s; going on without filtering (smtpd_filter_failure_policy accept)",
		    filter_log_id(s), error);
		verdict->unfiltered = 1;
	} else {
		log_warn("%s: filterd unavailable: %s; replying 451 (smtpd_filter_failure_policy tempfail)",
		    filter_log_id(s), error);
		verdict->action = VERDICT_TEMPFAIL;
		strlcpy_x(verdict->reply, "451 4.7.0 Error: mail filter unavailable, try again later",
		    sizeof verdict->reply);
	}
	filter_finish(s);
}

static void
filter_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct filter_client *client = s->filter;
	char error[256];

	if (client->send_error[0] != '\0') {
		strlcpy_x(error, client->send_error, sizeof error);
		client->send_error[0] = '\0';
	} else {
		snprintf(error, sizeof error, "no reply within %llds",
		    config_time("smtpd_filter_timeout"));
	}
	filter_drop(client);
	filter_failed(s, error);
}

/*
 * Send MSG (with FD, or -1) as REQUEST, pause the session and start the
 * deadline. When the request cannot be sent, the failure is reported
 * from the event loop, as a reply would be, so that the caller's
 * command has returned before the session goes on.
 */
static void
filter_send(struct session *s, struct ipc_msg *msg, int fd, enum filter_request request)
{
	struct filter_client *client = filter_client_get(s);
	struct timeval tv = { .tv_sec = (time_t)config_time("smtpd_filter_timeout") };
	const char *path = config_string("filterd_socket");

	client->request = request;
	event_assign(client->timer, s->server->base, -1, 0, filter_timeout_cb, s);
	session_pause(s);

	if (client->conn == NULL) {
		int sock = ipc_connect_nowait(path);

		if (sock < 0) {
			snprintf(client->send_error, sizeof client->send_error,
			    "cannot connect to %s: %s", path, strerror(errno));
			event_active(client->timer, EV_TIMEOUT, 1);
			return;
		}
		client->conn = ipc_conn_new(s->server->base, sock, filter_message_cb, s);
	}
	if (ipc_conn_send(client->conn, msg, fd) < 0) {
		snprintf(client->send_error, sizeof client->send_error, "cannot send %s: %s",
		    msg->type, strerror(errno));
		event_active(client->timer, EV_TIMEOUT, 1);
		return;
	}
	evtimer_add(client->timer, &tv);
}

/* The client and envelope fields that both requests carry. */
static void
filter_add_client(const struct session *s, struct ipc_msg *msg, const struct mailaddr *sender)
{
	char formatted[ADDR_MAX * 4 + 8];

	ipc_msg_add(msg, FILTER_KEY_CLIENT_ADDR, s->ip);
	ipc_msg_add(msg, FILTER_KEY_CLIENT_NAME, s->name);
	ipc_msg_add(msg, FILTER_KEY_HELO, s->helo);
	ipc_msg_add(msg, FILTER_KEY_SENDER, addr_format(sender, formatted, sizeof formatted));
	if (session_auth_user(s) != NULL)
		ipc_msg_add(msg, FILTER_KEY_AUTH_USER, s->auth.user);
	ipc_msg_add(msg, FILTER_KEY_MYNETWORKS, s->in_mynetworks ? "1" : "0");
}

void
filter_mail(struct session *s, const struct mailaddr *sender, const struct mail_params *params)
{
	struct filter_client *client = filter_client_get(s);
	struct ipc_msg *msg = ipc_msg_new(FILTER_REQUEST_MAIL);

	client->sender = *sender;
	client->params = *params;
	client->spf_result[0] = '\0';
	client->spf_domain[0] = '\0';
	verdict_reset(&client->verdict);

	filter_add_client(s, msg, sender);
	filter_send(s, msg, -1, FILTER_MAIL);
	ipc_msg_free(msg);
}

void
filter_message(struct session *s, int reader_fd)
{
	const struct transaction *tx = &s->tx;
	struct filter_client *client = filter_client_get(s);
	struct ipc_msg *msg = ipc_msg_new(FILTER_REQUEST_MESSAGE);

	verdict_reset(&client->verdict);
	filter_add_client(s, msg, &tx->sender);
	ipc_msg_add(msg, FILTER_KEY_QUEUE_ID, tx->queue_id);
	for (size_t i = 0; i < tx->nrecipients; i++)
		ipc_msg_add(msg, FILTER_KEY_RCPT, tx->recipients[i]);
	ipc_msg_addf(msg, FILTER_KEY_SIZE, "%lld", tx->spool_bytes);
	if (client->spf_result[0] != '\0') {
		ipc_msg_add(msg, FILTER_KEY_SPF_RESULT, client->spf_result);
		ipc_msg_add(msg, FILTER_KEY_SPF_DOMAIN, client->spf_domain);
	}
	/* A descriptor of its own, so that neither filterd nor clamd (with
	 * FILDES) can write to the file or move smtpd's file offset. */
	filter_send(s, msg, reader_fd, FILTER_MESSAGE);
	ipc_msg_free(msg);
}

void
filter_close(struct session *s)
{
	if (s->filter == NULL)
		return;
	ipc_conn_free(s->filter->conn);
	ipc_conn_free(s->filter->dropped);
	event_free(s->filter->timer);
	verdict_reset(&s->filter->verdict);
	free(s->filter);
	s->filter = NULL;
}

static int
parse_action(const char *word, enum filter_verdict_action *action)
{
	static const struct {
		const char *word;
		enum filter_verdict_action action;
	} actions[] = {
		{ FILTER_ACTION_ACCEPT, VERDICT_ACCEPT },
		{ FILTER_ACTION_QUARANTINE, VERDICT_QUARANTINE },
		{ FILTER_ACTION_DISCARD, VERDICT_DISCARD },
		{ FILTER_ACTION_TEMPFAIL, VERDICT_TEMPFAIL },
		{ FILTER_ACTION_REJECT, VERDICT_REJECT },
	};

	for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
		if (word != NULL && strcmp(word, actions[i].word) == 0) {
			*action = actions[i].action;
			return 0;
		}
	return -1;
}

/* Fill the verdict from a RESULT; returns NULL, or what is wrong with it. */
static const char *
parse_result(struct session *s, const struct ipc_msg *msg)
{
	struct filter_client *client = s->filter;
	struct filter_verdict *verdict = &client->verdict;
	const char *reply = ipc_msg_get(msg, FILTER_KEY_REPLY);
	const char *reason = ipc_msg_get(msg, FILTER_KEY_REASON);
	const char *spf = ipc_msg_get(msg, FILTER_KEY_SPF_RESULT);
	const char *error;

	if (parse_action(ipc_msg_get(msg, FILTER_KEY_ACTION), &verdict->action) < 0)
		return "missing or unknown action";
	if (verdict->action == VERDICT_REJECT || verdict->action == VERDICT_TEMPFAIL) {
		if (!filter_reply_valid(reply, verdict->action == VERDICT_REJECT))
			return "reject or tempfail without a valid SMTP reply";
		strlcpy_x(verdict->reply, reply, sizeof verdict->reply);
	}
	strlcpy_x(verdict->reason, reason != NULL ? reason : "", sizeof verdict->reason);

	if ((error = filter_reply_edits(msg, &verdict->edits)) != NULL)
		return error;

	if (client->request == FILTER_MAIL && spf != NULL) {
		const char *domain = ipc_msg_get(msg, FILTER_KEY_SPF_DOMAIN);

		strlcpy_x(client->spf_result, spf, sizeof client->spf_result);
		strlcpy_x(client->spf_domain, domain != NULL ? domain : "", sizeof client->spf_domain);
	}
	return NULL;
}

static void
filter_handle_reply(struct session *s, struct ipc_msg *msg)
{
	const char *error = ipc_msg_get(msg, FILTER_KEY_ERROR);
	const char *invalid;
	char text[512];

	if (s->filter->request == FILTER_IDLE) {
		log_warn("unexpected %s from filterd with no request in flight; dropping the connection",
		    msg->type);
		filter_drop(s->filter);
		return;
	}

	if (strcmp(msg->type, FILTER_REPLY_RESULT) != 0) {
		snprintf(text, sizeof text, "%s %s", msg->type, error != NULL ? error : "");
		filter_drop(s->filter);
		filter_failed(s, text);
		return;
	}

	invalid = parse_result(s, msg);
	if (invalid != NULL) {
		snprintf(text, sizeof text, "invalid reply: %s", invalid);
		filter_drop(s->filter);
		filter_failed(s, text);
		return;
	}
	filter_finish(s);
}

static void
filter_message_cb(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct session *s = arg;

	if (msg == NULL) {
		/* The connection failed, filterd closed it, or filter_drop shut
		 * it down: free it here, as ipc.h requires. */
		ipc_conn_free(conn);
		if (conn == s->filter->dropped) {
			s->filter->dropped = NULL;
			return;
		}
		s->filter->conn = NULL;
		if (s->filter->request != FILTER_IDLE)
			filter_failed(s, "lost the connection");
		return;
	}
	if (conn != s->filter->conn) {
		ipc_msg_free(msg);
		return;
	}
	filter_handle_reply(s, msg);
	ipc_msg_free(msg);
}
