/*
 * Password checks (passdb) on auth_socket with the Dovecot authentication
 * protocol version 1, the client side of which Postfix's
 * smtpd_sasl_type = dovecot speaks. The server greets with VERSION, one
 * MECH line per mechanism, SPID, CUID, COOKIE and DONE. The client sends
 * VERSION and CPID, then for each attempt:
 *
 *   AUTH\tID\tMECH\tservice=S[\trip=IP][\tresp=BASE64]...
 *   CONT\tID\tBASE64                       (the response to a CONT challenge)
 *
 * and gets CONT\tID\tBASE64 challenges, then OK\tID\tuser=NAME or
 * FAIL\tID\tuser=NAME (FAIL\tID\ttemp\treason=TEXT when the password
 * file cannot be read). Mechanisms: PLAIN (RFC 4616), LOGIN,
 * SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (mech_scram.c). The passdbs of
 * passdb.c check the password. The reply to a failed attempt comes after
 * a delay that grows with the failures from its client address
 * (throttle.c), to slow down guessing.
 *
 * The handshake waits for the client's VERSION, as Dovecot 2.4 does,
 * because SCRAM-SHA-256-PLUS is offered only to clients of minor version
 * 3 or later, because they can pass channel binding data. authd requests
 * it with a channel_binding=TYPE field after a CONT challenge, and the
 * client sends CONT\tID\tBASE64\tchannel_binding=BASE64_DATA.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "authd.h"
#include "base64.h"
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "mech_scram.h"
#include "scram.h"
#include "userdb.h"
#include "util.h"

#define CLIENT_PROTOCOL_MAJOR	1
#define CLIENT_PROTOCOL_MINOR	3
#define CLIENT_MINOR_CBIND	3	/* first minor version that can pass channel binding data */
#define CLIENT_CBIND_MAX	512	/* bytes of channel binding data */
#define CLIENT_LINE_MAX		16384
#define CLIENT_REQUESTS_MAX	64	/* attempts in progress per connection */
#define CLIENT_FLUSH_TIMEOUT	10	/* seconds to send the last replies to a dropped client */

enum mechanism {
	MECH_PLAIN,
	MECH_LOGIN,
	MECH_SCRAM_SHA256,
	MECH_SCRAM_SHA256_PLUS,
};

static const char *const mechanism_names[] = {
	[MECH_PLAIN] = "PLAIN",
	[MECH_LOGIN] = "LOGIN",
	[MECH_SCRAM_SHA256] = "SCRAM-SHA-256",
	[MECH_SCRAM_SHA256_PLUS] = "SCRAM-SHA-256-PLUS",
};

struct auth_attempt {
	struct auth_attempt *next;
	struct client_conn *conn;
	unsigned long id;
	enum mechanism mech;
	int login_step;		/* LOGIN: 0 expects the user name, 1 the password */
	char *login_user;
	struct scram_session *scram;
	char *final_user;	/* SCRAM: verified, waiting for the empty response to server-final */
	int secured_tls;	/* secured=tls: the client's connection uses TLS */
	int final_resp_ok;	/* the client takes server-final data in OK (final-resp-ok) */
	char service[32];
	char rip[64];
	int verifying;		/* waiting for the passdb result */
	struct event *delay;	/* pending FAIL reply */
	char *delayed_reply;
};

struct client_conn {
	struct client_conn *prev, *next;	/* in the list of open connections */
	struct bufferevent *bev;
	int version_received;
	int handshake_sent;
	unsigned minor_version;	/* of the client's VERSION line */
	uid_t peer_uid;
	pid_t peer_pid;
	struct auth_attempt *attempts;
	size_t nattempts;
	char cookie[HANDOFF_COOKIE_LEN + 1];	/* hex, as sent in the handshake */
};

static struct event_base *client_base;
static struct client_conn *connections;
static unsigned long next_connection_id;

static void conn_event(struct bufferevent *bev, short what, void *arg);
static void send_handshake(struct client_conn *conn);

static void
attempt_free(struct auth_attempt *attempt)
{
	struct auth_attempt **link = &attempt->conn->attempts;

	while (*link != NULL && *link != attempt)
		link = &(*link)->next;
	if (*link != NULL) {
		*link = attempt->next;
		attempt->conn->nattempts--;
	}
	if (attempt->verifying)
		passdb_cancel(attempt);
	if (attempt->delay != NULL)
		event_free(attempt->delay);
	if (attempt->login_user != NULL)
		explicit_bzero(attempt->login_user, strlen(attempt->login_user));
	free(attempt->login_user);
	scram_session_free(attempt->scram);
	free(attempt->final_user);
	free(attempt->delayed_reply);
	free(attempt);
}

