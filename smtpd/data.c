/*
 * DATA and BDAT: message content into the spool file that queued
 * created, then COMMIT. The reply 250 goes out only after queued has
 * made the message durable (COMMIT-OK).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "filter_client.h"
#include "hopcount.h"
#include "log.h"
#include "smtpd.h"
#include "util.h"

/* Input bytes decoded per step; the output needs one byte more. */
#define DECODE_STEP 16384

static char decode_output[DECODE_STEP + 1];

/* Write the buffered content to the spool file. */
static void
spool_flush(struct session *s)
{
	struct transaction *tx = &s->tx;

	while (!tx->write_failed && evbuffer_get_length(tx->spool_buffer) > 0) {
		if (evbuffer_write(tx->spool_buffer, tx->spool_fd) < 0) {
			if (errno == EINTR)
				continue;
			log_error("%s: write to the queue file failed: %s", tx->queue_id,
			    strerror(errno));
			tx->write_failed = 1;
		}
	}
}

/*
 * Note a bare CR in the header section (up to its empty line) on its way
 * to the spool file. The decoder has turned CRLF into LF, so any CR left
 * is bare. Some mail readers take it for a line end and would show a
 * field that smtpd and filterd read as part of the field before.
 */
static void
header_scan(struct transaction *tx, const char *data, size_t len)
{
	for (size_t i = 0; i < len && !tx->header_ended; i++) {
		if (data[i] == '\r')
			tx->header_bare_cr = 1;
		else if (data[i] == '\n' && tx->header_last == '\n')
			tx->header_ended = 1;
		tx->header_last = data[i];
	}
}

static void
spool_write(struct session *s, const char *data, size_t len)
{
	struct transaction *tx = &s->tx;

	header_scan(tx, data, len);
	hopcount_scan(&tx->hops, data, len);
	evbuffer_add(tx->spool_buffer, data, len);
	tx->spool_bytes += (long long)len;
	if (evbuffer_get_length(tx->spool_buffer) >= SMTPD_SPOOL_BUFFER)
		spool_flush(s);
}

/* Whether LINE (the first line of content, LEN bytes, maybe without
 * its LF) starts a header section: a field name and a colon, or the
 * empty line of an empty header section. */
static int
starts_with_header_field(const char *line, size_t len)
{
	size_t i = 0;

	if (len == 0 || line[0] == '\n')
		return 1;
	while (i < len && line[i] > ' ' && line[i] < 127 && line[i] != ':')
		i++;
	return i > 0 && i < len && line[i] == ':';
}

/* Write the held first line. A message without a header gets an empty
 * line after our Received: field, so that its first line stays body,
 * as Postfix's cleanup does. */
static void
spool_write_first_line(struct session *s)
{
	struct transaction *tx = &s->tx;

	if (!starts_with_header_field(tx->first_line, tx->first_line_len))
		spool_write(s, "\n", 1);
	spool_write(s, tx->first_line, tx->first_line_len);
	tx->first_line_done = 1;
}

/* Add decoded message content, unless the message is already too big. */
static void
spool_append_content(struct session *s, const char *data, size_t len)
{
	struct transaction *tx = &s->tx;

	tx->message_bytes += (long long)len;
	if (tx->message_bytes > s->server->settings.message_size_limit)
		tx->too_big = 1;
	if (tx->too_big || tx->write_failed || len == 0)
		return;
	submission_header_append(s, data, len);
	tls_required_scan(s, data, len);

	if (!tx->first_line_done) {
		size_t room = sizeof tx->first_line - tx->first_line_len;
		size_t take = len < room ? len : room;
		const char *lf = memchr(data, '\n', take);

		if (lf != NULL)
			take = (size_t)(lf - data) + 1;
		memcpy(tx->first_line + tx->first_line_len, data, take);
		tx->first_line_len += take;
		data += take;
		len -= take;
		if (lf == NULL && tx->first_line_len < sizeof tx->first_line)
			return;
		spool_write_first_line(s);
	}
	if (len > 0)
		spool_write(s, data, len);
}

/* Take the new spool file and start it with our Received: field. */
static void
spool_open(struct session *s, int fd, const char *queue_id, enum smtp_data_mode mode)
{
	struct transaction *tx = &s->tx;
	char *received;

	tx->spool_fd = fd;
	strlcpy_x(tx->queue_id, queue_id, sizeof tx->queue_id);
	tx->spool_buffer = evbuffer_new();
	smtp_data_init(&tx->decoder, mode, s->server->settings.data_line_length_limit);
	if (session_auth_user(s) != NULL) {
		char user[sizeof s->auth.user * 4];

		log_sanitize(user, sizeof user, s->auth.user, strlen(s->auth.user));
		log_info("%s: client=%s[%s], sasl_method=%s, sasl_username=%s", tx->queue_id, s->name,
		    s->ip, s->auth.mechanism, user);
	} else {
		log_info("%s: client=%s[%s]", tx->queue_id, s->name, s->ip);
	}

	received = received_header(s);
	spool_write(s, received, strlen(received));
	free(received);
}

