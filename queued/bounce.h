/*
 * Bounces: RFC 3464 delivery status notifications to the sender for
 * recipients that failed permanently (and, with delay_warning_time, for
 * recipients still deferred, and for recipients delivered with
 * NOTIFY=SUCCESS), queued like any other message with the same durable
 * commit, from MAILER-DAEMON with the null sender. The DSN parameters
 * of RFC 3461 decide which recipients a report lists (NOTIFY), whether
 * a failure report returns the whole message (RET) and its
 * Original-Envelope-Id (ENVID).
 */
#ifndef ESTAFETA_QUEUED_BOUNCE_H
#define ESTAFETA_QUEUED_BOUNCE_H

#include <stddef.h>
#include <time.h>

struct envelope;
struct envelope_rcpt;
struct qmsg;

enum bounce_kind {
	BOUNCE_FAILED,	/* the RCPT_FAILED recipients; Action: failed */
	BOUNCE_DELAYED,	/* the RCPT_DEFERRED recipients; Action: delayed */
	BOUNCE_DELIVERED, /* the RCPT_SENT recipients with NOTIFY=SUCCESS not yet
			   * reported; Action: delivered, or expanded */
};

/* BOUNCE_ID is the queue id of the committed notification, or NULL if
 * it could not be queued (a failed notification is then tried again
 * at the next attempt). */
typedef void (*bounce_done_cb)(struct qmsg *msg, const char *bounce_id);

/* Queue a notification of KIND about MSG, whose sender is not the null
 * sender. DONE runs once it is committed. */
void bounce_send(struct qmsg *msg, enum bounce_kind kind, bounce_done_cb done);

/* The inputs of one notification. */
struct bounce_report {
	const struct envelope *env;	/* the original message */
	enum bounce_kind kind;
	time_t retry_until;		/* BOUNCE_DELAYED: end of the queue lifetime */
	const char *headers;		/* header section of the original message, */
	size_t headers_len;		/* or all of it when full is set */
	int full;			/* RET=FULL on a failure report: headers is the message */
	const char *myhostname;
	const char *bounce_id;		/* queue id of the notification */
	time_t now;
};

/* Build the notification text (LF line ends). Sets *EIGHTBIT when the
 * result has bytes >= 0x80. Returns a new buffer of *LEN bytes. */
char *bounce_build(const struct bounce_report *report, size_t *len, int *eightbit);

/* Whether REPORT lists RCPT: its status fits the kind of report and it
 * asked for that kind of notification. */
int bounce_reports_rcpt(const struct bounce_report *report, const struct envelope_rcpt *rcpt);

/* The Diagnostic-Code value for REASON: "smtp; REPLY" for a server
 * reply, "X-Estafeta; TEXT" otherwise, one line, ASCII, length-capped. */
char *bounce_diagnostic_code(const char *reason);

#endif