static void
conn_free(struct client_conn *conn)
{
	while (conn->attempts != NULL)
		attempt_free(conn->attempts);
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		connections = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	bufferevent_free(conn->bev);
	free(conn);
}

static void
conn_flushed(struct bufferevent *bev, void *arg)
{
	conn_free(arg);
}

/*
 * Drop CONN after a bad request: stop reading, forget its attempts
 * (delayed failures included), and free it once the replies to its
 * earlier requests are sent, or after CLIENT_FLUSH_TIMEOUT if the
 * client does not read them.
 */
static void
conn_close(struct client_conn *conn)
{
	struct timeval timeout = { CLIENT_FLUSH_TIMEOUT, 0 };

	while (conn->attempts != NULL)
		attempt_free(conn->attempts);
	bufferevent_disable(conn->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0) {
		conn_free(conn);
		return;
	}
	bufferevent_setcb(conn->bev, NULL, conn_flushed, conn_event, conn);
	bufferevent_set_timeouts(conn->bev, NULL, &timeout);
}

static void
conn_reply(struct client_conn *conn, const char *line)
{
	bufferevent_write(conn->bev, line, strlen(line));
	bufferevent_write(conn->bev, "\n", 1);
}

static struct auth_attempt *
attempt_find(struct client_conn *conn, unsigned long id)
{
	for (struct auth_attempt *a = conn->attempts; a != NULL; a = a->next)
		if (a->id == id)
			return a;
	return NULL;
}

static void
send_delayed(evutil_socket_t fd, short what, void *arg)
{
	struct auth_attempt *attempt = arg;

	conn_reply(attempt->conn, attempt->delayed_reply);
	attempt_free(attempt);
}

/* Send the reply and free ATTEMPT. A failure waits first, for as long as
 * throttle.c sets for the client address. */
static void
attempt_finish(struct auth_attempt *attempt, const char *reply, int delayed)
{
	struct timeval delay = { 0, 0 };
	unsigned failures;

	if (delayed) {
		delay.tv_sec = throttle_failure(attempt->rip, &failures);
		if (delay.tv_sec > 0)
			log_info("auth: rip=%s, failures=%u, reply delayed by %ld s",
			    attempt->rip[0] != '\0' ? attempt->rip : "-", failures,
			    (long)delay.tv_sec);
	}
	if (delay.tv_sec == 0) {
		conn_reply(attempt->conn, reply);
		attempt_free(attempt);
		return;
	}
	attempt->delayed_reply = xstrdup(reply);
	attempt->delay = evtimer_new(client_base, send_delayed, attempt);
	evtimer_add(attempt->delay, &delay);
}

static void
log_attempt(const struct auth_attempt *attempt, const char *user, const char *status)
{
	char safe_user[200];

	log_sanitize(safe_user, sizeof safe_user, user, strlen(user));
	log_info("auth: method=%s, user=<%s>, service=%s, rip=%s, status=%s",
	    mechanism_names[attempt->mech], safe_user,
	    attempt->service[0] != '\0' ? attempt->service : "-",
	    attempt->rip[0] != '\0' ? attempt->rip : "-", status);
}

/* The passdb result of ATTEMPT: send OK or FAIL. */
static void
attempt_verified(void *arg, const struct passdb_result *result)
{
	struct auth_attempt *attempt = arg;
	char *escaped = userdb_tab_escape(result->user), reply[1024], status[160];

	attempt->verifying = 0;
	switch (result->status) {
	case PASSDB_OK:
		log_attempt(attempt, result->user, "ok");
		throttle_success(attempt->rip);
		handoff_remember(attempt->conn->peer_pid, attempt->id, attempt->conn->cookie,
		    result->user);
		snprintf(reply, sizeof reply, "OK\t%lu\tuser=%s", attempt->id, escaped);
		attempt_finish(attempt, reply, 0);
		break;
	case PASSDB_TEMPFAIL:
		snprintf(status, sizeof status, "failed (%s)", result->detail);
		log_attempt(attempt, result->user, status);
		snprintf(reply, sizeof reply, "FAIL\t%lu\tuser=%s\ttemp\treason=%s", attempt->id,
		    escaped, "Temporary authentication failure");
		attempt_finish(attempt, reply, 0);
		break;
	case PASSDB_MISMATCH:
	case PASSDB_UNKNOWN:
		snprintf(status, sizeof status, "failed (%s)", result->detail);
		log_attempt(attempt, result->user, status);
		snprintf(reply, sizeof reply, "FAIL\t%lu\tuser=%s", attempt->id, escaped);
		attempt_finish(attempt, reply, 1);
		break;
	}
	free(escaped);
}