static void message_commit(struct session *s);

/* Reject a message after its end: log, reply, drop the spool file. */
static void
message_reject(struct session *s, const char *reply)
{
	session_log_reject(s, s->last_command, reply, NULL);
	session_reply_raw(s, reply);
	command_finish(s);
	transaction_reset(s);
	session_set_state(s, SESSION_COMMAND);
}

/* The reply for a message with a problem, or NULL if it can be queued. */
static const char *
message_problem(struct session *s, char *reply, size_t replysize)
{
	const struct smtpd_settings *settings = &s->server->settings;
	const struct transaction *tx = &s->tx;
	unsigned flags = tx->decoder.flags;

	if (tx->too_big)
		snprintf(reply, replysize, "552 5.3.4 Message size exceeds fixed limit of %lld bytes",
		    settings->message_size_limit);
	else if ((flags & SMTP_DATA_BARE_LF) && !settings->normalize_bare_lf)
		snprintf(reply, replysize,
		    "550 5.5.2 Error: bare LF received; lines must end with CRLF");
	else if (tx->header_bare_cr)
		snprintf(reply, replysize,
		    "550 5.5.2 Error: bare CR received in the header section; lines must end with CRLF");
	else if ((flags & SMTP_DATA_NUL) && tx->body != BODY_BINARYMIME)
		snprintf(reply, replysize, "554 5.6.0 Error: message contains NUL characters");
	else if (flags & SMTP_DATA_LONG_LINE)
		snprintf(reply, replysize, "554 5.6.0 Error: message has a line longer than %zu bytes",
		    settings->data_line_length_limit);
	else if (tx->write_failed)
		snprintf(reply, replysize, "451 4.3.0 Error: queue file write error, try again later");
	else if (hopcount_check(s, reply, replysize) == NULL)
		return submission_check_header(s, reply, replysize);
	return reply;
}

/* The whole message is in: reject it, or close the file and COMMIT. */
static void
message_end(struct session *s)
{
	struct transaction *tx = &s->tx;
	char reply[256];

	if (!tx->first_line_done && !tx->too_big && !tx->write_failed)
		spool_write_first_line(s);
	spool_flush(s);
	if (message_problem(s, reply, sizeof reply) != NULL) {
		message_reject(s, reply);
		return;
	}

	/* filterd gets a read-only descriptor of its own from queued. */
	if (filter_enabled()) {
		if (queue_client_reader(s) < 0) {
			message_reject(s, "451 4.3.0 Error: queue file read error, try again later");
			return;
		}
		session_pause(s);
		return;
	}
	message_commit(s);
}

void
data_reader_ready(struct session *s, int fd, const char *error)
{
	if (error != NULL) {
		log_warn("%s: no read-only descriptor of the queue file for filterd: %s",
		    s->tx.queue_id, error);
		message_reject(s, "451 4.3.0 Error: queue file read error, try again later");
		session_resume(s);
		return;
	}
	filter_message(s, fd);
	close(fd);
}

/* Close the spool file and COMMIT; the session waits for queued. */
static void
message_commit(struct session *s)
{
	struct transaction *tx = &s->tx;

	if (close(tx->spool_fd) < 0) {
		log_error("%s: closing the queue file failed: %s", tx->queue_id, strerror(errno));
		tx->spool_fd = -1;
		message_reject(s, "451 4.3.0 Error: queue file write error, try again later");
		return;
	}
	tx->spool_fd = -1;

	if (queue_client_commit(s) < 0) {
		message_reject(s, "451 4.3.0 Error: queue file commit failed, try again later");
		return;
	}
	session_pause(s);
}

/* Reply 250 to a message that filterd discards, and drop its spool file. */
static void
message_discard(struct session *s, const struct filter_verdict *verdict)
{
	struct transaction *tx = &s->tx;

	log_info("%s: discarded by filterd: %s", tx->queue_id,
	    verdict->reason[0] != '\0' ? verdict->reason : "no reason given");
	/* Like DISCARD in Postfix's access(5): claim delivery, deliver nothing. */
	session_reply(s, "250 2.0.0 Ok: queued as %s", tx->queue_id);
	command_finish(s);
	transaction_reset(s);
	session_set_state(s, SESSION_COMMAND);
}

/* Apply filterd's header edits to the spool file. Returns NULL, or the
 * reply that rejects the message when they cannot be applied. */
