/*
 * The session's connection to queued (lib/queue_proto.h): NEW for a
 * spool file, COMMIT at the end of the message, ABORT when the
 * transaction is dropped. One connection per session, opened at the
 * first message and kept for the next ones; every request has a
 * deadline of smtpd_queue_timeout.
 *
 * After each commit the session requests the next message's spool file
 * at once (NEW ahead), while the client reads the 250 and sends its next
 * MAIL and RCPT. So DATA of a session's later messages usually finds a
 * file ready, without a round trip to queued. queued removes a file
 * still unused when the session closes its connection.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "smtpd.h"
#include "util.h"

static void queue_client_message_cb(struct ipc_conn *conn, struct ipc_msg *msg, void *arg);

static void
queue_client_stop_timer(struct session *s)
{
	if (s->queue_timer != NULL)
		event_del(s->queue_timer);
}

/* Finish the request in flight with ERROR (NULL: success) and resume the session. */
static void
queue_client_fail(struct session *s, const char *error)
{
	enum queue_request request = s->queue_request;

	queue_client_stop_timer(s);
	s->queue_request = QUEUE_IDLE;
	if (request == QUEUE_COMMIT) {
		data_commit_done(s, error);
	} else if (request == QUEUE_NEW_AHEAD) {
		/* No reply will come for it, so its slot is given back here. */
		s->server->ahead_files--;
		log_debug("no spool file ahead: %s", error);
	} else if (request == QUEUE_READER) {
		data_reader_ready(s, -1, error);
	} else if (request != QUEUE_IDLE) {
		data_queue_file_ready(s, request, -1, NULL, error);
	}
}

static void
queue_client_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	log_warn("%s: queued did not reply within %llds; dropping the connection to it",
	    s->tx.queue_id[0] != '\0' ? s->tx.queue_id : "NOQUEUE",
	    s->server->settings.queue_timeout);
	queue_client_close(s);
	queue_client_fail(s, "queued timed out");
}

static int
queue_client_connect(struct session *s)
{
	int sock;

	if (s->queue != NULL)
		return 0;
	sock = ipc_connect_nowait(s->server->settings.queued_socket);
	if (sock < 0) {
		log_warn("cannot connect to queued at %s: %s", s->server->settings.queued_socket,
		    strerror(errno));
		return -1;
	}
	s->queue = ipc_conn_new(s->server->base, sock, queue_client_message_cb, s);
	return 0;
}

/* Send MSG as request REQUEST and start its deadline. */
static int
queue_client_send(struct session *s, struct ipc_msg *msg, enum queue_request request)
{
	struct timeval tv = { .tv_sec = (time_t)s->server->settings.queue_timeout };
	int rc;

	if (queue_client_connect(s) < 0)
		return -1;
	rc = ipc_conn_send(s->queue, msg, -1);
	if (rc < 0) {
		log_warn("cannot send %s to queued: %s", msg->type, strerror(errno));
		return -1;
	}
	s->queue_request = request;
	if (s->queue_timer == NULL)
		s->queue_timer = evtimer_new(s->server->base, queue_client_timeout_cb, s);
	evtimer_add(s->queue_timer, &tv);
	return 0;
}

int
queue_client_new(struct session *s, enum queue_request request)
{
	struct ipc_msg *msg = ipc_msg_new("NEW");
	int rc = queue_client_send(s, msg, request);

	ipc_msg_free(msg);
	return rc;
}

/* NOTE: a session that sends one message and quits (the usual MX
 * session) still gets a file ahead, which queued creates and removes
 * for nothing. Requesting one only from the second message on would
 * avoid that. */
void
queue_client_new_ahead(struct session *s)
{
	if (s->queue == NULL || s->queue_request != QUEUE_IDLE || s->ahead_fd >= 0 ||
	    s->server->ahead_files >= SMTPD_AHEAD_FILES_MAX)
		return;
	if (queue_client_new(s, QUEUE_NEW_AHEAD) == 0)
		s->server->ahead_files++;
}

int
queue_client_take_ahead(struct session *s, enum queue_request request, int *fd,
    char id[QUEUE_ID_MAX], int *pending)
{
	*pending = 0;
	if (s->queue_request == QUEUE_NEW_AHEAD) {
		s->queue_request = request;
		s->server->ahead_files--;
		*pending = 1;
		return 0;
	}
	if (s->ahead_fd < 0)
		return 0;

	*fd = s->ahead_fd;
	strlcpy_x(id, s->ahead_id, QUEUE_ID_MAX);
	s->ahead_fd = -1;
	s->ahead_id[0] = '\0';
	s->server->ahead_files--;
	return 1;
}

