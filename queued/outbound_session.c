/*
 * The SMTP client session (RFC 5321) on libevent bufferevents. It
 * connects to each address of the route in turn and sends EHLO (HELO
 * when EHLO is rejected), STARTTLS as the TLS policy requires, and AUTH
 * to a relayhost. Then come MAIL, RCPT and DATA, pipelined when the
 * server offers PIPELINING.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "config.h"
#include "dsn_orcpt.h"
#include "envelope.h"
#include "log.h"
#include "outbound_auth.h"
#include "outbound_data.h"
#include "outbound_mime7.h"
#include "outbound_session.h"
#include "outbound_tls.h"
#include "queued.h"
#include "scheduler.h"
#include "spool.h"
#include "util.h"

#define REPLY_TEXT_MAX	1000		/* reply text kept for logs and bounces */
#define REPLY_LINE_MAX	(8 * 1024)	/* bytes without a line end */
#define REPLY_LINES_MAX	100		/* lines in one multi-line reply */
#define DATA_CHUNK	(64 * 1024)	/* message bytes read per write callback */

/* The state of a job recipient in this delivery attempt. */
enum rcpt_progress {
	RCPT_OPEN,		/* for the next transaction with the current host */
	RCPT_DONE,		/* has an outcome */
	RCPT_NEXT_HOST,		/* failed temporarily here, so for the next address */
};

enum session_state {
	S_ROUTE,		/* waiting for the route */
	S_POLICY,		/* waiting for the TLS policy of the next address */
	S_CONNECT,
	S_GREETING,
	S_EHLO,
	S_HELO,
	S_STARTTLS,
	S_HANDSHAKE,
	S_AUTH,
	S_IDLE,			/* ready for a transaction */
	S_ENVELOPE,		/* MAIL, RCPT and DATA replies */
	S_BODY,
	S_DATA_DONE,
	S_RSET,
	S_QUIT,
};

struct session {
	enum session_state state;
	struct outbound_job *job;
	struct route *route;
	size_t address;			/* index into route->addresses */
	char nexthop[ROUTE_NAME_MAX];
	char relay[ROUTE_NAME_MAX + 80];	/* "host[address]:port" for logs */
	struct bufferevent *bev;
	struct outbound_tls_request tls_request;
	struct outbound_tls_policy *tls_policy;
	int tls_active;
	int tls_tried;			/* STARTTLS already failed on this address */
	int auth_step;			/* OUTBOUND_AUTH_* */
	int in_callback;		/* callers on the stack that use S after a call: free later */
	int dead;			/* freed while in_callback > 0 */
	unsigned connection;		/* counts connections, since a new bufferevent may reuse an old address */
	int server_closing;		/* a 421 came: the server closes the connection */

	/* ESMTP extensions of the current server. */
	int ext_pipelining, ext_8bitmime, ext_smtputf8, ext_starttls, ext_dsn;
	int ext_requiretls;		/* RFC 8689, counted only after STARTTLS */
	int ext_auth_plain, ext_auth_login;
	long long ext_size;		/* -1 when SIZE was not offered */

	/* The reply being read; multi-line replies are joined with spaces. */
	int reply_code;
	char reply[REPLY_TEXT_MAX + 1];
	size_t reply_len;
	size_t reply_lines;

	/* The last reason the session could not use an address. */
	char last_dsn[16];
	char last_reason[REPLY_TEXT_MAX + 200];

	/* The progress of each job recipient (enum rcpt_progress). */
	unsigned char *progress;

	/* The transaction: TXN lists the job recipients it carries. */
	size_t *txn;
	size_t ntxn;
	size_t reply_index;		/* 0: MAIL, 1..ntxn: RCPT, then DATA */
	size_t commands_sent;		/* without pipelining: commands sent so far */
	int mail_ok;
	int use_smtputf8;		/* MAIL FROM carries SMTPUTF8 */
	int body_8bit;			/* 8-bit data, declared with BODY=8BITMIME or not */
	char *converted;		/* the message made 7-bit, or NULL to send the file */
	size_t converted_len;
	long long wire_size;		/* the SIZE parameter value, when the server offers SIZE */
	unsigned char *accepted;
	size_t naccepted;
	size_t nrcpts_put_back;		/* RCPT replies of 452 left for the next transaction */
	int data_fd;
	off_t data_offset;
	struct outbound_data data;

	/* For the delays=a/b/c/d field: when this job's session work began
	 * (route lookup, or a reused connection), and when its transaction
	 * began (0 before that). */
	long long setup_usec;
	long long transaction_usec;

	/* Starts the transaction of a job handed over by session_continue
	 * from the event loop, so a run of jobs that fail at once does not
	 * recurse. */
	struct event *continue_ev;

	TAILQ_ENTRY(session) entry;
};

TAILQ_HEAD(session_list, session);
static struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void try_address(struct session *s);
static void send_next_command(struct session *s);
static void start_transaction(struct session *s);

static const char *
state_name(enum session_state state)
{
	switch (state) {
	case S_ROUTE: return "looking up the route";
	case S_POLICY: return "looking up the TLS policy";
	case S_CONNECT: return "connecting";
	case S_GREETING: return "waiting for the greeting";
	case S_EHLO: return "waiting for the EHLO reply";
	case S_HELO: return "waiting for the HELO reply";
	case S_STARTTLS: return "waiting for the STARTTLS reply";
	case S_HANDSHAKE: return "in the TLS handshake";
	case S_AUTH: return "waiting for the AUTH reply";
	case S_IDLE: return "idle";
	case S_ENVELOPE: return "waiting for the MAIL, RCPT or DATA reply";
	case S_BODY: return "sending the message";
	case S_DATA_DONE: return "waiting for the reply to the end of data";
	case S_RSET: return "waiting for the RSET reply";
	case S_QUIT: return "waiting for the QUIT reply";
	}
	return "in an unknown state";
}

/* Return the read timeout of S in STATE (Postfix's smtp_*_timeout). In
 * S_ENVELOPE it depends on the awaited reply: MAIL, RCPT or DATA. */
static long long
state_timeout(const struct session *s, enum session_state state)
{
	switch (state) {
	case S_CONNECT: return config_time("smtp_connect_timeout");
	case S_ENVELOPE:
		if (s->reply_index == 0)
			return config_time("smtp_mail_timeout");
		if (s->job != NULL && s->reply_index <= s->ntxn)
			return config_time("smtp_rcpt_timeout");
		return config_time("smtp_data_init_timeout");
	case S_DATA_DONE: return config_time("smtp_data_done_timeout");
	case S_RSET:
	case S_QUIT: return config_time("smtp_quit_timeout");
	default: return config_time("smtp_helo_timeout");
	}
}

