/* LMTP client to deliverd (RFC 2033), on libevent bufferevents. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "envelope.h"
#include "lmtp_client.h"
#include "log.h"
#include "queued.h"
#include "scheduler.h"
#include "spool.h"
#include "util.h"

#define LMTP_INPUT_MAX	(64 * 1024)	/* bytes without a line end */
#define LMTP_REPLY_MAX	1000		/* reply text kept for logs and bounces */
#define LMTP_CHUNK	(64 * 1024)	/* message bytes read per write callback */
#define LMTP_IDLE_TIME	10		/* seconds before an idle connection is closed */
#define LMTP_REUSE_TIME	300		/* seconds after which a connection takes no new message */

enum lmtp_state {
	LMTP_GREETING,
	LMTP_LHLO,
	LMTP_IDLE,
	LMTP_ENVELOPE,		/* waiting for the MAIL, RCPT and DATA replies */
	LMTP_BODY,		/* sending the message */
	LMTP_DATA_REPLIES,	/* one reply per accepted recipient */
	LMTP_RSET,
	LMTP_QUIT,
};

struct lmtp_conn {
	struct bufferevent *bev;
	enum lmtp_state state;
	struct event *idle_ev;
	time_t opened;
	int ext_8bitmime;
	int ext_smtputf8;
	int ext_chunking;
	int ext_quarantine;	/* XQUARANTINE: deliverd's MAIL parameter for the Junk folder */

	/* The reply being read; multi-line replies are joined with spaces. */
	int reply_code;
	char reply[LMTP_REPLY_MAX + 1];
	size_t reply_len;

	/* The transaction: recipients are indexes into msg->env->rcpts. */
	struct qmsg *msg;
	size_t *rcpts;
	size_t nrcpts;
	unsigned char *accepted;
	unsigned char *finished;	/* outcome recorded */
	size_t reply_index;		/* 0: MAIL, 1..nrcpts: RCPT, then DATA */
	int mail_ok;
	size_t naccepted;
	size_t next_data_reply;		/* position in rcpts */
	size_t data_replies_left;
	int data_fd;
	off_t data_offset;
	int at_line_start;
	int chunked;		/* the message went as one BDAT LAST chunk */

	TAILQ_ENTRY(lmtp_conn) entry;
};

TAILQ_HEAD(lmtp_conn_list, lmtp_conn);

static struct lmtp_conn_list connections = TAILQ_HEAD_INITIALIZER(connections);
static size_t nconnections;
static size_t nhandshaking;
static char relay_name[512];
static struct event *kick_ev;
static int stopped;

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void
set_timeouts(struct lmtp_conn *conn, int active)
{
	struct timeval tv = { .tv_sec = queued_settings.lmtp_timeout };

	if (active)
		bufferevent_set_timeouts(conn->bev, &tv, &tv);
	else
		bufferevent_set_timeouts(conn->bev, NULL, NULL);
}

static void
free_transaction(struct lmtp_conn *conn)
{
	free(conn->rcpts);
	free(conn->accepted);
	free(conn->finished);
	conn->rcpts = NULL;
	conn->accepted = conn->finished = NULL;
	conn->nrcpts = 0;
	if (conn->data_fd >= 0)
		close(conn->data_fd);
	conn->data_fd = -1;
	conn->msg = NULL;
}

static void
conn_free(struct lmtp_conn *conn)
{
	if (conn->state == LMTP_GREETING || conn->state == LMTP_LHLO)
		nhandshaking--;
	TAILQ_REMOVE(&connections, conn, entry);
	nconnections--;
	free_transaction(conn);
	bufferevent_free(conn->bev);
	event_free(conn->idle_ev);
	free(conn);
}

/* Run lmtp_kick from the event loop, not from inside a callback chain. */
static void
schedule_kick(void)
{
	if (!stopped)
		event_active(kick_ev, EV_TIMEOUT, 1);
}

