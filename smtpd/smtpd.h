/* smtpd: the ESMTP server. Shared types of its modules. */
#ifndef ESTAFETA_SMTPD_H
#define ESTAFETA_SMTPD_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "addr.h"
#include "hopcount.h"
#include "queue_proto.h"
#include "smtp_data.h"

#define SMTPD_IP_MAX		64	/* printable IPv4 or IPv6 address */
#define SMTPD_HELO_MAX		255
#define SMTPD_SPOOL_BUFFER	(64 * 1024)	/* bytes collected before a write to the spool file */

/* Configuration read once at start-up. */
struct smtpd_settings {
	char hostname[256];
	long long message_size_limit;
	long long recipient_limit;
	long long transaction_limit;	/* MAIL commands per session, 0: no limit */
	long long client_connection_limit;
	long long max_connections;
	long long timeout;
	long long data_timeout;
	long long queue_timeout;
	long long userdb_timeout;
	long long hard_error_limit;
	size_t line_length_limit;
	size_t data_line_length_limit;
	int normalize_bare_lf;
	char recipient_delimiter;
	const char *queued_socket;
	const char *userdb_socket;
	char alias_map_path[4096];
};

/* SMTP AUTH, submission policy and client rate limits (auth.c). */
enum auth_offer { AUTH_OFFER_NO, AUTH_OFFER_SUBMISSION, AUTH_OFFER_ALL };
enum plaintext_auth { PLAINTEXT_AUTH_NEVER, PLAINTEXT_AUTH_LOOPBACK, PLAINTEXT_AUTH_ALWAYS };

struct smtpd_auth_settings {
	enum auth_offer offer;			/* smtpd_sasl_auth_enable */
	enum plaintext_auth plaintext;		/* smtpd_plaintext_auth */
	long long timeout;			/* seconds per authd reply */
	long long connection_rate_limit;	/* per client address and time unit, 0: none */
	long long auth_rate_limit;
	long long rate_time_unit;		/* seconds */
	const char *sender_login_maps;
	char auth_socket[4096];
};

struct session;

#define SMTPD_MAX_LISTENERS	16

/* The kind of listener a session came from; it decides TLS and AUTH. */
enum listener_kind {
	LISTENER_MX,		/* smtpd_listen: port 25, STARTTLS offered */
	LISTENER_SUBMISSION,	/* smtpd_submission_listen: port 587, STARTTLS offered */
	LISTENER_SMTPS,		/* smtpd_smtps_listen: port 465, TLS from the first byte */
};

struct smtpd {
	struct event_base *base;
	struct evconnlistener *listeners[SMTPD_MAX_LISTENERS];
	size_t nlisteners;
	struct smtpd_settings settings;
	struct netaddr_list *mynetworks;
	struct cdbmap *aliases;
	struct userdb_async *userdb;
	TAILQ_HEAD(, session) sessions;
	size_t nsessions;
	/* AUTH, submission policy and rate limits (auth.c, submission.c, ratelimit.c). */
	struct smtpd_auth_settings auth_settings;
	struct auth_client *auth;
	struct sender_login_map *sender_logins;
	struct rate_table *rates;

	unsigned long long next_session_id;
	unsigned ahead_files;		/* sessions' spool files ahead (queue_client.c) */

	/* TLS (smtpd/tls.c): the context for new sessions, NULL without
	 * tls_cert_file, and the kind of each listener. */
	struct tls_server *tls;
	enum listener_kind listener_kinds[SMTPD_MAX_LISTENERS];
};

enum session_state {
	SESSION_COMMAND,	/* reading command lines */
	SESSION_DATA,		/* reading DATA content up to CRLF.CRLF */
	SESSION_CHUNK,		/* reading the bytes of one BDAT chunk */
	SESSION_WAITING,	/* input paused until queued or authd replies */
	SESSION_CLOSING,	/* sending the last replies, then closing */
};

/* Counters for the "disconnect from" log line, as Postfix prints them. */
enum session_counter {
	COUNT_EHLO, COUNT_HELO, COUNT_MAIL, COUNT_RCPT, COUNT_DATA, COUNT_BDAT,
	COUNT_RSET, COUNT_NOOP, COUNT_QUIT, COUNT_VRFY, COUNT_EXPN, COUNT_HELP, COUNT_AUTH,
	COUNT_STARTTLS, COUNT_UNKNOWN, COUNT_MAX
};

enum body_type { BODY_7BIT, BODY_8BITMIME, BODY_BINARYMIME };

