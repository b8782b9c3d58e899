/*
 * SMTP sessions: the client connection, the input loop and replies.
 *
 * Commands are taken from the input buffer one at a time, in order.
 * Replies go into the bufferevent's output buffer, which libevent
 * writes from the event loop after every complete command in the
 * input has been handled. So a pipelined group of commands gets its
 * replies in one write, when the input buffer is empty (RFC 2920).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>

#include "ipc.h"
#include "log.h"
#include "netaddr.h"
#include "smtpd.h"
#include "util.h"

/* Stop reading input while this many reply bytes wait for the client. */
#define OUTPUT_PAUSE_BYTES	(256 * 1024)
/* How much input libevent buffers ahead while a command or chunk waits. */
#define INPUT_HIGH_WATERMARK	(256 * 1024)

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_close_cb(evutil_socket_t fd, short what, void *arg);

static void
session_set_timeout(struct session *s)
{
	const struct smtpd_settings *settings = &s->server->settings;
	long long read_seconds = s->state == SESSION_DATA || s->state == SESSION_CHUNK ?
	    settings->data_timeout : settings->timeout;
	struct timeval read_tv = { .tv_sec = (time_t)read_seconds };
	struct timeval write_tv = { .tv_sec = (time_t)settings->timeout };

	bufferevent_set_timeouts(s->bev, &read_tv, &write_tv);
}

void
session_set_state(struct session *s, enum session_state state)
{
	if (s->state == SESSION_CLOSING)
		return;
	s->state = state;
	session_set_timeout(s);
}