static void
set_state(struct session *s, enum session_state state)
{
	struct timeval read_tv = { .tv_sec = state_timeout(s, state) };
	struct timeval write_tv = { .tv_sec = config_time("smtp_data_xfer_timeout") };

	s->state = state;
	if (s->bev == NULL)
		return;
	if (state == S_IDLE)
		bufferevent_set_timeouts(s->bev, NULL, NULL);
	else if (state == S_CONNECT)
		bufferevent_set_timeouts(s->bev, &read_tv, &read_tv);
	else if (state == S_BODY)
		/* The server sends nothing while it receives the message, so
		 * only the write timeout applies. It is a stall timer, since
		 * libevent restarts it on every write that makes progress. */
		bufferevent_set_timeouts(s->bev, NULL, &write_tv);
	else
		bufferevent_set_timeouts(s->bev, &read_tv, &write_tv);
}

static void
send_line(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
send_line(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(s->bev), "\r\n", 2);
}

static struct envelope_rcpt *
job_rcpt(struct session *s, size_t r)
{
	return &s->job->msg->env->rcpts[s->job->rcpts[r]];
}

/* Format USEC microseconds for delays=: "0" below 10 ms, two
 * decimals below 100 s, whole seconds above. */
static const char *
format_seconds(long long usec, char *out, size_t outsize)
{
	double seconds = (double)usec / 1e6;

	if (seconds < 0.01)
		snprintf(out, outsize, "0");
	else if (seconds < 100)
		snprintf(out, outsize, "%.2f", seconds);
	else
		snprintf(out, outsize, "%.0f", seconds);
	return out;
}

/*
 * Postfix's delays=a/b/c/d for the current job: a is the time before
 * this attempt (arrival to the job, including earlier attempts), b the
 * wait for a connection slot, c the connection set-up (DNS, greeting,
 * EHLO, TLS, AUTH), d the transaction. Returns OUT.
 */
static const char *
format_delays(const struct session *s, char *out, size_t outsize)
{
	long long now = now_usec();
	long long arrival = s->job->msg->env->arrival_usec;
	long long created = s->job->created_usec;
	long long setup = s->setup_usec != 0 ? s->setup_usec : now;
	long long transaction = s->transaction_usec != 0 ? s->transaction_usec : now;

	char a[32], b[32], c[32], d[32];

	snprintf(out, outsize, "%s/%s/%s/%s", format_seconds(created - arrival, a, sizeof a),
	    format_seconds(setup - created, b, sizeof b), format_seconds(transaction - setup, c, sizeof c),
	    format_seconds(now - transaction, d, sizeof d));
	return out;
}

/* Log and store the outcome of job recipient R. */
static void
set_outcome(struct session *s, size_t r, enum rcpt_status status, const char *dsn,
    const char *reason)
{
	char delays[128];

	static const char *names[] = {
		[RCPT_SENT] = "sent", [RCPT_FAILED] = "bounced", [RCPT_DEFERRED] = "deferred",
	};

	s->progress[r] = RCPT_DONE;
	envelope_rcpt_set(job_rcpt(s, r), status, dsn, reason);
	scheduler_log_rcpt_delays(s->job->msg, s->job->rcpts[r],
	    s->relay[0] != '\0' ? s->relay : "none", format_delays(s, delays, sizeof delays),
	    names[status], reason);
}

/* Return the recipient status for a reply and store its enhanced code in
 * DSN. Without an enhanced code in TEXT, DSN is CLASS.0.0 (4.0.0 for any
 * class other than 2 and 5). */
static enum rcpt_status
reply_outcome(int code, const char *text, char *dsn, size_t dsnsize)
{
	int class = code / 100;
	unsigned a, b, c;
	int end = 0;

	if (sscanf(text, "%1u.%3u.%3u%n", &a, &b, &c, &end) == 3 && (int)a == class &&
	    (text[end] == ' ' || text[end] == '\0'))
		snprintf(dsn, dsnsize, "%u.%u.%u", a, b, c);
	else
		snprintf(dsn, dsnsize, "%d.0.0", class == 2 || class == 5 ? class : 4);
	if (class == 2)
		return RCPT_SENT;
	return class == 5 ? RCPT_FAILED : RCPT_DEFERRED;
}

/* Return whether the route has an address after the current one. */
static int
more_addresses(const struct session *s)
{
	return s->route != NULL && s->address + 1 < s->route->naddresses;
}

/*
 * Store the current reply as the outcome of job recipient R. As in
 * Postfix's SMTP client (smtp_bulk_fail in smtp_trouble.c), a temporary
 * failure is final only at the last address of the route. Before that the recipient waits for the next
 * address, and the reply is kept as the reason in case none accepts it.
 */
static void
reply_to_outcome(struct session *s, size_t r)
{
	char dsn[16], *reason = xasprintf("%d %s", s->reply_code, s->reply);
	enum rcpt_status status = reply_outcome(s->reply_code, s->reply, dsn, sizeof dsn);

	if (status == RCPT_DEFERRED && more_addresses(s)) {
		char shown[REPLY_TEXT_MAX + 100];

		s->progress[r] = RCPT_NEXT_HOST;
		snprintf(s->last_dsn, sizeof s->last_dsn, "%s", dsn);
		snprintf(s->last_reason, sizeof s->last_reason, "%s", reason);
		log_sanitize(shown, sizeof shown, reason, strlen(reason));
		log_info("%s: %s replied %s for <%s>; trying the next address", s->job->msg->env->id,
		    s->relay, shown, job_rcpt(s, r)->address);
		free(reason);
		return;
	}
	set_outcome(s, r, status, dsn, reason);
	free(reason);
}

/* Give every job recipient without an outcome in this attempt DSN and REASON. */
static void
fail_open_rcpts(struct session *s, const char *dsn, const char *reason)
{
	enum rcpt_status status = dsn[0] == '5' ? RCPT_FAILED : RCPT_DEFERRED;

	for (size_t r = 0; r < s->job->nrcpts; r++)
		if (s->progress[r] != RCPT_DONE)
			set_outcome(s, r, status, dsn, reason);
}