/* The status a reply class gives a recipient: 2 delivered, 5 failed,
 * anything else deferred. */
static enum rcpt_status
reply_status(int class)
{
	if (class == 2)
		return RCPT_SENT;
	if (class == 5)
		return RCPT_FAILED;
	return RCPT_DEFERRED;
}

/* Store the outcome of transaction recipient R from REPLY_CODE and TEXT.
 * Without an enhanced status code in TEXT, the dsn is CLASS.0.0. */
static void
record_outcome(struct lmtp_conn *conn, size_t r, int code, const char *text)
{
	struct envelope_rcpt *rcpt = &conn->msg->env->rcpts[conn->rcpts[r]];
	enum rcpt_status status = reply_status(code / 100);
	char dsn[16], *reason;
	unsigned a, b, c;
	int end = 0;

	if (sscanf(text, "%1u.%3u.%3u%n", &a, &b, &c, &end) == 3 && (int)a == code / 100 &&
	    (text[end] == ' ' || text[end] == '\0'))
		snprintf(dsn, sizeof dsn, "%u.%u.%u", a, b, c);
	else if (status == RCPT_DEFERRED)
		snprintf(dsn, sizeof dsn, "4.0.0");
	else
		snprintf(dsn, sizeof dsn, "%d.0.0", code / 100);

	reason = xasprintf("%d %s", code, text);
	envelope_rcpt_set(rcpt, status, dsn, reason);
	if (status == RCPT_SENT)
		scheduler_log_rcpt(conn->msg, conn->rcpts[r], relay_name, "sent", reason);
	else if (status == RCPT_FAILED)
		scheduler_log_rcpt(conn->msg, conn->rcpts[r], relay_name, "bounced", reason);
	else
		scheduler_log_rcpt(conn->msg, conn->rcpts[r], relay_name, "deferred", reason);
	free(reason);
	conn->finished[r] = 1;
}

/* Defer every LMTP recipient of MSG that has no outcome yet. FINISHED
 * is indexed like RCPTS, or NULL when no recipient was tried. */
static void
defer_rcpts(struct qmsg *msg, const size_t *rcpts, size_t nrcpts,
    const unsigned char *finished, const char *reason)
{
	for (size_t r = 0; r < nrcpts; r++) {
		if (finished != NULL && finished[r])
			continue;
		envelope_rcpt_set(&msg->env->rcpts[rcpts[r]], RCPT_DEFERRED, "4.4.2", reason);
		scheduler_log_rcpt(msg, rcpts[r], relay_name, "deferred", reason);
	}
}

/* The LMTP recipients of MSG for this attempt: a new array. */
static size_t *
collect_rcpts(const struct qmsg *msg, size_t *count)
{
	size_t *rcpts = xcalloc(msg->env->nrcpts ? msg->env->nrcpts : 1, sizeof *rcpts);

	*count = 0;
	for (size_t i = 0; i < msg->env->nrcpts; i++)
		if (msg->lmtp_rcpt[i])
			rcpts[(*count)++] = i;
	return rcpts;
}

/* Defer a READY message that no connection could take. */
static void
defer_ready_message(const char *reason)
{
	struct qmsg *msg = scheduler_next_ready();
	size_t *rcpts, nrcpts;

	if (msg == NULL)
		return;
	rcpts = collect_rcpts(msg, &nrcpts);
	defer_rcpts(msg, rcpts, nrcpts, NULL, reason);
	free(rcpts);
	scheduler_attempt_done(msg);
}

/*
 * Give up on CONN: recipients without an outcome are deferred with
 * REASON. A connection that fails before it could take a message
 * defers one ready message instead, so a deliverd that is down drains
 * the ready queue into the deferred state instead of being retried in
 * a loop.
 */