static void
attempt_verify(struct auth_attempt *attempt, const char *user, const char *password)
{
	attempt->verifying = 1;
	passdb_verify(user, password, attempt->service, attempt->rip, attempt_verified, attempt);
}

static void
attempt_fail_now(struct auth_attempt *attempt, const char *reason)
{
	char reply[256];

	snprintf(reply, sizeof reply, "FAIL\t%lu\treason=%s", attempt->id, reason);
	attempt_finish(attempt, reply, 1);
}

/* RFC 4616: [authzid] NUL authcid NUL passwd. An authzid of another user is rejected. */
static void
mech_plain(struct auth_attempt *attempt, unsigned char *data, size_t len)
{
	char *authzid = (char *)data, *authcid, *password, *end = (char *)data + len;

	authcid = memchr(authzid, '\0', len);
	password = authcid != NULL ? memchr(authcid + 1, '\0', (size_t)(end - authcid - 1)) : NULL;
	if (authcid == NULL || password == NULL || memchr(password + 1, '\0',
	    (size_t)(end - password - 1)) != NULL) {
		log_attempt(attempt, "", "failed (malformed PLAIN response)");
		attempt_fail_now(attempt, "Invalid PLAIN response");
		return;
	}
	authcid++;
	password++;
	if (*authzid != '\0' && strcmp(authzid, authcid) != 0) {
		log_attempt(attempt, authcid, "failed (authorization identity differs)");
		attempt_fail_now(attempt, "Authorization identity not allowed");
		return;
	}
	attempt_verify(attempt, authcid, password);
}

static void
mech_login(struct auth_attempt *attempt, unsigned char *data, size_t len)
{
	char reply[64];

	if (memchr(data, '\0', len) != NULL) {
		log_attempt(attempt, "", "failed (NUL byte in LOGIN response)");
		attempt_fail_now(attempt, "Invalid LOGIN response");
		return;
	}
	if (attempt->login_step == 0) {
		attempt->login_user = xstrndup((char *)data, len);
		attempt->login_step = 1;
		/* "Password:" */
		snprintf(reply, sizeof reply, "CONT\t%lu\tUGFzc3dvcmQ6", attempt->id);
		conn_reply(attempt->conn, reply);
		return;
	}
	attempt_verify(attempt, attempt->login_user, (char *)data);
}

/* Send OK for a SCRAM exchange whose proof matched, with server-final as resp= if any. */
static void
scram_send_ok(struct auth_attempt *attempt, const char *user, const char *server_final)
{
	char *escaped = userdb_tab_escape(user), *encoded = NULL, *reply;

	if (server_final != NULL)
		encoded = scram_base64((const unsigned char *)server_final, strlen(server_final));
	reply = xasprintf("OK\t%lu\tuser=%s%s%s", attempt->id, escaped,
	    encoded != NULL ? "\tresp=" : "", encoded != NULL ? encoded : "");
	handoff_remember(attempt->conn->peer_pid, attempt->id, attempt->conn->cookie, user);
	attempt_finish(attempt, reply, 0);
	free(reply);
	free(encoded);
	free(escaped);
}

/*
 * Turn one SCRAM step into a reply. Without final-resp-ok, server-final
 * goes out as a challenge and OK follows the client's empty response,
 * because SMTP AUTH and IMAP AUTHENTICATE have no success reply with data.
 */
