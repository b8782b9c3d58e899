/*
 * The protocol between smtpd and filterd, framed by lib/ipc.h.
 *
 * smtpd sends a MAIL request after MAIL FROM and a MESSAGE request at
 * the end of the data, the latter with the spool file's descriptor
 * attached (filterd only reads it with pread). filterd replies to each
 * request with one RESULT. When it already serves filterd_max_connections
 * requests, it sends BUSY to the next one and closes its connection
 * without reading the request, so the client may see only the reset.
 * A request it cannot parse gets ERROR. smtpd applies smtpd_filter_failure_policy to BUSY,
 * ERROR, a timeout and a lost connection.
 *
 * Values cannot hold LF, so a folded header field travels as one
 * FILTER_KEY_FIELD entry per line: an entry whose value starts with a
 * space or a tab continues the field before it.
 */
#ifndef ESTAFETA_FILTER_PROTO_H
#define ESTAFETA_FILTER_PROTO_H

/* Message types. */
#define FILTER_REQUEST_MAIL	"MAIL"
#define FILTER_REQUEST_MESSAGE	"MESSAGE"
#define FILTER_REPLY_RESULT	"RESULT"
#define FILTER_REPLY_BUSY	"BUSY"
#define FILTER_REPLY_ERROR	"ERROR"

/* Request keys, both stages. */
#define FILTER_KEY_CLIENT_ADDR	"client_addr"	/* IPv4 or IPv6 text, no brackets */
#define FILTER_KEY_CLIENT_NAME	"client_name"	/* "unknown" without a verified name */
#define FILTER_KEY_HELO		"helo"
#define FILTER_KEY_SENDER	"sender"	/* "" for the null reverse-path */
#define FILTER_KEY_AUTH_USER	"auth_user"	/* left out when not authenticated */
#define FILTER_KEY_MYNETWORKS	"mynetworks"	/* "1" or "0" */
#define FILTER_KEY_FORWARD	"forward"	/* "1": deliverd forwards mail that
						 * arrived here, whose results with
						 * our authserv-id are our own */

/* Request keys, MESSAGE only. */
#define FILTER_KEY_QUEUE_ID	"queue_id"
#define FILTER_KEY_RCPT		"rcpt"		/* one per recipient */
#define FILTER_KEY_SIZE		"size"		/* bytes of the spool file to read */

/* Keys of both a MESSAGE request and a RESULT. */
#define FILTER_KEY_SPF_RESULT	"spf_result"
#define FILTER_KEY_SPF_DOMAIN	"spf_domain"

/* RESULT keys. */
#define FILTER_KEY_ACTION	"action"	/* one of the FILTER_ACTION_ words */
#define FILTER_KEY_REPLY	"reply"		/* full SMTP reply for reject and tempfail */
#define FILTER_KEY_REASON	"reason"	/* short cause for smtpd's log line */
#define FILTER_KEY_LOG		"log"		/* the checks' key=value log fields */
#define FILTER_KEY_FIELD	"field"		/* a header field line to insert, see above */
#define FILTER_KEY_REMOVE	"remove"	/* "NAME:INDEX", INDEX 1-based */
#define FILTER_KEY_SUBJECT_PREFIX "subject_prefix"

/* BUSY and ERROR key. */
#define FILTER_KEY_ERROR	"error"

/* Values of FILTER_KEY_ACTION. */
#define FILTER_ACTION_ACCEPT	 "accept"
#define FILTER_ACTION_QUARANTINE "quarantine"
#define FILTER_ACTION_DISCARD	 "discard"
#define FILTER_ACTION_TEMPFAIL	 "tempfail"
#define FILTER_ACTION_REJECT	 "reject"

#endif