void
session_attach(struct session *s, struct bufferevent *bev)
{
	size_t high_watermark = INPUT_HIGH_WATERMARK;

	s->bev = bev;

	/* A command line up to the limit must fit in the input buffer. */
	if (s->server->settings.line_length_limit + 2 > high_watermark)
		high_watermark = s->server->settings.line_length_limit + 2;
	bufferevent_setwatermark(s->bev, EV_READ, 0, high_watermark);
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	session_set_timeout(s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

void
session_greet(struct session *s)
{
	session_reply(s, "220 %s ESMTP Estafeta", s->server->settings.hostname);
}

void
session_accept(struct smtpd *server, enum listener_kind kind, int fd, const struct sockaddr *sa,
    socklen_t salen)
{
	struct session *s = xcalloc(1, sizeof *s);
	struct bufferevent *bev;

	s->server = server;
	s->listener = kind;
	s->id = ++server->next_session_id;
	memcpy(&s->addr, sa, salen < sizeof s->addr ? salen : sizeof s->addr);
	netaddr_format(sa, s->ip, sizeof s->ip);
	s->name = "unknown";
	s->in_mynetworks = netaddr_list_match(server->mynetworks, sa);
	s->tx.spool_fd = -1;
	s->ahead_fd = -1;
	s->last_command = "CONNECT";
	s->command_counter = -1;

	/* On the implicit TLS listener the greeting waits for the handshake. */
	if (kind == LISTENER_SMTPS)
		bev = tls_accept(s, fd);
	else
		bev = bufferevent_socket_new(server->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		log_error("cannot set up a session for unknown[%s]", s->ip);
		if (kind != LISTENER_SMTPS)
			close(fd);
		free(s);
		return;
	}
	s->close_event = event_new(server->base, -1, 0, session_close_cb, s);
	s->queue_timer = NULL;
	TAILQ_INSERT_TAIL(&server->sessions, s, entry);
	server->nsessions++;

	log_info("connect from %s[%s]", s->name, s->ip);
	s->state = kind == LISTENER_SMTPS ? SESSION_WAITING : SESSION_COMMAND;
	session_attach(s, bev);
	if (kind != LISTENER_SMTPS)
		session_greet(s);
}

/* Append "name=ok/total" (or "name=total" when all succeeded) for the disconnect line. */
static void
format_counters(const struct session *s, char *out, size_t outsize)
{
	static const char *const names[COUNT_MAX] = {
		"ehlo", "helo", "mail", "rcpt", "data", "bdat", "rset", "noop", "quit",
		"vrfy", "expn", "help", "auth", "starttls", "unknown",
	};
	unsigned ok = 0, total = 0;
	size_t used = 0;

	out[0] = '\0';
	for (int i = 0; i < COUNT_MAX; i++) {
		const struct counter *c = &s->counters[i];

		if (c->total == 0)
			continue;
		ok += c->ok;
		total += c->total;
		if (c->ok == c->total)
			used += (size_t)snprintf(out + used, outsize - used, " %s=%u", names[i], c->total);
		else
			used += (size_t)snprintf(out + used, outsize - used, " %s=%u/%u", names[i],
			    c->ok, c->total);
		if (used >= outsize)
			return;
	}
	if (ok == total)
		snprintf(out + used, outsize - used, " commands=%u", total);
	else
		snprintf(out + used, outsize - used, " commands=%u/%u", ok, total);
}

static void
session_free(struct session *s)
{
	char counters[512];

	recipient_lookup_cancel(s);
	auth_session_reset(s);
	transaction_reset(s);
	queue_client_close(s);
	filter_close(s);

	format_counters(s, counters, sizeof counters);
	log_info("disconnect from %s[%s]%s", s->name, s->ip, counters);

	TAILQ_REMOVE(&s->server->sessions, s, entry);
	s->server->nsessions--;

	/* Send close_notify if the socket takes it now; nothing waits for the reply. */
	if (s->tls_active)
		SSL_shutdown(s->ssl);
	bufferevent_free(s->bev);
	event_free(s->close_event);
	free(s);
}

void
session_free_all(struct smtpd *server)
{
	while (!TAILQ_EMPTY(&server->sessions))
		session_free(TAILQ_FIRST(&server->sessions));
}

static void
session_close_cb(evutil_socket_t fd, short what, void *arg)
{
	session_free(arg);
}

/*
 * Close after the replies already queued reach the client. The session
 * is freed from the event loop, never inside the caller.
 */
void
session_close(struct session *s)
{
	struct timeval tv = { .tv_sec = (time_t)s->server->settings.timeout };

	if (s->state != SESSION_CLOSING) {
		s->state = SESSION_CLOSING;
		bufferevent_disable(s->bev, EV_READ);
		bufferevent_set_timeouts(s->bev, NULL, &tv);
	}
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		event_active(s->close_event, EV_TIMEOUT, 1);
}

void
session_reply_raw(struct session *s, const char *text)
{
	if (s->state == SESSION_CLOSING)
		return;
	if (text[0] == '4' || text[0] == '5')
		s->errors++;
	bufferevent_write(s->bev, text, strlen(text));
	bufferevent_write(s->bev, "\r\n", 2);
}

void
session_reply(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	session_reply_raw(s, line);
}

void
session_log_reject(struct session *s, const char *stage, const char *reply,
    const char *recipient)
{
	char sender[ADDR_MAX * 4 + 8], helo[SMTPD_HELO_MAX * 4 + 1];

	addr_format(&s->tx.sender, sender, sizeof sender);
	log_sanitize(helo, sizeof helo, s->helo, strlen(s->helo));
	log_info("%s: reject: %s from %s[%s]: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
	    s->tx.queue_id[0] != '\0' ? s->tx.queue_id : "NOQUEUE", stage, s->name, s->ip,
	    reply, s->tx.active ? sender : "", recipient != NULL ? recipient : "",
	    s->esmtp ? "ESMTP" : "SMTP", helo);
}

/* Stop taking input until queued or authd replies (session_resume). */
void
session_pause(struct session *s)
{
	session_set_state(s, SESSION_WAITING);
	bufferevent_disable(s->bev, EV_READ);
}

/* Take input again, starting with what is already buffered. */
void
session_resume(struct session *s)
{
	if (s->state == SESSION_CLOSING)
		return;
	if (!s->output_paused)
		bufferevent_enable(s->bev, EV_READ);
	session_process_input(s);
}

/*
 * Read one command line. Returns 1 with LINE set (NUL-terminated, line
 * end removed), 0 when no complete line is buffered yet, -1 when the
 * line was overlong or had a NUL byte (the 500 reply is already sent).
 */
static int
session_read_line(struct session *s, char **line)
{
	struct evbuffer *input = bufferevent_get_input(s->bev);
	size_t limit = s->server->settings.line_length_limit;
	struct evbuffer_ptr eol;
	size_t eol_len, length;

	/* LF ends a command line; a CR before it is removed below. */
	eol = evbuffer_search_eol(input, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(input) >= limit) {
			evbuffer_drain(input, evbuffer_get_length(input));
			s->discarding_line = 1;
		}
		return 0;
	}

	length = (size_t)eol.pos + eol_len;
	if (s->discarding_line || length > limit) {
		evbuffer_drain(input, length);
		s->discarding_line = 0;
		log_info("%s[%s]: command line longer than %zu bytes discarded", s->name, s->ip, limit);
		session_reply(s, "500 5.5.6 Error: line too long (limit is %zu bytes)", limit);
		return -1;
	}

	*line = xmalloc(length + 1);
	evbuffer_remove(input, *line, length);
	(*line)[length] = '\0';
	if (memchr(*line, '\0', length) != NULL) {
		free(*line);
		*line = NULL;
		log_info("%s[%s]: command with a NUL byte rejected", s->name, s->ip);
		session_reply(s, "500 5.5.2 Error: NUL character in command");
		return -1;
	}
	(*line)[--length] = '\0';
	if (length > 0 && (*line)[length - 1] == '\r')
		(*line)[--length] = '\0';
	return 1;
}

/* Reply 421 and close once the session has had too many errors. */
static int
session_check_error_limit(struct session *s)
{
	if (s->errors < s->server->settings.hard_error_limit)
		return 0;
	log_info("too many errors after %s from %s[%s]", s->last_command, s->name, s->ip);
	session_reply(s, "421 4.7.0 %s Error: too many errors", s->server->settings.hostname);
	session_close(s);
	return 1;
}

static void
session_process_commands(struct session *s)
{
	char *line = NULL;
	int rc = session_read_line(s, &line);

	if (rc == 0)
		return;
	if (rc > 0) {
		command_dispatch(s, line);
		free(line);
	}
	session_check_error_limit(s);
}

/* True when the loop in session_process_input can make progress. */
static int
session_has_work(struct session *s)
{
	struct evbuffer *input = bufferevent_get_input(s->bev);

	if (s->state == SESSION_CHUNK && s->chunk_remaining == 0)
		return 1;	/* a "BDAT 0" chunk */
	return evbuffer_get_length(input) > 0;
}

void
session_process_input(struct session *s)
{
	struct evbuffer *output = bufferevent_get_output(s->bev);

	while (session_has_work(s)) {
		size_t before = evbuffer_get_length(bufferevent_get_input(s->bev));
		enum session_state state = s->state;

		if (state == SESSION_DATA)
			data_read(s);
		else if (state == SESSION_CHUNK)
			chunk_read(s);
		else if (state == SESSION_COMMAND)
			session_process_commands(s);
		else
			return;		/* waiting for queued, or closing */

		if (evbuffer_get_length(output) > OUTPUT_PAUSE_BYTES) {
			/* The client sends commands but reads no replies. */
			s->output_paused = 1;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		if (s->state == state &&
		    evbuffer_get_length(bufferevent_get_input(s->bev)) == before)
			return;		/* an incomplete line: wait for more input */
	}
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	session_process_input(arg);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	/* An OpenSSL bufferevent runs this callback deferred, so more replies
	 * may have been queued since its output buffer drained. */
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (s->state == SESSION_CLOSING) {
		event_active(s->close_event, EV_TIMEOUT, 1);
		return;
	}
	if (s->tls_starting) {
		tls_start(s);	/* the 220 to STARTTLS has been sent */
		return;
	}
	if (s->output_paused) {
		s->output_paused = 0;
		if (s->state != SESSION_WAITING)
			bufferevent_enable(s->bev, EV_READ);
		session_process_input(s);
	}
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	char reason[512];

	if (what & BEV_EVENT_CONNECTED) {
		tls_handshake_done(s);
		return;
	}
	if (s->tls_handshaking) {
		tls_log_handshake_failure(s, what);
		session_free(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
	    s->state != SESSION_CLOSING) {
		log_info("timeout after %s from %s[%s]", s->last_command, s->name, s->ip);
		session_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->server->settings.hostname);
		session_close(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		log_info("timeout sending to %s[%s]", s->name, s->ip);
	else if ((what & BEV_EVENT_ERROR) && s->ssl != NULL)
		log_info("lost connection after %s from %s[%s]: %s", s->last_command, s->name,
		    s->ip, tls_session_error(s, reason, sizeof reason));
	else if (what & BEV_EVENT_ERROR)
		log_info("lost connection after %s from %s[%s]: %s", s->last_command, s->name,
		    s->ip, strerror(errno));
	else if (!s->quit)
		log_info("lost connection after %s from %s[%s]", s->last_command, s->name, s->ip);
	session_free(s);
}
