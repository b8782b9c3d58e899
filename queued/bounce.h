/*
 * Bounces: RFC 3464 delivery status notifications to the sender for
 * recipients that failed permanently (and, with delay_warning_time, for
 * recipients still deferred), queued like any other message with the
 * same durable commit, from MAILER-DAEMON with the null sender.
 */
#ifndef ESTAFETA_QUEUED_BOUNCE_H
#define ESTAFETA_QUEUED_BOUNCE_H

#include <stddef.h>
#include <time.h>

struct envelope;
struct qmsg;

enum bounce_kind {
	BOUNCE_FAILED,	/* the RCPT_FAILED recipients; Action: failed */
	BOUNCE_DELAYED,	/* the RCPT_DEFERRED recipients; Action: delayed */
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
	const char *headers;		/* header section of the original message */
	size_t headers_len;
	const char *myhostname;
	const char *bounce_id;		/* queue id of the notification */
	time_t now;
};

/* Build the notification text (LF line ends). Sets *EIGHTBIT when the
 * result has bytes >= 0x80. Returns a new buffer of *LEN bytes. */
char *bounce_build(const struct bounce_report *report, size_t *len, int *eightbit);

/* The Diagnostic-Code value for REASON: "smtp; REPLY" for a server
 * reply, "X-Estafeta; TEXT" otherwise, one line, ASCII, length-capped. */
char *bounce_diagnostic_code(const char *reason);

#endif