/* Forget the file asked for ahead, in flight or not. */
static void
queue_client_drop_ahead(struct session *s)
{
	if (s->queue_request == QUEUE_NEW_AHEAD) {
		s->queue_request = QUEUE_IDLE;
		s->server->ahead_files--;
	}
	if (s->ahead_fd >= 0) {
		close(s->ahead_fd);
		s->ahead_fd = -1;
		s->ahead_id[0] = '\0';
		s->server->ahead_files--;
	}
}

/* The DSN parameters of one recipient, right after its rcpt field. */
static void
queue_client_add_rcpt_dsn(struct ipc_msg *msg, const struct rcpt_params *params)
{
	char notify[64];

	if (params->orcpt[0] != '\0')
		ipc_msg_add(msg, "orcpt", params->orcpt);
	dsn_notify_format(params->notify, notify, sizeof notify);
	if (notify[0] != '\0')
		ipc_msg_add(msg, "notify", notify);
}

/* The DSN and REQUIRETLS parameters of MAIL, and a "TLS-Required: No"
 * header field, which REQUIRETLS overrides (RFC 8689). */
static void
queue_client_add_mail_dsn(const struct session *s, struct ipc_msg *msg)
{
	const struct transaction *tx = &s->tx;

	if (tx->ret != DSN_RET_DEFAULT)
		ipc_msg_add(msg, "ret", tx->ret == DSN_RET_FULL ? "FULL" : "HDRS");
	if (tx->envid[0] != '\0')
		ipc_msg_add(msg, "envid", tx->envid);
	if (tx->requiretls)
		ipc_msg_add(msg, "requiretls", "1");
	else if (tx->tls_required_no)
		ipc_msg_add(msg, "tls_required", "no");
}

static void
queue_client_add_envelope(const struct session *s, struct ipc_msg *msg)
{
	static const char *const body_names[] = { "7BIT", "8BITMIME", "BINARYMIME" };
	const struct transaction *tx = &s->tx;
	char sender[ADDR_MAX * 4 + 8];

	ipc_msg_add(msg, "id", tx->queue_id);
	ipc_msg_add(msg, "sender", addr_format(&tx->sender, sender, sizeof sender));
	for (size_t i = 0; i < tx->nrecipients; i++) {
		ipc_msg_add(msg, "rcpt", tx->recipients[i]);
		queue_client_add_rcpt_dsn(msg, &tx->rcpt_params[i]);
	}
	ipc_msg_addf(msg, "size", "%lld", tx->spool_bytes);
	ipc_msg_add(msg, "client_addr", s->ip);
	ipc_msg_add(msg, "client_name", s->name);
	ipc_msg_add(msg, "helo", s->helo);
	ipc_msg_add(msg, "protocol", s->esmtp ? "ESMTP" : "SMTP");
	ipc_msg_add(msg, "body", body_names[tx->body]);
	if (tx->smtputf8)
		ipc_msg_add(msg, "smtputf8", "yes");
	if (s->auth.user[0] != '\0')
		ipc_msg_add(msg, "sasl_user", s->auth.user);
	if (tx->quarantine)
		ipc_msg_add(msg, "quarantine", "1");
	queue_client_add_mail_dsn(s, msg);
}

int
queue_client_commit(struct session *s)
{
	struct ipc_msg *msg = ipc_msg_new("COMMIT");
	int rc;

	queue_client_add_envelope(s, msg);
	rc = queue_client_send(s, msg, QUEUE_COMMIT);
	ipc_msg_free(msg);
	return rc;
}

int
queue_client_reader(struct session *s)
{
	struct ipc_msg *msg;
	int rc;

	if (s->queue_request != QUEUE_IDLE) {
		log_warn("%s: cannot ask queued for a read-only descriptor with a request in flight",
		    s->tx.queue_id);
		return -1;
	}
	msg = ipc_msg_new("READER");
	ipc_msg_add(msg, "id", s->tx.queue_id);
	rc = queue_client_send(s, msg, QUEUE_READER);
	ipc_msg_free(msg);
	return rc;
}