static void
scram_reply(struct auth_attempt *attempt, const struct scram_step *step)
{
	char *encoded = NULL, *escaped = userdb_tab_escape(step->user), *reply = NULL;
	char status[160];

	if (step->message != NULL)
		encoded = scram_base64((const unsigned char *)step->message, strlen(step->message));

	switch (step->status) {
	case SCRAM_CONTINUE:
		reply = xasprintf("CONT\t%lu\t%s%s%s", attempt->id, encoded,
		    step->cbind_type != NULL ? "\tchannel_binding=" : "",
		    step->cbind_type != NULL ? step->cbind_type : "");
		conn_reply(attempt->conn, reply);
		break;
	case SCRAM_SUCCESS:
		log_attempt(attempt, step->user, "ok");
		throttle_success(attempt->rip);
		if (attempt->final_resp_ok) {
			scram_send_ok(attempt, step->user, step->message);
			break;
		}
		attempt->final_user = xstrdup(step->user);
		reply = xasprintf("CONT\t%lu\t%s", attempt->id, encoded);
		conn_reply(attempt->conn, reply);
		break;
	case SCRAM_FAIL:
		snprintf(status, sizeof status, "failed (%s)", step->detail);
		log_attempt(attempt, step->user, status);
		reply = xasprintf("FAIL\t%lu%s%s%s%s", attempt->id,
		    *escaped != '\0' ? "\tuser=" : "", escaped,
		    encoded != NULL ? "\tresp=" : "", encoded != NULL ? encoded : "");
		attempt_finish(attempt, reply, 1);
		break;
	case SCRAM_TEMPFAIL:
		snprintf(status, sizeof status, "failed (%s)", step->detail);
		log_attempt(attempt, step->user, status);
		reply = xasprintf("FAIL\t%lu\tuser=%s\ttemp\treason=%s", attempt->id, escaped,
		    "Temporary authentication failure");
		attempt_finish(attempt, reply, 0);
		break;
	}
	free(reply);
	free(encoded);
	free(escaped);
}

static void
mech_scram(struct auth_attempt *attempt, unsigned char *data, size_t len,
    const unsigned char *cbind, size_t cbind_len, int have_cbind)
{
	struct scram_step step;

	if (attempt->final_user != NULL) {
		/* The client's response to a server-final challenge must be empty. */
		if (len != 0) {
			log_attempt(attempt, attempt->final_user,
			    "failed (data in the response to server-final)");
			attempt_fail_now(attempt, "Unexpected data after server-final");
			return;
		}
		scram_send_ok(attempt, attempt->final_user, NULL);
		return;
	}
	scram_session_input(attempt->scram, data, len, cbind, cbind_len, have_cbind, &step);
	scram_reply(attempt, &step);
	free(step.message);
}

/*
 * Feed one client response (base64 TEXT) to the mechanism, with the
 * channel binding data that the auth client sent along (base64 CBIND,
 * or NULL).
 */
static void
attempt_input(struct auth_attempt *attempt, const char *text, const char *cbind_text)
{
	unsigned char *data = NULL, *cbind = NULL;
	size_t len = 0, cbind_len = 0;

	if (*text == '\0') {
		data = xcalloc(1, 1);
	} else if (base64_decode(text, strlen(text), &data, &len) < 0) {
		log_attempt(attempt, "", "failed (invalid base64 data)");
		attempt_fail_now(attempt, "Invalid base64 data");
		return;
	}
	data = xrealloc(data, len + 1);
	data[len] = '\0';
	if (cbind_text != NULL &&
	    (base64_decode(cbind_text, strlen(cbind_text), &cbind, &cbind_len) < 0 ||
	    cbind_len > CLIENT_CBIND_MAX)) {
		log_attempt(attempt, "", "failed (invalid channel binding data)");
		attempt_fail_now(attempt, "Invalid channel binding data");
		free(cbind);
		free(data);
		return;
	}

	switch (attempt->mech) {
	case MECH_PLAIN:
		mech_plain(attempt, data, len);
		break;
	case MECH_LOGIN:
		mech_login(attempt, data, len);
		break;
	case MECH_SCRAM_SHA256:
	case MECH_SCRAM_SHA256_PLUS:
		mech_scram(attempt, data, len, cbind, cbind_len, cbind_text != NULL);
		break;
	}
	explicit_bzero(data, len);
	free(data);
	free(cbind);
}

/* Select MECH for ATTEMPT. 0, or -1 with REASON when it cannot run here. */
static int
attempt_select_mechanism(struct auth_attempt *attempt, const char *mech, const char **reason)
{
	int cbind_offered = attempt->conn->minor_version >= CLIENT_MINOR_CBIND &&
	    attempt->secured_tls;

	*reason = "Unsupported authentication mechanism";
	if (ascii_casecmp(mech, "PLAIN") == 0) {
		attempt->mech = MECH_PLAIN;
	} else if (ascii_casecmp(mech, "LOGIN") == 0) {
		attempt->mech = MECH_LOGIN;
	} else if (ascii_casecmp(mech, "SCRAM-SHA-256") == 0) {
		attempt->mech = MECH_SCRAM_SHA256;
		attempt->scram = scram_session_new(0, cbind_offered);
	} else if (ascii_casecmp(mech, "SCRAM-SHA-256-PLUS") == 0 &&
	    attempt->conn->minor_version >= CLIENT_MINOR_CBIND) {
		if (!attempt->secured_tls) {
			*reason = "SCRAM-SHA-256-PLUS needs a TLS connection";
			return -1;
		}
		attempt->mech = MECH_SCRAM_SHA256_PLUS;
		attempt->scram = scram_session_new(1, cbind_offered);
	} else {
		return -1;
	}
	return 0;
}