/* DSN (RFC 3461), REQUIRETLS (RFC 8689) and LIMITS (RFC 9422). */
#define DSN_ENVID_MAX		100	/* ENVID length as sent (xtext), RFC 3461 */
#define DSN_ORCPT_MAX		500	/* ORCPT length as sent, type included, RFC 3461 */

enum dsn_ret { DSN_RET_DEFAULT, DSN_RET_FULL, DSN_RET_HDRS };

/* NOTIFY keywords as bits; 0 means NOTIFY was not given. */
#define DSN_NOTIFY_NEVER	0x01
#define DSN_NOTIFY_SUCCESS	0x02
#define DSN_NOTIFY_FAILURE	0x04
#define DSN_NOTIFY_DELAY	0x08

/* Parameters given with MAIL FROM (RFC 1870, 6152, 3030, 6531, 3461, 8689). */
struct mail_params {
	long long size;		/* -1: not given */
	enum body_type body;
	int smtputf8;
	enum dsn_ret ret;
	char envid[DSN_ENVID_MAX + 1];	/* xtext-decoded, "" when not given */
	int requiretls;
};

/* DSN parameters given with RCPT TO (RFC 3461). */
struct rcpt_params {
	unsigned notify;		/* DSN_NOTIFY_* bits */
	char orcpt[DSN_ORCPT_MAX + 1];	/* "addr-type;address" decoded, "" when not given */
};

/* The request in flight to queued, which decides what its reply does. */
enum queue_request {
	QUEUE_IDLE,
	QUEUE_NEW_FOR_DATA,
	QUEUE_NEW_FOR_BDAT,
	QUEUE_NEW_AHEAD,	/* a spool file for the session's next message */
	QUEUE_COMMIT,
	QUEUE_READER,		/* a read-only descriptor of the spool file, for filterd */
};

/* Sessions that may hold a spool file ahead at a time, server-wide, so
 * that idle files stay far below queue_uncommitted_limit. */
#define SMTPD_AHEAD_FILES_MAX 64

/* One mail transaction: MAIL, RCPT..., then DATA or BDAT chunks. */
struct transaction {
	int active;			/* MAIL was accepted */
	struct mailaddr sender;
	char **recipients;		/* formatted local@domain */
	size_t nrecipients;
	enum body_type body;
	int smtputf8;

	/* The spool file, once queued has created it. */
	char queue_id[QUEUE_ID_MAX + 1];
	int spool_fd;
	struct evbuffer *spool_buffer;
	long long spool_bytes;		/* written or buffered, Received: included */
	long long message_bytes;	/* message content only, for the size limit */
	int too_big;
	int write_failed;
	struct smtp_data_decoder decoder;
	int chunking;			/* BDAT started this message */

	/* The first line of content, held until it is complete to see
	 * whether the message starts with a header field. */
	char first_line[1000];
	size_t first_line_len;
	int first_line_done;

	/* DSN and REQUIRETLS parameters of MAIL, and the RCPT parameters of
	 * each recipient, in the order of recipients. */
	enum dsn_ret ret;
	char envid[DSN_ENVID_MAX + 1];
	int requiretls;
	struct rcpt_params *rcpt_params;
	struct tls_required_scan {
		char line[64];		/* the header line being read */
		size_t len;
		int overflow;		/* the line is longer than the buffer */
		int done;		/* the header section has ended */
	} tls_required_scan;
	int tls_required_no;		/* the header has "TLS-Required: No" */

	/* Set when filterd's verdict is QUARANTINE, so that local recipients
	 * get the message in their Junk folder. Remote delivery ignores it. */
	int quarantine;

	/* The header section as it goes into the spool file, Received:
	 * included: the last octet written, whether the empty line has
	 * ended it, and whether it had a CR that no LF followed. */
	char header_last;
	int header_ended;
	int header_bare_cr;

	/* The Received: and Delivered-To: fields, counted as they are written. */
	struct hop_scan hops;
};

struct counter {
	unsigned ok;
	unsigned total;
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct smtpd *server;
	unsigned long long id;
	struct bufferevent *bev;
	struct event *close_event;
	struct sockaddr_storage addr;
	char ip[SMTPD_IP_MAX];
	const char *name;		/* reverse DNS name: always "unknown", no lookups */
	int in_mynetworks;

	enum session_state state;
	int output_paused;		/* reading stopped until the client reads replies */
	int discarding_line;		/* inside an overlong command line */
	const char *last_command;	/* for the timeout and lost connection logs */

	char helo[SMTPD_HELO_MAX + 1];
	int esmtp;
	struct transaction tx;