static void
close_data(struct session *s)
{
	if (s->data_fd >= 0)
		close(s->data_fd);
	s->data_fd = -1;
	free(s->converted);
	s->converted = NULL;
	s->converted_len = 0;
	free(s->accepted);
	s->accepted = NULL;
	free(s->txn);
	s->txn = NULL;
	s->ntxn = 0;
}

static void
drop_connection(struct session *s)
{
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	s->bev = NULL;
	s->tls_active = 0;
	s->server_closing = 0;
	if (s->tls_policy != NULL)
		outbound_tls_policy_free(s->tls_policy);
	s->tls_policy = NULL;
}

/* Free S. While read_cb runs on S, only mark it, so that read_cb frees it
 * afterwards. */
static void
session_free(struct session *s)
{
	TAILQ_REMOVE(&sessions, s, entry);
	drop_connection(s);
	close_data(s);
	free(s->progress);
	s->progress = NULL;
	route_free(s->route);
	s->route = NULL;
	if (s->continue_ev != NULL)
		event_free(s->continue_ev);
	s->continue_ev = NULL;
	if (s->in_callback) {
		s->dead = 1;
		return;
	}
	free(s);
}

/* Free S, which carries no job, and let the scheduler start another session. */
static void
close_session(struct session *s)
{
	char nexthop[ROUTE_NAME_MAX];

	snprintf(nexthop, sizeof nexthop, "%s", s->nexthop);
	session_free(s);
	outbound_session_closed(nexthop);
}

/* Finish the job on S. The connection is kept only when KEEP is set and no
 * 421 came, because the server closes after a 421 (RFC 5321 section 3.8). */
static void
finish_job(struct session *s, int keep)
{
	struct outbound_job *job = s->job;

	close_data(s);
	free(s->progress);
	s->progress = NULL;
	s->job = NULL;
	if (keep && !s->server_closing) {
		set_state(s, S_IDLE);
		outbound_job_done(job, s);
		return;
	}
	session_free(s);
	outbound_job_done(job, NULL);
}

/* Leave the current address and try the job recipients without an
 * outcome at the next one. */
static void
retry_at_next_address(struct session *s)
{
	for (size_t r = 0; r < s->job->nrcpts; r++)
		if (s->progress[r] == RCPT_NEXT_HOST)
			s->progress[r] = RCPT_OPEN;
	close_data(s);
	drop_connection(s);
	s->address++;
	s->tls_tried = 0;
	try_address(s);
}

/*
 * End the session because it cannot go on. Recipients without an outcome
 * get DSN and REASON, or with a 4.x.x DSN go to the next address if there
 * is one. After the end of the data they stay deferred, because the
 * server may have taken the message, and another address would deliver
 * it twice.
 */
static void
abort_session(struct session *s, const char *dsn, const char *reason)
{
	const char *id = s->job != NULL ? s->job->msg->env->id : s->nexthop;
	char shown[REPLY_TEXT_MAX + 300];

	log_sanitize(shown, sizeof shown, reason, strlen(reason));
	log_warn("%s: SMTP session with %s ended: %s", id, s->relay[0] != '\0' ? s->relay : s->nexthop, shown);
	if (s->job == NULL) {
		close_session(s);
		return;
	}
	if (dsn[0] == '4' && s->state != S_DATA_DONE && more_addresses(s)) {
		snprintf(s->last_dsn, sizeof s->last_dsn, "%s", dsn);
		snprintf(s->last_reason, sizeof s->last_reason, "%s", reason);
		retry_at_next_address(s);
		return;
	}
	fail_open_rcpts(s, dsn, reason);
	finish_job(s, 0);
}

/* Record why this address cannot be used and try the next one. Call it only
 * before a transaction starts, and abort_session after that. */
static void
next_address(struct session *s, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
next_address(struct session *s, const char *dsn, const char *fmt, ...)
{
	char shown[sizeof s->last_reason];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->last_reason, sizeof s->last_reason, fmt, ap);
	va_end(ap);
	snprintf(s->last_dsn, sizeof s->last_dsn, "%s", dsn);
	log_sanitize(shown, sizeof shown, s->last_reason, strlen(s->last_reason));
	log_info("%s: %s", s->job != NULL ? s->job->msg->env->id : s->nexthop, shown);
	drop_connection(s);
	s->address++;
	s->tls_tried = 0;
	try_address(s);
}

/* Count the job recipients in PROGRESS. */
static size_t
count_rcpts(const struct session *s, enum rcpt_progress progress)
{
	size_t n = 0;

	for (size_t r = 0; r < s->job->nrcpts; r++)
		n += s->progress[r] == progress;
	return n;
}

/*
 * End the transaction on S. Open recipients go in another transaction
 * on the same connection while KEEP is set and the server did not send
 * 421. Recipients that failed temporarily here go to the next address,
 * with the open ones when the connection cannot carry them. The job
 * ends when every recipient has an outcome.
 */
static void
transaction_done(struct session *s, int keep)
{
	int usable = keep && !s->server_closing;

	close_data(s);
	if (usable && count_rcpts(s, RCPT_OPEN) > 0) {
		set_state(s, S_IDLE);
		start_transaction(s);
		return;
	}
	if (count_rcpts(s, RCPT_NEXT_HOST) > 0 ||
	    (count_rcpts(s, RCPT_OPEN) > 0 && more_addresses(s))) {
		retry_at_next_address(s);
		return;
	}
	if (count_rcpts(s, RCPT_OPEN) > 0) {
		char *reason = xasprintf("the session with %s ended before every recipient was sent", s->relay);

		fail_open_rcpts(s, "4.4.2", reason);
		free(reason);
	}
	finish_job(s, keep);
}

/* Quit politely, then free the session. */
void
session_quit(struct session *s)
{
	if (s->bev == NULL) {
		close_session(s);
		return;
	}
	send_line(s, "QUIT");
	set_state(s, S_QUIT);
}

void
session_close_all(void)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&sessions)) != NULL) {
		if (s->job != NULL) {
			free(s->job->rcpts);
			free(s->job);
		}
		session_free(s);
	}
}

/* Parse one reply line into S. Returns 1 when the reply is complete, 0
 * when more lines follow, -1 when the line is not a valid reply line. */