/* Drop the spool file of the current transaction; queued sends no reply. */
void
queue_client_abort(struct session *s)
{
	struct ipc_msg *msg;

	if (s->queue == NULL || s->tx.queue_id[0] == '\0')
		return;
	msg = ipc_msg_new("ABORT");
	ipc_msg_add(msg, "id", s->tx.queue_id);
	if (ipc_conn_send(s->queue, msg, -1) < 0)
		log_warn("%s: cannot send ABORT to queued: %s", s->tx.queue_id, strerror(errno));
	else
		log_info("%s: aborted", s->tx.queue_id);
	ipc_msg_free(msg);
}

/* Close the connection; queued removes every file that was not committed. */
void
queue_client_close(struct session *s)
{
	queue_client_drop_ahead(s);
	queue_client_stop_timer(s);
	if (s->queue != NULL) {
		ipc_conn_free(s->queue);
		s->queue = NULL;
	}
	if (s->queue_timer != NULL) {
		event_free(s->queue_timer);
		s->queue_timer = NULL;
	}
}

static void
queue_client_handle_reply(struct session *s, struct ipc_msg *msg)
{
	const char *id = ipc_msg_get(msg, "id");
	const char *reason = ipc_msg_get(msg, "reason");
	enum queue_request request = s->queue_request;

	if (request == QUEUE_NEW_AHEAD) {
		queue_client_stop_timer(s);
		s->queue_request = QUEUE_IDLE;
		if (strcmp(msg->type, "NEW-OK") == 0 && id != NULL && *id != '\0' &&
		    strlen(id) < QUEUE_ID_MAX && msg->fd >= 0) {
			s->ahead_fd = ipc_msg_take_fd(msg);
			strlcpy_x(s->ahead_id, id, sizeof s->ahead_id);
			return;
		}
		s->server->ahead_files--;
		log_debug("no spool file ahead: %s %s", msg->type, reason != NULL ? reason : "");
		return;
	}

	if (request == QUEUE_NEW_FOR_DATA || request == QUEUE_NEW_FOR_BDAT) {
		if (strcmp(msg->type, "NEW-OK") == 0 && id != NULL && *id != '\0' &&
		    strlen(id) <= QUEUE_ID_MAX && msg->fd >= 0) {
			queue_client_stop_timer(s);
			s->queue_request = QUEUE_IDLE;
			data_queue_file_ready(s, request, ipc_msg_take_fd(msg), id, NULL);
			return;
		}
		log_warn("queued could not create a message: %s %s", msg->type,
		    reason != NULL ? reason : "");
		queue_client_fail(s, reason != NULL ? reason : "unexpected reply from queued");
		return;
	}

	if (request == QUEUE_COMMIT) {
		if (strcmp(msg->type, "COMMIT-OK") == 0) {
			queue_client_stop_timer(s);
			s->queue_request = QUEUE_IDLE;
			data_commit_done(s, NULL);
			return;
		}
		log_warn("%s: queued could not commit the message: %s %s", s->tx.queue_id,
		    msg->type, reason != NULL ? reason : "");
		queue_client_fail(s, reason != NULL ? reason : "unexpected reply from queued");
		return;
	}

	if (request == QUEUE_READER) {
		if (strcmp(msg->type, "READER-OK") == 0 && msg->fd >= 0) {
			queue_client_stop_timer(s);
			s->queue_request = QUEUE_IDLE;
			data_reader_ready(s, ipc_msg_take_fd(msg), NULL);
			return;
		}
		log_warn("%s: queued gave no read-only descriptor: %s %s", s->tx.queue_id,
		    msg->type, reason != NULL ? reason : "");
		queue_client_fail(s, reason != NULL ? reason : "unexpected reply from queued");
		return;
	}

	log_warn("unexpected %s from queued with no request in flight; dropping the connection",
	    msg->type);
	ipc_conn_shutdown(s->queue);
}

static void
queue_client_message_cb(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct session *s = arg;

	if (msg == NULL) {
		/* The connection failed or queued closed it: free it here, as ipc.h requires. */
		ipc_conn_free(conn);
		s->queue = NULL;
		if (s->queue_request != QUEUE_IDLE) {
			log_warn("%s: lost the connection to queued",
			    s->tx.queue_id[0] != '\0' ? s->tx.queue_id : "NOQUEUE");
			queue_client_fail(s, "lost the connection to queued");
		}
		return;
	}
	queue_client_handle_reply(s, msg);
	ipc_msg_free(msg);
}