	/* The BDAT chunk being read; the reply is set when the chunk is rejected. */
	unsigned long long chunk_size;
	unsigned long long chunk_remaining;
	int chunk_last;
	char chunk_reply[256];

	struct ipc_conn *queue;
	enum queue_request queue_request;
	struct event *queue_timer;
	/* A spool file asked for after a commit, for the next message: a
	 * session sending one message after another skips the wait for
	 * NEW at DATA. -1 when there is none. */
	int ahead_fd;
	char ahead_id[QUEUE_ID_MAX];

	/* A recipient lookup in authd's userdb in flight (RCPT). */
	struct recipient_lookup {
		struct userdb_request *request;
		char recipient[ADDR_MAX * 4 + 8];	/* formatted, for the reply */
		char keys[2][ADDR_MAX * 4 + 8];		/* user+detail, then user */
		int nkeys;
		int next;
		int virtual;
	} lookup;

	/* The parameters of the RCPT waiting for its recipient lookup, and
	 * the transactions (accepted MAIL commands) of the session. */
	struct rcpt_params pending_rcpt;
	unsigned long long transactions;

	/* SMTP AUTH and the submission checks (auth.c, submission.c). */
	struct session_auth {
		struct auth_request *request;	/* exchange with authd in flight */
		int awaiting_response;		/* a 334 challenge was sent */
		char mechanism[65];
		char user[320];			/* the login after 235, "" before */
		char *header;			/* the message header, for the From: check */
		size_t header_len;
		int header_done;
		int header_too_long;
	} auth;

	unsigned errors;
	struct counter counters[COUNT_MAX];
	int command_counter;		/* counter of the command still running, or -1 */
	unsigned command_errors;	/* errors when that command started */
	int quit;

	/* TLS (smtpd/tls.c). */
	enum listener_kind listener;
	struct ssl_st *ssl;		/* owned by bev once TLS starts, else NULL */
	int tls_starting;		/* STARTTLS accepted: handshake after the 220 is sent */
	int tls_handshaking;
	int tls_active;			/* the handshake is complete */
	char tls_description[128];	/* tls_describe text, for logs and Received: */

	/* The connection to filterd (filter.c), NULL before the first request. */
	struct filter_client *filter;
};

/* smtpd.c */
extern struct smtpd smtpd;

/* session.c */
void session_accept(struct smtpd *server, enum listener_kind kind, int fd,
    const struct sockaddr *sa, socklen_t salen);
void session_reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void session_reply_raw(struct session *s, const char *text);
void session_log_reject(struct session *s, const char *stage, const char *reply,
    const char *recipient);
void session_set_state(struct session *s, enum session_state state);
void session_pause(struct session *s);
void session_resume(struct session *s);
void session_close(struct session *s);
void session_process_input(struct session *s);
void session_free_all(struct smtpd *server);

/* commands.c */
void command_dispatch(struct session *s, char *line);
void command_finish(struct session *s);
/* Copy the command verb that starts LINE into OUT for a log line.
 * Returns 0, leaving OUT empty, when the verb may be a credential. */
int command_verb_for_log(const char *line, size_t len, char *out, size_t outsize);
void transaction_reset(struct session *s);

/* envelope.c: MAIL and RCPT */
void command_mail(struct session *s, char *args);
void command_rcpt(struct session *s, char *args);
void rcpt_finish(struct session *s, int code, const char *reply);

/* data.c: DATA and BDAT */
void command_data(struct session *s, char *args);
void command_bdat(struct session *s, char *args);
void data_read(struct session *s);
void chunk_read(struct session *s);
void data_queue_file_ready(struct session *s, enum queue_request request, int fd,
    const char *queue_id, const char *error);
void data_commit_done(struct session *s, const char *error);
/* queued's reply to READER: FD, or -1 with ERROR set. */
void data_reader_ready(struct session *s, int fd, const char *error);

/* recipient.c */
#define RECIPIENT_PENDING 0	/* recipient_check started a userdb lookup */
/*
 * Check RCPT, whose formatted address is already in s->lookup.recipient.
 * Returns 250, an error code with REPLY set, or RECIPIENT_PENDING: then
 * the lookup ends with rcpt_finish and the session resumes.
 */
int recipient_check(struct session *s, const struct mailaddr *rcpt, char *reply,
    size_t replysize);
void recipient_lookup_cancel(struct session *s);