static const char *
message_apply_edits(struct session *s, const struct header_edits *edits)
{
	struct transaction *tx = &s->tx;
	off_t new_size;
	char err[256];
	int rc;

	if (edits->nfields == 0 && edits->nremovals == 0 && edits->subject_prefix[0] == '\0')
		return NULL;

	rc = header_edit_apply(tx->spool_fd, (off_t)tx->spool_bytes, edits, &new_size, err,
	    sizeof err);
	if (rc == HEADER_EDIT_TOO_LARGE) {
		/* The same message would fail the same way on every retry. */
		log_warn("%s: cannot apply filterd's header edits: %s", tx->queue_id, err);
		return "552 5.3.4 Error: message header section too large";
	}
	if (rc < 0) {
		log_error("%s: applying filterd's header edits failed: %s", tx->queue_id, err);
		return "451 4.3.0 Error: queue file write error, try again later";
	}
	tx->spool_bytes = (long long)new_size;
	return NULL;
}

void
data_filter_done(struct session *s, struct filter_verdict *verdict)
{
	struct transaction *tx = &s->tx;
	const char *reply;

	switch (verdict->action) {
	case VERDICT_REJECT:
	case VERDICT_TEMPFAIL:
		message_reject(s, verdict->reply);
		break;
	case VERDICT_DISCARD:
		message_discard(s, verdict);
		break;
	case VERDICT_QUARANTINE:
	case VERDICT_ACCEPT:
		if ((reply = message_apply_edits(s, &verdict->edits)) != NULL) {
			message_reject(s, reply);
			break;
		}
		if (verdict->action == VERDICT_QUARANTINE) {
			log_info("%s: quarantined by filterd: %s", tx->queue_id,
			    verdict->reason[0] != '\0' ? verdict->reason : "no reason given");
			tx->quarantine = 1;
		}
		message_commit(s);
		break;
	}

	/* A commit in flight resumes the session when queued replies. */
	if (s->state != SESSION_WAITING)
		session_resume(s);
}

void
data_commit_done(struct session *s, const char *error)
{
	struct transaction *tx = &s->tx;
	char sender[ADDR_MAX * 4 + 8];

	if (error != NULL) {
		char reply[256];

		snprintf(reply, sizeof reply, "451 4.3.0 Error: queue file commit failed, try again later");
		log_warn("%s: commit failed: %s", tx->queue_id, error);
		session_log_reject(s, "END-OF-MESSAGE", reply, NULL);
		session_reply_raw(s, reply);
	} else {
		log_info("%s: from=<%s>, size=%lld, nrcpt=%zu", tx->queue_id,
		    addr_format(&tx->sender, sender, sizeof sender), tx->spool_bytes, tx->nrecipients);
		session_reply(s, "250 2.0.0 Ok: queued as %s", tx->queue_id);
	}

	command_finish(s);

	/* The id is committed (or gone with a failed commit): nothing to abort. */
	tx->queue_id[0] = '\0';
	transaction_reset(s);
	session_set_state(s, SESSION_COMMAND);
	if (error == NULL)
		queue_client_new_ahead(s);
	session_resume(s);
}

/* Start reading content into the new spool file FD: 354 for DATA, the
 * chunk for BDAT. */
static void
data_use_file(struct session *s, enum queue_request request, int fd, const char *queue_id)
{
	if (request == QUEUE_NEW_FOR_DATA) {
		spool_open(s, fd, queue_id, SMTP_DATA_DOT);
		session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
		command_finish(s);
		session_set_state(s, SESSION_DATA);
	} else {
		spool_open(s, fd, queue_id, SMTP_DATA_CHUNK);
		session_set_state(s, SESSION_CHUNK);
	}
}

/*
 * Get a spool file for REQUEST: the one asked for ahead, or a new one.
 * Returns 1 when the session goes on at once, 0 when it waits for
 * queued (paused), -1 when no request could be sent.
 */
static int
data_get_file(struct session *s, enum queue_request request)
{
	char queue_id[QUEUE_ID_MAX];
	int fd, pending;

	if (queue_client_take_ahead(s, request, &fd, queue_id, &pending)) {
		data_use_file(s, request, fd, queue_id);
		return 1;
	}
	if (!pending && queue_client_new(s, request) < 0)
		return -1;
	session_pause(s);
	return 0;
}

void
data_queue_file_ready(struct session *s, enum queue_request request, int fd,
    const char *queue_id, const char *error)
{
	if (error != NULL) {
		const char *reply = "451 4.3.0 Error: queue file creation failed, try again later";

		if (request == QUEUE_NEW_FOR_DATA) {
			session_reply_raw(s, reply);
			command_finish(s);
			session_set_state(s, SESSION_COMMAND);
		} else {
			strlcpy_x(s->chunk_reply, reply, sizeof s->chunk_reply);
			session_set_state(s, SESSION_CHUNK);
		}
		session_resume(s);
		return;
	}

	data_use_file(s, request, fd, queue_id);
	session_resume(s);
}