static int
parse_reply_line(struct session *s, const char *line, size_t len)
{
	int code;
	const char *text;

	if (len < 3 || memchr(line, '\0', len) != NULL || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (line[3] != '\0' && line[3] != ' ' && line[3] != '-'))
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	text = line[3] != '\0' ? line + 4 : "";

	if (s->reply_code == 0) {
		s->reply_code = code;
		s->reply_len = 0;
		s->reply_lines = 0;
		s->reply[0] = '\0';
	} else if (code != s->reply_code) {
		return -1;
	}
	if (++s->reply_lines > REPLY_LINES_MAX)
		return -1;

	/* Extensions are the lines after the first of the EHLO reply. */
	if (s->state == S_EHLO && s->reply_lines > 1) {
		if (ascii_casecmp(text, "PIPELINING") == 0)
			s->ext_pipelining = 1;
		else if (ascii_casecmp(text, "8BITMIME") == 0)
			s->ext_8bitmime = 1;
		else if (ascii_casecmp(text, "SMTPUTF8") == 0)
			s->ext_smtputf8 = 1;
		else if (ascii_casecmp(text, "STARTTLS") == 0)
			s->ext_starttls = 1;
		else if (ascii_casecmp(text, "DSN") == 0)
			s->ext_dsn = 1;
		else if (ascii_casecmp(text, "REQUIRETLS") == 0)
			s->ext_requiretls = 1;
		else if (ascii_ncasecmp(text, "SIZE", 4) == 0 && (text[4] == '\0' || text[4] == ' '))
			s->ext_size = text[4] == ' ' ? atoll(text + 5) : 0;
		else if (ascii_ncasecmp(text, "AUTH ", 5) == 0 || ascii_ncasecmp(text, "AUTH=", 5) == 0) {
			char upper[256];

			snprintf(upper, sizeof upper, " %s ", text + 5);
			for (char *p = upper; *p != '\0'; p++)
				if (*p >= 'a' && *p <= 'z')
					*p = (char)(*p - 'a' + 'A');
			s->ext_auth_plain |= strstr(upper, " PLAIN ") != NULL;
			s->ext_auth_login |= strstr(upper, " LOGIN ") != NULL;
		}
	}

	if (s->reply_len > 0 && s->reply_len < REPLY_TEXT_MAX)
		s->reply[s->reply_len++] = ' ';
	s->reply_len += strlcpy_x(s->reply + s->reply_len, text, REPLY_TEXT_MAX + 1 - s->reply_len);
	if (s->reply_len > REPLY_TEXT_MAX)
		s->reply_len = REPLY_TEXT_MAX;
	return line[3] == '-' ? 0 : 1;
}

static void
reset_extensions(struct session *s)
{
	s->ext_pipelining = s->ext_8bitmime = s->ext_smtputf8 = s->ext_starttls = 0;
	s->ext_dsn = s->ext_auth_plain = s->ext_auth_login = s->ext_requiretls = 0;
	s->ext_size = -1;
}

static const char *
helo_name(void)
{
	const char *name = config_string("smtp_helo_name");

	return name[0] != '\0' ? name : queued_settings.myhostname;
}

static void
send_ehlo(struct session *s)
{
	reset_extensions(s);
	send_line(s, "EHLO %s", helo_name());
	set_state(s, S_EHLO);
}

/* ---- the transaction ---- */

static const char *
message_attr(struct session *s, const char *key)
{
	return envelope_attr(s->job->msg->env, key);
}

static int
attr_is(struct session *s, const char *key, const char *value)
{
	const char *v = message_attr(s, key);

	return v != NULL && ascii_casecmp(v, value) == 0;
}

static int
is_ascii(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
		if (*p > 127)
			return 0;
	return 1;
}

/* Return whether the message really needs SMTPUTF8 (RFC 6531), which is
 * when a sender, a recipient of this job or the header is non-ASCII. A read
 * error counts as needing it. */
static int
needs_smtputf8(struct session *s)
{
	struct envelope *env = s->job->msg->env;

	if (!is_ascii(env->sender))
		return 1;
	for (size_t r = 0; r < s->job->nrcpts; r++)
		if (!is_ascii(job_rcpt(s, r)->address))
			return 1;
	return outbound_data_header_has_8bit(s->data_fd) != 0;
}

/*
 * RFC 6152 section 3: a server without 8BITMIME gets 8-bit content
 * converted, or the message is returned. Read the message and convert
 * its 8-bit body parts to quoted-printable; feed_body sends the result.
 * Returns 0, or -1 after failing every recipient (8-bit header, read
 * error).
 */
static int
convert_to_7bit(struct session *s)
{
	struct stat st;
	char err[256], *data;
	ssize_t n;

	if (fstat(s->data_fd, &st) < 0) {
		snprintf(err, sizeof err, "stat queue file: %s", strerror(errno));
		fail_open_rcpts(s, "4.3.0", err);
		return -1;
	}
	data = xmalloc((size_t)st.st_size + 1);
	n = pread(s->data_fd, data, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		snprintf(err, sizeof err, "read queue file: %s", n < 0 ? strerror(errno) : "short read");
		free(data);
		fail_open_rcpts(s, "4.3.0", err);
		return -1;
	}

	s->converted = outbound_mime7_convert(data, (size_t)n, &s->converted_len, err, sizeof err);
	free(data);
	if (s->converted == NULL) {
		fail_open_rcpts(s, "5.6.3", err);
		return -1;
	}
	log_info("%s: %s does not offer 8BITMIME: 8-bit body parts are sent as quoted-printable",
	    s->job->msg->env->id, s->relay);
	return 0;
}

/* Measure the message as it goes on the wire, which is larger than the
 * queue file with its LF line ends, and check it against the SIZE that
 * the server announced. Returns 0, or -1 after failing every recipient. */
static int
check_size(struct session *s)
{
	char *reason;

	s->wire_size = outbound_data_wire_size(s->data_fd, s->converted, s->converted_len);
	if (s->wire_size < 0) {
		reason = xasprintf("read queue file: %s", strerror(errno));
		fail_open_rcpts(s, "4.3.0", reason);
		free(reason);
		return -1;
	}
	if (s->ext_size == 0 || s->wire_size <= s->ext_size)
		return 0;

	reason = xasprintf("message size %lld exceeds the limit of %lld that the host announced",
	    s->wire_size, s->ext_size);
	fail_open_rcpts(s, "5.3.4", reason);
	free(reason);
	return -1;
}

/* Check what the server must offer for this message. Returns 0, or -1
 * after failing every recipient. */
