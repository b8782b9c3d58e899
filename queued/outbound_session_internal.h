/*
 * The parts of an outbound SMTP session that outbound_session.c (the
 * connection and its set-up) and outbound_transaction.c (MAIL, RCPT and
 * DATA) share. Nothing else includes this header.
 */
#ifndef ESTAFETA_QUEUED_OUTBOUND_SESSION_INTERNAL_H
#define ESTAFETA_QUEUED_OUTBOUND_SESSION_INTERNAL_H

#include <stddef.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/bufferevent.h>

#include "envelope.h"
#include "outbound_auth.h"
#include "outbound_data.h"
#include "outbound_route.h"
#include "outbound_session.h"
#include "outbound_tls.h"

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
	struct outbound_auth auth;
	int in_callback;		/* callers on the stack that use S after a call: free later */
	int dead;			/* freed while in_callback > 0 */
	unsigned connection;		/* counts connections, since a new bufferevent may reuse an old address */
	unsigned sessions;		/* connections of this job that got past EHLO or HELO */
	int session_counted;		/* the current address is in SESSIONS */
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

	/* The event that tries the next route address from the event loop, so that a run
	 * of addresses that fail at once (ENETUNREACH, a TLS policy that
	 * leaves the host out) does not recurse. */
	struct event *try_ev;

	TAILQ_ENTRY(session) entry;
};

/* In outbound_session.c. */
void set_state(struct session *s, enum session_state state);
void send_line(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct envelope_rcpt *job_rcpt(struct session *s, size_t r);
void reply_to_outcome(struct session *s, size_t r);
void fail_open_rcpts(struct session *s, const char *dsn, const char *reason);
void abort_session(struct session *s, const char *dsn, const char *reason);
void finish_job(struct session *s, int keep);
void transaction_done(struct session *s, int keep);

/* In outbound_transaction.c. */

/* Start a transaction with the open job recipients on the idle session S. */
void start_transaction(struct session *s);

/* Handle the reply to MAIL, RCPT or DATA that S has read. */
void envelope_reply(struct session *s);

/* Handle the reply to the end of the data. */
void data_done_reply(struct session *s);

/* Add the next chunk of the message to the output of S. */
void feed_body(struct session *s);

#endif