static int
parse_id(const char *text, unsigned long *id)
{
	char *end;

	if (*text < '0' || *text > '9' || strlen(text) > 10)
		return -1;
	*id = strtoul(text, &end, 10);
	return *end == '\0' ? 0 : -1;
}

/* AUTH\tID\tMECH[\tparams]. Returns 0, or -1 to drop the client. */
static int
handle_auth(struct client_conn *conn, char **fields, size_t count)
{
	struct auth_attempt *attempt;
	const char *resp = NULL, *reason;
	unsigned long id;
	char reply[128];

	if (count < 3 || parse_id(fields[1], &id) < 0 || attempt_find(conn, id) != NULL ||
	    conn->nattempts >= CLIENT_REQUESTS_MAX) {
		log_warn("auth: malformed or duplicate AUTH request from pid %ld (uid %u)",
		    (long)conn->peer_pid, (unsigned)conn->peer_uid);
		return -1;
	}
	attempt = xcalloc(1, sizeof *attempt);
	attempt->conn = conn;
	attempt->id = id;
	attempt->next = conn->attempts;
	conn->attempts = attempt;
	conn->nattempts++;

	for (size_t i = 3; i < count; i++) {
		userdb_tab_unescape(fields[i]);
		if (strncmp(fields[i], "service=", 8) == 0)
			log_sanitize(attempt->service, sizeof attempt->service, fields[i] + 8,
			    strlen(fields[i] + 8));
		else if (strncmp(fields[i], "rip=", 4) == 0)
			log_sanitize(attempt->rip, sizeof attempt->rip, fields[i] + 4,
			    strlen(fields[i] + 4));
		else if (strncmp(fields[i], "resp=", 5) == 0)
			resp = fields[i] + 5;
		else if (strcmp(fields[i], "secured=tls") == 0)
			attempt->secured_tls = 1;
		else if (strcmp(fields[i], "final-resp-ok") == 0)
			attempt->final_resp_ok = 1;
	}

	if (attempt_select_mechanism(attempt, fields[2], &reason) < 0) {
		snprintf(reply, sizeof reply, "FAIL\t%lu\treason=%s", id, reason);
		attempt_finish(attempt, reply, 0);
		return 0;
	}

	if (resp != NULL) {
		attempt_input(attempt, resp, NULL);
	} else {
		/* LOGIN: "Username:"; the others: an empty challenge. */
		snprintf(reply, sizeof reply, "CONT\t%lu\t%s", id,
		    attempt->mech == MECH_LOGIN ? "VXNlcm5hbWU6" : "");
		conn_reply(conn, reply);
	}
	return 0;
}

/* CONT\tID\tBASE64. Returns 0, or -1 to drop the client. */
static int
handle_cont(struct client_conn *conn, char **fields, size_t count)
{
	struct auth_attempt *attempt;
	const char *cbind = NULL;
	unsigned long id;

	if (count < 2 || parse_id(fields[1], &id) < 0 ||
	    (attempt = attempt_find(conn, id)) == NULL || attempt->delay != NULL ||
	    attempt->verifying) {
		log_warn("auth: CONT for an unknown request from pid %ld (uid %u)",
		    (long)conn->peer_pid, (unsigned)conn->peer_uid);
		return -1;
	}
	if (count > 3 && strncmp(fields[3], "channel_binding=", 16) == 0)
		cbind = fields[3] + 16;
	attempt_input(attempt, count > 2 ? fields[2] : "", cbind);
	return 0;
}