static int
check_extensions(struct session *s)
{
	s->use_smtputf8 = attr_is(s, "smtputf8", "yes");
	if (s->use_smtputf8 && !s->ext_smtputf8) {
		if (needs_smtputf8(s)) {
			fail_open_rcpts(s, "5.6.7", "SMTPUTF8 is required, but was not offered by the host");
			return -1;
		}
		/* The client requested SMTPUTF8, but the envelope and header
		 * are ASCII, so the message goes without it. */
		s->use_smtputf8 = 0;
	}

	/* smtpd stores body=7BIT when MAIL FROM had no BODY parameter,
	 * whatever the data contains, so undeclared data is scanned. A read
	 * error counts as 8-bit, and convert_to_7bit reports it. */
	if (attr_is(s, "body", "8BITMIME") && s->ext_8bitmime)
		s->body_8bit = 1;
	else
		s->body_8bit = outbound_data_has_8bit(s->data_fd) != 0;
	if (s->body_8bit && !s->ext_8bitmime && convert_to_7bit(s) < 0)
		return -1;
	if (s->ext_size >= 0)
		return check_size(s);
	return 0;
}

/* Append TEXT to OUT as xtext (RFC 3461 section 4): printable ASCII
 * except "+" and "=" as itself, every other octet as "+XX". */
static void
add_xtext(struct evbuffer *out, const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		if (*p >= 33 && *p <= 126 && *p != '+' && *p != '=')
			evbuffer_add(out, p, 1);
		else
			evbuffer_add_printf(out, "+%02X", *p);
	}
}

static void
send_mail_from(struct session *s)
{
	struct envelope *env = s->job->msg->env;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	const char *ret = message_attr(s, "ret"), *envid = message_attr(s, "envid");

	evbuffer_add_printf(out, "MAIL FROM:<%s>", env->sender);
	if (s->ext_size >= 0)
		evbuffer_add_printf(out, " SIZE=%lld", s->wire_size);
	if (s->ext_8bitmime && s->body_8bit)
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (s->use_smtputf8)
		evbuffer_add_printf(out, " SMTPUTF8");
	if (s->tls_request.requiretls)
		evbuffer_add_printf(out, " REQUIRETLS");
	if (s->ext_dsn && ret != NULL)
		evbuffer_add_printf(out, " RET=%s", ret);
	if (s->ext_dsn && envid != NULL) {
		evbuffer_add_printf(out, " ENVID=");
		add_xtext(out, envid);
	}
	evbuffer_add(out, "\r\n", 2);
}

static void
send_rcpt_to(struct session *s, size_t r)
{
	struct envelope_rcpt *rcpt = job_rcpt(s, r);
	struct evbuffer *out = bufferevent_get_output(s->bev);

	evbuffer_add_printf(out, "RCPT TO:<%s>", rcpt->address);
	if (s->ext_dsn && rcpt->notify != NULL)
		evbuffer_add_printf(out, " NOTIFY=%s", rcpt->notify);
	/* The envelope keeps ORCPT decoded, as "type;address". A queue file
	 * written before queued checked ORCPT at commit may hold an invalid
	 * one, which is left out rather than sent as a malformed parameter. */
	if (s->ext_dsn && rcpt->orcpt != NULL && dsn_orcpt_valid(rcpt->orcpt)) {
		const char *semicolon = strchr(rcpt->orcpt, ';');

		evbuffer_add_printf(out, " ORCPT=%.*s;", (int)(semicolon - rcpt->orcpt), rcpt->orcpt);
		add_xtext(out, semicolon + 1);
	} else if (s->ext_dsn && rcpt->orcpt != NULL) {
		log_warn("%s: ORCPT of <%s> in the queue file is invalid, so RCPT TO goes without it", s->job->msg->env->id,
		    rcpt->address);
	}
	evbuffer_add(out, "\r\n", 2);
}

/* Send envelope command number N: 0 is MAIL, 1..ntxn RCPT, then DATA. */
static void
send_command(struct session *s, size_t n)
{
	if (n == 0)
		send_mail_from(s);
	else if (n <= s->ntxn)
		send_rcpt_to(s, s->txn[n - 1]);
	else
		send_line(s, "DATA");
}

/* Without PIPELINING: send the next command once the last reply is in. */
static void
send_next_command(struct session *s)
{
	if (s->commands_sent <= s->ntxn + 1)
		send_command(s, s->commands_sent++);
}

/* Put the open job recipients in the transaction, at most
 * smtp_destination_recipient_limit of them. */
static void
select_transaction_rcpts(struct session *s)
{
	size_t limit = (size_t)config_int("smtp_destination_recipient_limit");

	s->txn = xcalloc(s->job->nrcpts ? s->job->nrcpts : 1, sizeof *s->txn);
	s->ntxn = 0;
	for (size_t r = 0; r < s->job->nrcpts && s->ntxn < limit; r++)
		if (s->progress[r] == RCPT_OPEN)
			s->txn[s->ntxn++] = r;
}

static void
start_transaction(struct session *s)
{
	struct envelope *env = s->job->msg->env;

	s->transaction_usec = now_usec();
	s->reply_index = 0;
	s->commands_sent = 0;
	s->mail_ok = 0;
	s->naccepted = 0;
	s->nrcpts_put_back = 0;
	s->accepted = xcalloc(s->job->nrcpts ? s->job->nrcpts : 1, 1);
	select_transaction_rcpts(s);
	s->data_fd = spool_open_data(&queued_spool, env->id);
	if (s->data_fd < 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "cannot open the queue file: %s", strerror(errno));
		log_error("%s: %s", env->id, reason);
		fail_open_rcpts(s, "4.3.0", reason);
		finish_job(s, 1);
		return;
	}
	if (check_extensions(s) < 0) {
		finish_job(s, 1);
		return;
	}

	set_state(s, S_ENVELOPE);
	if (s->ext_pipelining) {
		while (s->commands_sent <= s->ntxn + 1)
			send_command(s, s->commands_sent++);
	} else {
		send_next_command(s);
	}
}