static void
conn_fail(struct lmtp_conn *conn, const char *reason)
{
	struct qmsg *msg = conn->msg;
	int handshaking = conn->state == LMTP_GREETING || conn->state == LMTP_LHLO;

	if (msg != NULL) {
		defer_rcpts(msg, conn->rcpts, conn->nrcpts, conn->finished, reason);
		free_transaction(conn);
		conn_free(conn);
		scheduler_attempt_done(msg);
	} else {
		conn_free(conn);
		if (handshaking)
			defer_ready_message(reason);
	}
	schedule_kick();
}

static void
conn_failf(struct lmtp_conn *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
conn_failf(struct lmtp_conn *conn, const char *fmt, ...)
{
	char reason[LMTP_REPLY_MAX + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	log_warn("%s: %s", conn->msg != NULL ? conn->msg->env->id : relay_name, reason);
	conn_fail(conn, reason);
}

static void
conn_send(struct lmtp_conn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
conn_send(struct lmtp_conn *conn, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(conn->bev), fmt, ap);
	va_end(ap);
}

static void
send_quit(struct lmtp_conn *conn)
{
	event_del(conn->idle_ev);
	conn_send(conn, "QUIT\r\n");
	conn->state = LMTP_QUIT;
	set_timeouts(conn, 1);
}

static void
idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lmtp_conn *conn = arg;

	if (conn->state == LMTP_IDLE)
		send_quit(conn);
}

static void
become_idle(struct lmtp_conn *conn)
{
	struct timeval tv = { .tv_sec = LMTP_IDLE_TIME };

	conn->state = LMTP_IDLE;
	set_timeouts(conn, 0);
	event_add(conn->idle_ev, &tv);
}

/*
 * Queue the whole message as one "BDAT n LAST" chunk (RFC 3030): LF
 * becomes CRLF, and there is no dot-stuffing. Returns 1 if it was
 * queued, 0 if the message is larger than LMTP_CHUNK (it then goes
 * with DATA), -1 on a read error (errno set).
 */
static int
queue_bdat(struct lmtp_conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	char *buf, *crlf;
	size_t n = 0;
	ssize_t len;
	struct stat st;

	if (fstat(conn->data_fd, &st) < 0)
		return -1;
	if (st.st_size > LMTP_CHUNK)
		return 0;

	buf = xmalloc((size_t)st.st_size + 1);
	len = pread(conn->data_fd, buf, (size_t)st.st_size, 0);
	if (len != st.st_size) {
		free(buf);
		if (len >= 0)
			errno = EIO;
		return -1;
	}
	crlf = xmalloc((size_t)len * 2 + 1);
	for (const char *p = buf, *end = buf + len; p < end;) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		size_t run = lf != NULL ? (size_t)(lf - p) : (size_t)(end - p);

		memcpy(crlf + n, p, run);
		n += run;
		p += run;
		if (lf == NULL)
			break;
		memcpy(crlf + n, "\r\n", 2);
		n += 2;
		p++;
	}
	evbuffer_add_printf(out, "BDAT %zu LAST\r\n", n);
	evbuffer_add(out, crlf, n);
	free(crlf);
	free(buf);
	return 1;
}

/*
 * The MAIL parameter for a message with the quarantine flag: " XQUARANTINE"
 * when the server offers it. Another LMTP server (Postfix's or Dovecot's
 * LMTP, or deliverd with deliverd_quarantine_folder empty) gets the
 * message for the inbox, with a warning, because a parameter it did not
 * advertise would fail the delivery.
 */
static const char *
quarantine_parameter(const struct lmtp_conn *conn, const struct envelope *env)
{
	if (!envelope_quarantined(env))
		return "";
	if (conn->ext_quarantine)
		return " XQUARANTINE";
	log_warn("%s: %s does not offer XQUARANTINE; the quarantined message goes to the inbox",
	    env->id, relay_name);
	return "";
}

/* MAIL, RCPT and DATA (or the whole message as BDAT) in one write:
 * RFC 2033 section 5 requires LMTP servers to support PIPELINING. */
