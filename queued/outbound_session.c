/*
 * The SMTP client session (RFC 5321) on libevent bufferevents. It
 * connects to each address of the route in turn and sends EHLO (HELO
 * when EHLO is rejected), STARTTLS as the TLS policy requires, and AUTH
 * to a relayhost. Then come the transactions (outbound_transaction.c).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "config.h"
#include "envelope.h"
#include "log.h"
#include "outbound_auth.h"
#include "outbound_session.h"
#include "outbound_session_internal.h"
#include "outbound_tls.h"
#include "queued.h"
#include "scheduler.h"
#include "util.h"

TAILQ_HEAD(session_list, session);
static struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void try_address(struct session *s);

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

void
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

void
send_line(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(s->bev), "\r\n", 2);
}

struct envelope_rcpt *
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
	if (status == RCPT_SENT)
		envelope_rcpt_relayed(job_rcpt(s, r), s->ext_dsn);
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

/* Return whether smtp_mx_session_limit ends the attempt after the
 * current address. */
static int
session_limit_reached(const struct session *s)
{
	long long limit = config_int("smtp_mx_session_limit");

	return limit > 0 && s->sessions >= (unsigned long long)limit;
}

/* Return whether the route has an address after the current one that
 * this attempt may still try. */
static int
more_addresses(const struct session *s)
{
	return s->route != NULL && s->address + 1 < s->route->naddresses &&
	    !session_limit_reached(s);
}

/* Return the command of the current reply, named as in Postfix's bounce
 * reasons ("in reply to RCPT TO command"). */
static const char *
replied_command(const struct session *s)
{
	if (s->state == S_DATA_DONE)
		return "end of DATA";
	if (s->reply_index <= 1)
		return "MAIL FROM";
	return s->reply_index <= s->ntxn + 1 ? "RCPT TO" : "DATA";
}

/* Store the server of the current reply with the outcome of job
 * recipient R, for the Remote-MTA field of a DSN. */
static void
set_remote_mta(struct session *s, size_t r)
{
	const struct route_address *address;
	char remote_mta[ROUTE_NAME_MAX + 80];

	if (s->route == NULL || s->address >= s->route->naddresses)
		return;
	address = &s->route->addresses[s->address];
	snprintf(remote_mta, sizeof remote_mta, "%s[%s]", address->host, address->text);
	envelope_rcpt_set_remote(job_rcpt(s, r), remote_mta, replied_command(s));
}

/*
 * Store the current reply as the outcome of job recipient R. As in
 * Postfix's SMTP client (smtp_bulk_fail in smtp_trouble.c), a temporary
 * failure is final only at the last address of the route. Before that the recipient waits for the next
 * address, and the reply is kept as the reason in case none accepts it.
 */
void
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
	set_remote_mta(s, r);
	free(reason);
}

/* Give every job recipient without an outcome in this attempt DSN and REASON. */
void
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
	outbound_auth_clear(&s->auth);
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
	if (s->try_ev != NULL)
		event_free(s->try_ev);
	s->try_ev = NULL;
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
void
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

static void
try_address_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	try_address(s);
}

/* Move S to the next route address and try it from the event loop. A
 * direct call would add a stack frame per address that fails at once. */
static void
try_next_address_later(struct session *s)
{
	if (more_addresses(s))
		s->address++;
	else if (s->route != NULL)
		s->address = s->route->naddresses;
	drop_connection(s);
	s->tls_tried = 0;
	s->session_counted = 0;
	set_state(s, S_POLICY);
	if (s->try_ev == NULL)
		s->try_ev = event_new(queued_base, -1, 0, try_address_cb, s);
	event_active(s->try_ev, EV_TIMEOUT, 1);
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
	try_next_address_later(s);
}

/*
 * End the session because it cannot go on. Recipients without an outcome
 * get DSN and REASON, or with a 4.x.x DSN go to the next address if there
 * is one. After the end of the data they stay deferred, because the
 * server may have taken the message, and another address would deliver
 * it twice.
 */
void
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
	try_next_address_later(s);
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
void
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

	if (!s->session_counted) {
		s->session_counted = 1;
		s->sessions++;
	}

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

		if (outbound_auth_start(s, &s->auth, s->tls_active, s->ext_auth_plain, s->ext_auth_login, err,
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

/* Return whether the current address has the best (lowest) preference
 * of the route. Every address of a relayhost or a domain without MX has
 * preference 0, so it is the best. */
static int
at_best_preference(const struct session *s)
{
	return s->route->addresses[s->address].preference == s->route->addresses[0].preference;
}

/*
 * End the use of this address when the server names itself with
 * myhostname in its EHLO or HELO reply, because then the mail would come
 * back to this host. As Postfix's SMTP client does, the recipients bounce
 * with 5.4.6 at the best MX host, and otherwise the next address is tried
 * (4.4.6). Returns 1 when the reply was such a loop.
 */
static int
helo_reply_loops(struct session *s)
{
	const char *myhostname = queued_settings.myhostname;
	size_t len = strcspn(s->reply, " ");
	char reason[ROUTE_NAME_MAX + 100];

	if (len != strlen(myhostname) || ascii_ncasecmp(s->reply, myhostname, len) != 0)
		return 0;

	log_warn("%s: host %s replied to EHLO or HELO with my own hostname %s", s->job->msg->env->id,
	    s->relay, myhostname);
	snprintf(reason, sizeof reason, "mail for %s loops back to myself", s->route->nexthop);
	if (!at_best_preference(s)) {
		next_address(s, "4.4.6", "%s", reason);
		return 1;
	}
	fail_open_rcpts(s, "5.4.6", reason);
	finish_job(s, 0);
	return 1;
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
		if (helo_reply_loops(s))
			return;
		greeted(s);
		return;
	case S_HELO:
		if (s->reply_code != 250) {
			next_address(s, "4.0.0", "host %s rejected HELO: %d %s", s->relay, s->reply_code, s->reply);
			return;
		}
		if (helo_reply_loops(s))
			return;
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
		int rc = outbound_auth_reply(s, &s->auth, s->reply_code);

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
	s->sessions = 1;	/* the reused connection */
	if (s->continue_ev == NULL)
		s->continue_ev = event_new(queued_base, -1, 0, continue_cb, s);
	event_active(s->continue_ev, EV_TIMEOUT, 1);
}

void
session_send_line(struct session *s, const char *line)
{
	send_line(s, "%s", line);
}