static int
handle_line(struct client_conn *conn, char *line)
{
	char *fields[64], safe[80];
	size_t count = authd_split_fields(line, fields, sizeof fields / sizeof fields[0]);

	/* The handshake is the reply to the first line, which should be VERSION. */
	if (!conn->handshake_sent) {
		if (strcmp(fields[0], "VERSION") == 0 && count >= 3)
			conn->minor_version = (unsigned)strtoul(fields[2], NULL, 10);
		send_handshake(conn);
	}
	if (strcmp(fields[0], "VERSION") == 0) {
		if (count < 3 || strtol(fields[1], NULL, 10) != CLIENT_PROTOCOL_MAJOR) {
			log_warn("auth: client pid %ld (uid %u) speaks another protocol version",
			    (long)conn->peer_pid, (unsigned)conn->peer_uid);
			return -1;
		}
		conn->version_received = 1;
		return 0;
	}
	if (!conn->version_received) {
		log_warn("auth: client pid %ld (uid %u) did not start with VERSION",
		    (long)conn->peer_pid, (unsigned)conn->peer_uid);
		return -1;
	}
	if (strcmp(fields[0], "CPID") == 0)
		return 0;
	if (strcmp(fields[0], "AUTH") == 0)
		return handle_auth(conn, fields, count);
	if (strcmp(fields[0], "CONT") == 0)
		return handle_cont(conn, fields, count);
	log_warn("auth: unknown command \"%s\" from pid %ld (uid %u)",
	    log_sanitize(safe, sizeof safe, fields[0], strlen(fields[0])),
	    (long)conn->peer_pid, (unsigned)conn->peer_uid);
	return -1;
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct client_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		int rc = -1;

		if (strlen(line) != len)
			log_warn("auth: NUL byte in a request from pid %ld", (long)conn->peer_pid);
		else if (len > CLIENT_LINE_MAX)
			log_warn("auth: request line longer than %d bytes from pid %ld",
			    CLIENT_LINE_MAX, (long)conn->peer_pid);
		else
			rc = handle_line(conn, line);
		explicit_bzero(line, len);
		free(line);
		if (rc < 0) {
			conn_close(conn);
			return;
		}
	}
	if (evbuffer_get_length(in) > CLIENT_LINE_MAX) {
		log_warn("auth: request line longer than %d bytes from pid %ld", CLIENT_LINE_MAX,
		    (long)conn->peer_pid);
		conn_close(conn);
	}
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct client_conn *conn = arg;

	/* Pending delayed failures are dropped, because the client is gone
	 * or, on BEV_EVENT_TIMEOUT, a dropped client did not read its last
	 * replies within CLIENT_FLUSH_TIMEOUT. */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_free(conn);
}

/* SCRAM-SHA-256-PLUS only to clients that can send channel binding data. */
static void
send_handshake(struct client_conn *conn)
{
	unsigned char cookie[HANDOFF_COOKIE_LEN / 2];
	int plus = conn->minor_version >= CLIENT_MINOR_CBIND;

	/* The cookie proves a login in a REQUEST, so it must not be guessable. */
	if (getrandom(cookie, sizeof cookie, 0) != sizeof cookie)
		fatal("getrandom failed");
	for (size_t i = 0; i < sizeof cookie; i++)
		snprintf(conn->cookie + 2 * i, 3, "%02x", cookie[i]);
	evbuffer_add_printf(bufferevent_get_output(conn->bev),
	    "VERSION\t%d\t%d\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
	    "MECH\tSCRAM-SHA-256\tmutual-auth\n%s"
	    "SPID\t%ld\nCUID\t%lu\nCOOKIE\t%s\nDONE\n", CLIENT_PROTOCOL_MAJOR,
	    CLIENT_PROTOCOL_MINOR,
	    plus ? "MECH\tSCRAM-SHA-256-PLUS\tmutual-auth\tchannel-binding\n" : "",
	    (long)getpid(), ++next_connection_id, conn->cookie);
	conn->handshake_sent = 1;
}

static void
accept_conn(struct evconnlistener *listener, int fd, struct sockaddr *addr,
    int addrlen, void *arg)
{
	struct client_conn *conn = xcalloc(1, sizeof *conn);

	ipc_peer_cred(fd, &conn->peer_uid, NULL, &conn->peer_pid);
	conn->bev = bufferevent_socket_new(client_base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev == NULL) {
		log_error("auth: cannot set up a connection from pid %ld", (long)conn->peer_pid);
		close(fd);
		free(conn);
		return;
	}
	conn->next = connections;
	if (connections != NULL)
		connections->prev = conn;
	connections = conn;
	bufferevent_setcb(conn->bev, conn_read, NULL, conn_event, conn);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	log_debug("auth: connection from pid %ld (uid %u)", (long)conn->peer_pid,
	    (unsigned)conn->peer_uid);
}

void
client_listen(struct event_base *base, int listen_fd)
{
	client_base = base;
	listener_start(base, listen_fd, accept_conn, "auth");
}

void
client_close_all(void)
{
	while (connections != NULL)
		conn_free(connections);
}