static void
feed_body(struct session *s)
{
	char buf[DATA_CHUNK];
	struct evbuffer *out = bufferevent_get_output(s->bev);
	ssize_t n;

	if (s->converted != NULL) {
		size_t left = s->converted_len - (size_t)s->data_offset;

		n = (ssize_t)(left < sizeof buf ? left : sizeof buf);
		/* Keep each CRLF in one chunk, since outbound_data_add drops a
		 * CR only when the LF follows in the same call. */
		if (n > 1 && (size_t)n < left && s->converted[s->data_offset + n - 1] == '\r')
			n--;
		memcpy(buf, s->converted + s->data_offset, (size_t)n);
	} else {
		n = pread(s->data_fd, buf, sizeof buf, s->data_offset);
	}

	if (n < 0) {
		char reason[256];

		snprintf(reason, sizeof reason, "read queue file: %s", strerror(errno));
		abort_session(s, "4.3.0", reason);
		return;
	}
	if (n > 0) {
		s->data_offset += n;
		outbound_data_add(&s->data, out, buf, (size_t)n);
		return;
	}
	outbound_data_finish(&s->data, out);
	set_state(s, S_DATA_DONE);
}

static void
start_body(struct session *s)
{
	set_state(s, S_BODY);
	s->data_offset = 0;
	outbound_data_init(&s->data);
	feed_body(s);
}

/* Handle one reply to MAIL, RCPT or DATA. */
static void
envelope_reply(struct session *s)
{
	size_t index = s->reply_index++;
	size_t ntxn = s->ntxn;
	int class = s->reply_code / 100;

	set_state(s, S_ENVELOPE);	/* the timeout of the next reply */

	if (index == 0) {
		s->mail_ok = class == 2;
		if (!s->mail_ok)
			for (size_t i = 0; i < ntxn; i++)
				reply_to_outcome(s, s->txn[i]);
	} else if (index <= ntxn) {
		size_t r = s->txn[index - 1];

		if (s->mail_ok && class == 2) {
			s->accepted[r] = 1;
			s->naccepted++;
		} else if (s->mail_ok && s->reply_code == 452 && s->naccepted > 0) {
			/* RFC 5321 section 4.5.3.1.10: the server takes no more
			 * recipients in this transaction, so the rest go in the
			 * next one. Some recipient was accepted, so the next
			 * transaction has fewer to carry. */
			if (s->nrcpts_put_back++ == 0)
				log_info("%s: %s accepted %zu recipients, then replied 452; the rest go in the next transaction",
				    s->job->msg->env->id, s->relay, s->naccepted);
		} else if (s->mail_ok) {
			reply_to_outcome(s, r);
		}
	} else {
		if (s->reply_code == 354 && s->naccepted > 0) {
			start_body(s);
			return;
		}
		/* DATA was rejected, or accepted with no recipient, so the
		 * transaction ends here. */
		if (s->reply_code == 354) {
			abort_session(s, "4.4.2", "the host accepted DATA with no recipient accepted");
			return;
		}
		/* 354 is the only positive reply to DATA. Any other 2xx or
		 * 3xx means that the server lost track of the commands, and no
		 * message data was sent. */
		if (class == 2 || class == 3) {
			char reason[REPLY_TEXT_MAX + 100];

			snprintf(reason, sizeof reason, "protocol error: %d %s (in reply to DATA)",
			    s->reply_code, s->reply);
			abort_session(s, "4.5.0", reason);
			return;
		}
		for (size_t i = 0; i < ntxn; i++)
			if (s->accepted[s->txn[i]])
				reply_to_outcome(s, s->txn[i]);
		send_line(s, "RSET");
		set_state(s, S_RSET);
		return;
	}

	if (!s->ext_pipelining) {
		/* Without PIPELINING a server replies to one command at a
		 * time. More reply data already waiting is a reply to a command
		 * not yet sent, and would be taken for the reply to the next one. */
		if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
			abort_session(s, "4.5.0", "protocol error: the host sent replies to commands it has not received");
			return;
		}
		/* Stop early when MAIL failed or no recipient was accepted. */
		if (!s->mail_ok || (index == ntxn && s->naccepted == 0)) {
			send_line(s, "RSET");
			set_state(s, S_RSET);
			return;
		}
		send_next_command(s);
	}
}

static void
data_done_reply(struct session *s)
{
	for (size_t r = 0; r < s->job->nrcpts; r++)
		if (s->accepted[r])
			reply_to_outcome(s, r);
	transaction_done(s, 1);
}

/* ---- connection set-up ---- */

static void
policy_failed(struct session *s)
{
	char dsn[16], reason[OUTBOUND_TLS_TEXT_MAX];

	snprintf(dsn, sizeof dsn, "%s", s->tls_policy->dsn);
	snprintf(reason, sizeof reason, "%s", s->tls_policy->reason);
	next_address(s, dsn, "%s", reason);
}

/* Return the DSN of a TLS failure with this address. A REQUIRETLS
 * message gets 5.7.30, so its recipients bounce once no address is left. */
static const char *
tls_dsn(const struct session *s, const char *dsn)
{
	return s->tls_request.requiretls ? "5.7.30" : dsn;
}

/*
 * Handle a failed TLS setup with the current address. At level may the
 * client reconnects to the same address once without STARTTLS, so that
 * opportunistic TLS never costs a delivery. Other levels try the next address.
 */