static void
start_transaction(struct lmtp_conn *conn, struct qmsg *msg)
{
	const struct envelope *env = msg->env;
	const char *body = envelope_attr(env, "body");
	const char *smtputf8 = envelope_attr(env, "smtputf8");
	int utf8 = smtputf8 != NULL && strcmp(smtputf8, "yes") == 0;

	event_del(conn->idle_ev);
	conn->msg = msg;
	conn->rcpts = collect_rcpts(msg, &conn->nrcpts);
	conn->accepted = xcalloc(conn->nrcpts, 1);
	conn->finished = xcalloc(conn->nrcpts, 1);
	conn->reply_index = 0;
	conn->mail_ok = 0;
	conn->naccepted = 0;

	conn->data_fd = spool_open_data(&queued_spool, env);
	if (conn->data_fd < 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "cannot open the queue file: %s", strerror(errno));
		log_error("%s: %s", env->id, reason);
		defer_rcpts(msg, conn->rcpts, conn->nrcpts, conn->finished, reason);
		free_transaction(conn);
		become_idle(conn);
		scheduler_attempt_done(msg);
		return;
	}

	if (utf8 && !conn->ext_smtputf8) {
		for (size_t r = 0; r < conn->nrcpts; r++)
			record_outcome(conn, r, 554, "5.6.7 SMTPUTF8 is required, but deliverd does not offer it");
		free_transaction(conn);
		become_idle(conn);
		scheduler_attempt_done(msg);
		return;
	}

	conn_send(conn, "MAIL FROM:<%s>%s%s%s\r\n", env->sender,
	    body != NULL && strcmp(body, "7BIT") != 0 && conn->ext_8bitmime ? " BODY=8BITMIME" : "",
	    utf8 ? " SMTPUTF8" : "", quarantine_parameter(conn, env));
	for (size_t r = 0; r < conn->nrcpts; r++)
		conn_send(conn, "RCPT TO:<%s>\r\n", env->rcpts[conn->rcpts[r]].address);
	conn->chunked = conn->ext_chunking ? queue_bdat(conn) : 0;
	if (conn->chunked < 0) {
		conn_failf(conn, "read queue file %s: %s", env->id, strerror(errno));
		return;
	}
	if (conn->chunked) {
		close(conn->data_fd);
		conn->data_fd = -1;
	} else {
		conn_send(conn, "DATA\r\n");
	}
	conn->state = LMTP_ENVELOPE;
	set_timeouts(conn, 1);
}

/* Expect the replies to the BDAT chunk, after the last RCPT reply: one
 * per accepted recipient, or one in all if none was accepted. */
static void
await_chunk_replies(struct lmtp_conn *conn)
{
	conn->state = LMTP_DATA_REPLIES;
	conn->next_data_reply = 0;
	conn->data_replies_left = conn->naccepted > 0 ? conn->naccepted : 1;
}

/* 1 if every recipient of the transaction got a temporary failure. */
static int
all_deferred(const struct lmtp_conn *conn)
{
	for (size_t r = 0; r < conn->nrcpts; r++)
		if (conn->msg->env->rcpts[conn->rcpts[r]].status != RCPT_DEFERRED)
			return 0;
	return 1;
}

/*
 * The transaction is over. The connection is kept for the next message
 * unless every recipient was deferred or it is older than
 * LMTP_REUSE_TIME: a server that only fails temporarily (a deliverd
 * worker whose master is gone, say) is left, so the next message gets
 * a fresh connection.
 */
static void
transaction_done(struct lmtp_conn *conn)
{
	struct qmsg *msg = conn->msg;
	int reconnect = all_deferred(conn) || time(NULL) - conn->opened >= LMTP_REUSE_TIME;

	free_transaction(conn);
	if (reconnect)
		send_quit(conn);
	else
		become_idle(conn);
	scheduler_attempt_done(msg);
	schedule_kick();
}