void
command_data(struct session *s, char *args)
{
	struct transaction *tx = &s->tx;

	if (*args != '\0') {
		session_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (!tx->active) {
		session_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (tx->nrecipients == 0) {
		session_reply(s, "503 5.5.1 Error: need RCPT command");
		return;
	}
	if (tx->chunking) {
		session_reply(s, "503 5.5.1 Error: DATA after BDAT in the same transaction");
		return;
	}
	if (tx->body == BODY_BINARYMIME) {
		session_reply(s, "503 5.5.1 Error: BODY=BINARYMIME requires BDAT");
		return;
	}
	if (data_get_file(s, QUEUE_NEW_FOR_DATA) < 0)
		session_reply(s, "451 4.3.0 Error: queue file creation failed, try again later");
}

/* Decode DATA content from the input buffer until the end of data. */
void
data_read(struct session *s)
{
	struct evbuffer *input = bufferevent_get_input(s->bev);
	struct transaction *tx = &s->tx;

	while (!tx->decoder.done && evbuffer_get_length(input) > 0) {
		struct evbuffer_iovec vec;
		size_t len, outlen, used;

		evbuffer_peek(input, -1, NULL, &vec, 1);
		len = vec.iov_len < DECODE_STEP ? vec.iov_len : DECODE_STEP;
		used = smtp_data_decode(&tx->decoder, vec.iov_base, len, decode_output, &outlen);
		spool_append_content(s, decode_output, outlen);
		evbuffer_drain(input, used);
	}
	if (tx->decoder.done) {
		s->last_command = "END-OF-MESSAGE";
		message_end(s);
	}
}

/* The reply for a BDAT chunk that cannot be taken, or "" if it can. */
static void
bdat_check(struct session *s, char *reply, size_t replysize)
{
	const struct transaction *tx = &s->tx;

	reply[0] = '\0';
	if (!tx->active)
		snprintf(reply, replysize, "503 5.5.1 Error: need MAIL command");
	else if (tx->nrecipients == 0)
		snprintf(reply, replysize, "503 5.5.1 Error: need RCPT command");
}

void
command_bdat(struct session *s, char *args)
{
	struct transaction *tx = &s->tx;

	if (smtp_bdat_parse(args, &s->chunk_size, &s->chunk_last) < 0) {
		session_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	s->chunk_remaining = s->chunk_size;
	bdat_check(s, s->chunk_reply, sizeof s->chunk_reply);

	if (s->chunk_reply[0] == '\0' && tx->queue_id[0] == '\0') {
		tx->chunking = 1;
		if (data_get_file(s, QUEUE_NEW_FOR_BDAT) >= 0)
			return;
		strlcpy_x(s->chunk_reply, "451 4.3.0 Error: queue file creation failed, try again later",
		    sizeof s->chunk_reply);
	}
	session_set_state(s, SESSION_CHUNK);
}

/* The chunk is complete: reply, and at LAST end the message. */
static void
chunk_end(struct session *s)
{
	struct transaction *tx = &s->tx;
	char reply[256];

	/* A rejected chunk fails the whole transaction, as RFC 3030 requires. */
	if (s->chunk_reply[0] != '\0') {
		strlcpy_x(reply, s->chunk_reply, sizeof reply);
		s->chunk_reply[0] = '\0';
		message_reject(s, reply);
		return;
	}
	if (tx->too_big) {
		message_problem(s, reply, sizeof reply);
		message_reject(s, reply);
		return;
	}

	if (!s->chunk_last) {
		session_reply(s, "250 2.0.0 Ok: %llu octets received", s->chunk_size);
		command_finish(s);
		session_set_state(s, SESSION_COMMAND);
		return;
	}
	spool_append_content(s, decode_output, smtp_data_finish(&tx->decoder, decode_output));
	s->last_command = "END-OF-MESSAGE";
	message_end(s);
}

/* Read the bytes of the current BDAT chunk from the input buffer. */
void
chunk_read(struct session *s)
{
	struct evbuffer *input = bufferevent_get_input(s->bev);
	struct transaction *tx = &s->tx;

	while (s->chunk_remaining > 0 && evbuffer_get_length(input) > 0) {
		struct evbuffer_iovec vec;
		size_t len, outlen;

		evbuffer_peek(input, -1, NULL, &vec, 1);
		len = vec.iov_len < DECODE_STEP ? vec.iov_len : DECODE_STEP;
		if (len > s->chunk_remaining)
			len = (size_t)s->chunk_remaining;
		if (s->chunk_reply[0] == '\0') {
			smtp_data_decode(&tx->decoder, vec.iov_base, len, decode_output, &outlen);
			spool_append_content(s, decode_output, outlen);
		}
		evbuffer_drain(input, len);
		s->chunk_remaining -= len;
	}
	if (s->chunk_remaining == 0)
		chunk_end(s);
}