static void
tls_failed(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
tls_failed(struct session *s, const char *fmt, ...)
{
	char reason[sizeof s->last_reason], shown[sizeof s->last_reason];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	if (s->tls_policy->level != OUTBOUND_TLS_MAY || s->tls_tried) {
		next_address(s, tls_dsn(s, "4.7.5"), "%s", reason);
		return;
	}

	log_sanitize(shown, sizeof shown, reason, strlen(reason));
	log_info("%s: %s; trying %s again without TLS", s->job->msg->env->id, shown, s->relay);
	drop_connection(s);
	s->tls_tried = 1;
	try_address(s);
}

/* Return the OpenSSL error of BEV's handshake, or "no details". */
static const char *
tls_error_text(struct bufferevent *bev)
{
	static char text[256];
	unsigned long error = bufferevent_get_openssl_error(bev);

	if (error == 0)
		return "no details";
	ERR_error_string_n(error, text, sizeof text);
	return text;
}

/* Start the handshake on the connection after a 220 to STARTTLS. */
static void
start_tls(struct session *s)
{
	char err[256] = "";
	SSL *ssl = outbound_tls_ssl_new(s->tls_policy, &s->tls_request, err, sizeof err);
	struct bufferevent *tls;

	if (ssl == NULL) {
		tls_failed(s, "cannot start TLS with %s: %s", s->relay, err);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		SSL_free(ssl);
		next_address(s, tls_dsn(s, "4.7.5"), "%s sent data after its STARTTLS reply (command injection)",
		    s->relay);
		return;
	}
	tls = bufferevent_openssl_filter_new(queued_base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		next_address(s, "4.7.5", "cannot start TLS with %s: out of memory", s->relay);
		return;
	}
	s->bev = tls;
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	set_state(s, S_HANDSHAKE);
}

static void
handshake_done(struct session *s)
{
	char dsn[16] = "4.7.5", reason[OUTBOUND_TLS_TEXT_MAX] = "";
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	char description[128];

	if (outbound_tls_check(ssl, s->tls_policy, &s->tls_request, dsn, reason, sizeof reason) < 0) {
		next_address(s, dsn, "TLS with %s not accepted: %s", s->relay, reason);
		return;
	}
	s->tls_active = 1;
	snprintf(description, sizeof description, "%s with cipher %s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl));
	log_info("%s: TLS connection established to %s: %s (policy %s from %s)", s->job->msg->env->id,
	    s->relay, description, outbound_tls_level_name(s->tls_policy->level), s->tls_policy->source);
	send_ehlo(s);
}

/* Continue after EHLO or HELO with STARTTLS, AUTH or the first transaction. */
static void
greeted(struct session *s)
{
	enum outbound_tls_level level = s->tls_policy->level;

	if (!s->tls_active && level != OUTBOUND_TLS_NONE) {
		if (s->ext_starttls && !s->tls_tried) {
			send_line(s, "STARTTLS");
			set_state(s, S_STARTTLS);
			return;
		}
		if (level != OUTBOUND_TLS_MAY) {
			next_address(s, tls_dsn(s, "4.7.4"),
			    "%sTLS is required (level %s from %s), but %s does not offer STARTTLS",
			    s->tls_request.requiretls ? "REQUIRETLS support required: " : "",
			    outbound_tls_level_name(level), s->tls_policy->source, s->relay);
			return;
		}
	}

	/* RFC 8689: the EHLO reply after STARTTLS must offer REQUIRETLS,
	 * or the message does not go to this host. */
	if (s->tls_request.requiretls && (!s->tls_active || !s->ext_requiretls)) {
		next_address(s, "5.7.30", "REQUIRETLS support required, but %s does not offer REQUIRETLS%s",
		    s->relay, s->tls_active ? " after STARTTLS" : " without TLS");
		return;
	}
	if (s->route->relay && outbound_auth_wanted()) {
		char err[256];

		if (outbound_auth_start(s, &s->auth_step, s->tls_active, s->ext_auth_plain, s->ext_auth_login, err,
		    sizeof err) < 0) {
			next_address(s, "4.7.0", "%s", err);
			return;
		}
		set_state(s, S_AUTH);
		return;
	}
	set_state(s, S_IDLE);
	start_transaction(s);
}

static void
handle_reply(struct session *s)
{
	if (s->reply_code == 421)
		s->server_closing = 1;

	switch (s->state) {
	case S_GREETING:
		/* A 5xx greeting defers like a 4xx one, as with Postfix's
		 * default smtp_skip_5xx_greeting = yes. The next address may
		 * accept the mail, and a host that rejects every session gives
		 * no verdict on the recipients. */
		if (s->reply_code != 220) {
			next_address(s, "4.0.0", "host %s refused to talk to me: %d %s", s->relay,
			    s->reply_code, s->reply);
			return;
		}
		send_ehlo(s);
		return;
	case S_EHLO:
		if (s->reply_code / 100 == 5 && !s->tls_active) {
			reset_extensions(s);
			send_line(s, "HELO %s", helo_name());
			set_state(s, S_HELO);
			return;
		}
		if (s->reply_code != 250) {
			next_address(s, "4.0.0", "host %s rejected EHLO: %d %s", s->relay, s->reply_code, s->reply);
			return;
		}
		greeted(s);
		return;
	case S_HELO:
		if (s->reply_code != 250) {
			next_address(s, "4.0.0", "host %s rejected HELO: %d %s", s->relay, s->reply_code, s->reply);
			return;
		}
		greeted(s);
		return;
	case S_STARTTLS:
		if (s->reply_code != 220) {
			s->tls_tried = 1;
			if (s->tls_policy->level == OUTBOUND_TLS_MAY) {
				/* Opportunistic TLS: go on in plaintext. */
				greeted(s);
				return;
			}
			next_address(s, tls_dsn(s, "4.7.4"), "host %s rejected STARTTLS: %d %s", s->relay,
			    s->reply_code, s->reply);
			return;
		}
		start_tls(s);
		return;
	case S_AUTH: {
		int rc = outbound_auth_reply(s, &s->auth_step, s->reply_code);

		if (rc == 0)
			return;
		if (rc < 0) {
			/* Wrong credentials are for the admin to fix, so even a
			 * 5xx defers, like Postfix's default
			 * smtp_sasl_auth_soft_bounce = yes. */
			next_address(s, s->reply_code / 100 == 5 ? "4.7.8" : "4.7.0",
			    "SASL authentication to %s failed: %d %s", s->relay, s->reply_code, s->reply);
			return;
		}
		set_state(s, S_IDLE);
		start_transaction(s);
		return;
	}
	case S_ENVELOPE:
		envelope_reply(s);
		return;
	case S_DATA_DONE:
		data_done_reply(s);
		return;
	case S_RSET:
		transaction_done(s, s->reply_code == 250);
		return;
	case S_QUIT:
	case S_IDLE:
		/* The reply to QUIT, or an unexpected reply such as a 421
		 * before the server closes, ends the session. A job waiting to
		 * start on it is deferred. */
		if (s->job != NULL) {
			char reason[REPLY_TEXT_MAX + 100];

			snprintf(reason, sizeof reason, "%d %s", s->reply_code, s->reply);
			abort_session(s, s->reply_code / 100 == 5 ? "5.0.0" : "4.0.0", reason);
			return;
		}
		close_session(s);
		return;
	default:
		break;
	}
	abort_session(s, "4.4.2", "unexpected reply");
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	unsigned connection = s->connection;
	char *line;
	size_t len;

	s->in_callback++;
	while (!s->dead && s->bev == bev && s->connection == connection &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		int rc = parse_reply_line(s, line, len);

		if (rc < 0) {
			char shown[256], reason[REPLY_TEXT_MAX];

			log_sanitize(shown, sizeof shown, line, len);
			snprintf(reason, sizeof reason, "invalid reply from %s while %s: %s", s->relay,
			    state_name(s->state), shown);
			if (s->state <= S_AUTH && s->job != NULL)
				next_address(s, "4.4.2", "%s", reason);
			else
				abort_session(s, "4.4.2", reason);
		} else if (rc == 1) {
			handle_reply(s);
			s->reply_code = 0;	/* S stays allocated until this callback ends */
		}
		free(line);
	}
	if (!s->dead && s->bev == bev && s->connection == connection &&
	    evbuffer_get_length(in) > REPLY_LINE_MAX) {
		char reason[REPLY_TEXT_MAX];

		snprintf(reason, sizeof reason, "reply line from %s longer than %d bytes", s->relay,
		    REPLY_LINE_MAX);
		abort_session(s, "4.4.2", reason);
	}
	if (--s->in_callback == 0 && s->dead)
		free(s);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == S_BODY)
		feed_body(s);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	int error = EVUTIL_SOCKET_ERROR();
	char reason[REPLY_TEXT_MAX];

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == S_HANDSHAKE) {
			handshake_done(s);
			return;
		}
		set_state(s, S_GREETING);
		return;
	}

	if (s->state == S_QUIT || (s->state == S_IDLE && s->job == NULL)) {
		close_session(s);
		return;
	}

	if (what & BEV_EVENT_TIMEOUT)
		snprintf(reason, sizeof reason, "conversation with %s timed out while %s", s->relay,
		    state_name(s->state));
	else if (what & BEV_EVENT_EOF)
		snprintf(reason, sizeof reason, "lost connection with %s while %s", s->relay,
		    state_name(s->state));
	else if (s->state == S_HANDSHAKE)
		snprintf(reason, sizeof reason, "TLS handshake with %s failed: %s", s->relay,
		    tls_error_text(bev));
	else
		snprintf(reason, sizeof reason, "%s %s: %s", s->state == S_CONNECT ? "connect to" :
		    "connection error with", s->relay, strerror(error));

	if (s->state == S_HANDSHAKE)
		tls_failed(s, "%s", reason);
	else if (s->state <= S_AUTH)
		next_address(s, "4.4.1", "%s", reason);
	else
		abort_session(s, "4.4.2", reason);
}