/* Append LEN message bytes to OUT as LMTP DATA: LF becomes CRLF and a
 * line starting with "." gets another (RFC 5321 section 4.5.2). */
static void
add_data_bytes(struct lmtp_conn *conn, struct evbuffer *out, const char *buf, size_t len)
{
	char *converted = xmalloc(len * 2 + 1);
	size_t n = 0, i = 0;

	/* Line by line: a dot at a line start is doubled, LF becomes CRLF. */
	while (i < len) {
		const char *lf = memchr(buf + i, '\n', len - i);
		size_t line = lf != NULL ? (size_t)(lf - (buf + i)) : len - i;

		if (line > 0) {
			if (conn->at_line_start && buf[i] == '.')
				converted[n++] = '.';
			memcpy(converted + n, buf + i, line);
			n += line;
			i += line;
			conn->at_line_start = 0;
		}
		if (lf == NULL)
			break;
		converted[n++] = '\r';
		converted[n++] = '\n';
		i++;
		conn->at_line_start = 1;
	}
	evbuffer_add(out, converted, n);
	free(converted);
}

/* Send the next chunk of the message, or the end of data. Returns -1
 * if CONN was freed. */
static int
feed_body(struct lmtp_conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	char buf[LMTP_CHUNK];
	ssize_t n;

	n = pread(conn->data_fd, buf, sizeof buf, conn->data_offset);
	if (n < 0) {
		conn_failf(conn, "read queue file %s: %s", conn->msg->env->id, strerror(errno));
		return -1;
	}
	if (n > 0) {
		conn->data_offset += n;
		add_data_bytes(conn, out, buf, (size_t)n);
		return 0;
	}

	if (!conn->at_line_start)
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
	close(conn->data_fd);
	conn->data_fd = -1;
	conn->state = LMTP_DATA_REPLIES;
	conn->next_data_reply = 0;
	conn->data_replies_left = conn->naccepted;
	return 0;
}

static int
start_body(struct lmtp_conn *conn)
{
	conn->state = LMTP_BODY;
	conn->data_offset = 0;
	conn->at_line_start = 1;
	return feed_body(conn);
}

/* One reply to the pipelined MAIL, RCPT and DATA commands. Returns -1
 * if CONN was freed. */
static int
envelope_reply(struct lmtp_conn *conn)
{
	size_t index = conn->reply_index++;
	int class = conn->reply_code / 100;

	if (index == 0) {
		conn->mail_ok = class == 2;
		if (!conn->mail_ok)
			for (size_t r = 0; r < conn->nrcpts; r++)
				record_outcome(conn, r, conn->reply_code, conn->reply);
		return 0;
	}
	if (index <= conn->nrcpts) {
		size_t r = index - 1;

		if (conn->mail_ok && class == 2) {
			conn->accepted[r] = 1;
			conn->naccepted++;
		} else if (conn->mail_ok) {
			record_outcome(conn, r, conn->reply_code, conn->reply);
		}
		if (conn->chunked && index == conn->nrcpts)
			await_chunk_replies(conn);
		return 0;
	}

	if (conn->reply_code == 354 && conn->naccepted > 0)
		return start_body(conn);
	if (conn->reply_code == 354) {
		conn_failf(conn, "deliverd accepted DATA with no recipient accepted");
		return -1;
	}
	for (size_t r = 0; r < conn->nrcpts; r++)
		if (conn->accepted[r])
			record_outcome(conn, r, conn->reply_code, conn->reply);
	conn_send(conn, "RSET\r\n");
	conn->state = LMTP_RSET;
	return 0;
}

/* The per-recipient reply after the end of data (RFC 2033 section 4.2). */
static void
data_reply(struct lmtp_conn *conn)
{
	while (conn->next_data_reply < conn->nrcpts && !conn->accepted[conn->next_data_reply])
		conn->next_data_reply++;
	if (conn->next_data_reply < conn->nrcpts)
		record_outcome(conn, conn->next_data_reply++, conn->reply_code, conn->reply);
	if (--conn->data_replies_left == 0)
		transaction_done(conn);
}