/* mail_params.c: ESMTP parameters of MAIL and RCPT */
int mail_params_parse(struct session *s, char *args, struct mail_params *params);
int rcpt_params_parse(struct session *s, char *args, struct rcpt_params *params);
void dsn_notify_format(unsigned notify, char *out, size_t size);

/* tls_required.c: the TLS-Required header field (RFC 8689) */
void tls_required_scan(struct session *s, const char *data, size_t len);

static inline int
session_tls_active(const struct session *s)
{
	return s->tls_active;
}

/* auth.c */
/* The login name after a successful AUTH, or NULL. */
static inline const char *
session_auth_user(const struct session *s)
{
	return s->auth.user[0] != '\0' ? s->auth.user : NULL;
}

void auth_settings_load(struct smtpd_auth_settings *settings);
int auth_offered(const struct session *s);
/* Write the "250-AUTH ...\r\n" EHLO line into OUT, or "" when AUTH is not offered. */
void auth_ehlo_keyword(struct session *s, char *out, size_t outsize);
void command_auth(struct session *s, char *args);
void auth_response(struct session *s, char *line);
/* Forget the login and any exchange in flight (session end, STARTTLS). */
void auth_session_reset(struct session *s);

/* submission.c */
/* Check MAIL FROM against AUTH and the sender login map: 0, or -1 with REPLY set. */
int submission_check_mail(struct session *s, const struct mailaddr *sender, char *reply,
    size_t replysize);
void submission_header_append(struct session *s, const char *data, size_t len);
/* The reply rejecting the message's From: addresses, or NULL when they pass. */
const char *submission_check_header(struct session *s, char *reply, size_t replysize);
void submission_header_reset(struct session *s);
void submission_start(struct smtpd *server);
void submission_stop(struct smtpd *server);
/* Count a connection from SA; 1 when it is over smtpd_client_connection_rate_limit. */
int submission_connection_rate_exceeded(struct smtpd *server, const struct sockaddr *sa,
    const char *ip);

/* received.c */
char *received_header(const struct session *s);

/* tls.c: STARTTLS and implicit TLS */
void tls_setup(struct smtpd *server);
void tls_reload(struct smtpd *server);
int tls_offered(const struct session *s);
void command_starttls(struct session *s, char *args);
struct bufferevent *tls_accept(struct session *s, int fd);
void tls_start(struct session *s);
void tls_handshake_done(struct session *s);
void tls_log_handshake_failure(struct session *s, short what);
const char *tls_session_error(struct session *s, char *out, size_t outsize);

/* session.c, for tls.c: take BEV as the session's connection (callbacks,
 * limits, timeouts), and send the 220 greeting. */
void session_attach(struct session *s, struct bufferevent *bev);
void session_greet(struct session *s);

/* queue_client.c */
int queue_client_new(struct session *s, enum queue_request request);
/* Ask for a spool file for the session's next message, if the
 * connection is idle and SMTPD_AHEAD_FILES_MAX allows. */
void queue_client_new_ahead(struct session *s);
/* Take the file asked for ahead: 1 with *FD and ID set, or 0. When the
 * request is still in flight, it becomes REQUEST and returns 0 with
 * *PENDING set: data_queue_file_ready runs when it arrives. */
int queue_client_take_ahead(struct session *s, enum queue_request request, int *fd,
    char id[QUEUE_ID_MAX], int *pending);
int queue_client_commit(struct session *s);
/* Ask for a read-only descriptor of the transaction's spool file;
 * data_reader_ready runs with the reply. 0, or -1 when not sent. */
int queue_client_reader(struct session *s);
void queue_client_abort(struct session *s);
void queue_client_close(struct session *s);

/* filter.c: filterd at MAIL FROM and at the end of the data */
struct filter_verdict;
/* Whether smtpd_filter is on. */
int filter_enabled(void);
/* Ask filterd about MAIL FROM:SENDER; the session waits, then
 * mail_filter_done runs with the verdict. */
void filter_mail(struct session *s, const struct mailaddr *sender, const struct mail_params *params);
/* Ask filterd about the message in the spool file, passing READER_FD, a
 * read-only descriptor of it; the session waits, then data_filter_done
 * runs with the verdict. */
void filter_message(struct session *s, int reader_fd);
void filter_close(struct session *s);

/* envelope.c, data.c: the verdicts. VERDICT and its edits stay valid
 * until the next request, so use them before resuming the session. */
void mail_filter_done(struct session *s, const struct mailaddr *sender,
    const struct mail_params *params, struct filter_verdict *verdict);
void data_filter_done(struct session *s, struct filter_verdict *verdict);

#endif