static void
connect_address(struct session *s)
{
	struct route_address *a = &s->route->addresses[s->address];
	struct bufferevent *bev;
	unsigned connection;
	int fd, rc, saved_errno;

	s->reply_code = 0;
	fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		next_address(s, "4.4.1", "socket for %s: %s", s->relay, strerror(errno));
		return;
	}
	bev = bufferevent_socket_new(queued_base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->bev = bev;
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, s);
	set_state(s, S_CONNECT);
	bufferevent_enable(bev, EV_READ | EV_WRITE);

	/* A connect() that fails at once (ENETUNREACH) makes this return -1
	 * without a callback, as measured with libevent 2.1.12. S is held
	 * across the call all the same, so that an event callback run from
	 * inside it could not free S under this function. */
	connection = ++s->connection;
	s->in_callback++;
	rc = bufferevent_socket_connect(bev, (struct sockaddr *)&a->sa, (int)a->salen);
	saved_errno = errno;
	s->in_callback--;
	if (s->dead) {
		if (s->in_callback == 0)
			free(s);
		return;
	}
	if (rc < 0 && s->connection == connection)
		next_address(s, "4.4.1", "connect to %s: %s", s->relay, strerror(saved_errno));
}

static void
policy_cb(struct outbound_tls_policy *policy, void *arg)
{
	struct session *s = arg;

	s->tls_policy = policy;
	if (policy->dsn[0] != '\0') {
		policy_failed(s);
		return;
	}
	connect_address(s);
}

/* Try route address number s->address, or give up when none is left. */
static void
try_address(struct session *s)
{
	struct route_address *a;
	const char *requiretls;

	if (s->address >= s->route->naddresses) {
		fail_open_rcpts(s, s->last_dsn[0] != '\0' ? s->last_dsn : "4.4.1",
		    s->last_reason[0] != '\0' ? s->last_reason : "no address to try");
		finish_job(s, 0);
		return;
	}
	a = &s->route->addresses[s->address];
	snprintf(s->relay, sizeof s->relay, "%s[%s]:%d", a->host, a->text, a->port);

	requiretls = envelope_attr(s->job->msg->env, "requiretls");
	s->tls_request.nexthop = s->route->nexthop;
	s->tls_request.host = a->host;
	s->tls_request.port = a->port;
	s->tls_request.queue_id = s->job->msg->env->id;
	s->tls_request.mx_secure = s->route->mx_secure;
	s->tls_request.host_secure = a->secure;
	s->tls_request.requiretls = requiretls != NULL && strcmp(requiretls, "1") == 0;
	s->tls_request.tls_required_no = envelope_attr(s->job->msg->env, "tls_required") != NULL &&
	    ascii_casecmp(envelope_attr(s->job->msg->env, "tls_required"), "no") == 0;
	set_state(s, S_POLICY);
	outbound_tls_policy_lookup(&s->tls_request, policy_cb, s);
}

static void
route_done_cb(struct route *route, void *arg)
{
	struct session *s = arg;

	s->route = route;
	if (route->naddresses == 0) {
		fail_open_rcpts(s, route->dsn, route->reason);
		finish_job(s, 0);
		return;
	}
	s->address = 0;
	try_address(s);
}

void
session_start(struct outbound_job *job)
{
	struct session *s = xcalloc(1, sizeof *s);

	s->job = job;
	s->progress = xcalloc(job->nrcpts ? job->nrcpts : 1, 1);
	s->data_fd = -1;
	s->setup_usec = now_usec();
	s->transaction_usec = 0;
	snprintf(s->nexthop, sizeof s->nexthop, "%s", job->nexthop);
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	set_state(s, S_ROUTE);
	route_lookup(job->domain, route_done_cb, s);
}

static void
continue_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	if (s->job != NULL && s->state == S_IDLE)
		start_transaction(s);
}

void
session_continue(struct session *s, struct outbound_job *job)
{
	s->job = job;
	s->progress = xcalloc(job->nrcpts ? job->nrcpts : 1, 1);
	s->setup_usec = now_usec();
	s->transaction_usec = 0;
	if (s->continue_ev == NULL)
		s->continue_ev = event_new(queued_base, -1, 0, continue_cb, s);
	event_active(s->continue_ev, EV_TIMEOUT, 1);
}

void
session_send_line(struct session *s, const char *line)
{
	send_line(s, "%s", line);
}