static void
scan_extension(struct lmtp_conn *conn, const char *keyword)
{
	if (ascii_ncasecmp(keyword, "8BITMIME", 8) == 0 && (keyword[8] == '\0' || keyword[8] == ' '))
		conn->ext_8bitmime = 1;
	if (ascii_ncasecmp(keyword, "SMTPUTF8", 8) == 0 && (keyword[8] == '\0' || keyword[8] == ' '))
		conn->ext_smtputf8 = 1;
	if (ascii_ncasecmp(keyword, "CHUNKING", 8) == 0 && (keyword[8] == '\0' || keyword[8] == ' '))
		conn->ext_chunking = 1;
	if (ascii_casecmp(keyword, "XQUARANTINE") == 0)
		conn->ext_quarantine = 1;
}

/* A complete reply is in conn->reply_code and conn->reply. Returns -1
 * if CONN was freed. */
static int
handle_reply(struct lmtp_conn *conn)
{
	switch (conn->state) {
	case LMTP_GREETING:
		if (conn->reply_code != 220) {
			conn_failf(conn, "greeting rejected: %d %s", conn->reply_code, conn->reply);
			return -1;
		}
		conn_send(conn, "LHLO %s\r\n", queued_settings.myhostname);
		conn->state = LMTP_LHLO;
		return 0;
	case LMTP_LHLO:
		if (conn->reply_code != 250) {
			conn_failf(conn, "LHLO rejected: %d %s", conn->reply_code, conn->reply);
			return -1;
		}
		nhandshaking--;
		become_idle(conn);
		schedule_kick();
		return 0;
	case LMTP_ENVELOPE:
		return envelope_reply(conn);
	case LMTP_DATA_REPLIES:
		data_reply(conn);
		return 0;
	case LMTP_RSET:
		transaction_done(conn);
		return 0;
	case LMTP_QUIT:
		conn_free(conn);
		return -1;
	case LMTP_IDLE:
	case LMTP_BODY:
		break;
	}
	conn_failf(conn, "unexpected reply: %d %s", conn->reply_code, conn->reply);
	return -1;
}

/* Parse one reply line into CONN. Returns 1 when the reply is
 * complete, 0 when more lines follow, -1 when the line is invalid. */
static int
parse_reply_line(struct lmtp_conn *conn, const char *line)
{
	int code;
	const char *text;

	if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (line[3] != '\0' && line[3] != ' ' && line[3] != '-'))
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	text = line[3] != '\0' ? line + 4 : "";

	if (conn->reply_code == 0) {
		conn->reply_code = code;
		conn->reply_len = 0;
		conn->reply[0] = '\0';
	} else if (code != conn->reply_code) {
		return -1;
	}
	if (conn->state == LMTP_LHLO && conn->reply_len > 0)
		scan_extension(conn, text);
	if (conn->reply_len > 0 && conn->reply_len < LMTP_REPLY_MAX)
		conn->reply[conn->reply_len++] = ' ';
	conn->reply_len += strlcpy_x(conn->reply + conn->reply_len, text,
	    LMTP_REPLY_MAX + 1 - conn->reply_len);
	if (conn->reply_len > LMTP_REPLY_MAX)
		conn->reply_len = LMTP_REPLY_MAX;

	return line[3] == '-' ? 0 : 1;
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct lmtp_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		int rc = memchr(line, '\0', len) != NULL ? -1 : parse_reply_line(conn, line);
		char shown[256];

		if (rc < 0) {
			log_sanitize(shown, sizeof shown, line, len);
			free(line);
			conn_failf(conn, "invalid reply line: %s", shown);
			return;
		}
		free(line);
		if (rc == 0)
			continue;
		rc = handle_reply(conn);
		if (rc < 0)
			return;
		conn->reply_code = 0;
	}
	if (evbuffer_get_length(in) > LMTP_INPUT_MAX)
		conn_failf(conn, "reply line longer than %d bytes", LMTP_INPUT_MAX);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct lmtp_conn *conn = arg;

	if (conn->state == LMTP_BODY)
		feed_body(conn);
}

static const char *
state_name(enum lmtp_state state)
{
	switch (state) {
	case LMTP_GREETING: return "waiting for the greeting";
	case LMTP_LHLO: return "waiting for the LHLO reply";
	case LMTP_IDLE: return "idle";
	case LMTP_ENVELOPE: return "sending the envelope";
	case LMTP_BODY: return "sending the message";
	case LMTP_DATA_REPLIES: return "waiting for the end-of-data replies";
	case LMTP_RSET: return "waiting for the RSET reply";
	case LMTP_QUIT: return "waiting for the QUIT reply";
	}
	return "in an unknown state";
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lmtp_conn *conn = arg;
	int error = EVUTIL_SOCKET_ERROR();

	if (conn->state == LMTP_IDLE || conn->state == LMTP_QUIT) {
		conn_free(conn);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		conn_failf(conn, "timed out with %s while %s", relay_name, state_name(conn->state));
	else if (what & BEV_EVENT_EOF)
		conn_failf(conn, "lost connection with %s while %s", relay_name, state_name(conn->state));
	else
		conn_failf(conn, "connection error with %s while %s: %s", relay_name,
		    state_name(conn->state), strerror(error));
}

/* Open a connection; 0, or -1 with errno set. */
static int
conn_open(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct lmtp_conn *conn;
	int fd;

	if (strlcpy_x(sun.sun_path, queued_settings.lmtp_socket, sizeof sun.sun_path) >=
	    sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0 && errno != EINPROGRESS) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}

	conn = xcalloc(1, sizeof *conn);
	conn->data_fd = -1;
	conn->opened = time(NULL);
	conn->state = LMTP_GREETING;
	conn->bev = bufferevent_socket_new(queued_base, fd, BEV_OPT_CLOSE_ON_FREE);
	conn->idle_ev = event_new(queued_base, -1, 0, idle_cb, conn);
	bufferevent_setcb(conn->bev, conn_read_cb, conn_write_cb, conn_event_cb, conn);
	set_timeouts(conn, 1);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&connections, conn, entry);
	nconnections++;
	nhandshaking++;
	return 0;
}

static struct lmtp_conn *
find_idle(void)
{
	struct lmtp_conn *conn;

	TAILQ_FOREACH(conn, &connections, entry)
		if (conn->state == LMTP_IDLE)
			return conn;
	return NULL;
}

void
lmtp_kick(void)
{
	struct lmtp_conn *conn;

	if (stopped)
		return;
	while (scheduler_ready_count() > 0 && (conn = find_idle()) != NULL)
		start_transaction(conn, scheduler_next_ready());

	while (scheduler_ready_count() > nhandshaking &&
	    nconnections < (size_t)queued_settings.lmtp_concurrency) {
		if (conn_open() < 0) {
			char reason[1024];

			/* The reason is logged with each deferred recipient. */
			snprintf(reason, sizeof reason, "connect to %s: %s", relay_name, strerror(errno));
			defer_ready_message(reason);
		}
	}
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	lmtp_kick();
}

void
lmtp_init(void)
{
	snprintf(relay_name, sizeof relay_name, "deliverd[%s]", queued_settings.lmtp_socket);
	kick_ev = event_new(queued_base, -1, 0, kick_cb, NULL);
}

void
lmtp_stop(void)
{
	struct lmtp_conn *conn;

	stopped = 1;
	while ((conn = TAILQ_FIRST(&connections)) != NULL)
		conn_free(conn);
	if (kick_ev != NULL)
		event_free(kick_ev);
	kick_ev = NULL;
}
