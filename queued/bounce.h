/*
 * Bounces: RFC 3464 delivery status notifications to the sender for
 * recipients that failed permanently, queued like any other message
 * (same durable commit), from MAILER-DAEMON with the null sender.
 */
#ifndef ESTAFETA_QUEUED_BOUNCE_H
#define ESTAFETA_QUEUED_BOUNCE_H

#include <stddef.h>
#include <time.h>

struct envelope;
struct qmsg;

/* BOUNCE_ID is the queue id of the committed notification, or NULL if
 * it could not be queued (the failed recipients then stay failed and
 * the next attempt tries again). */
typedef void (*bounce_done_cb)(struct qmsg *msg, const char *bounce_id);

/* Queue a notification for the RCPT_FAILED recipients of MSG, whose
 * sender is not the null sender. DONE runs once it is committed. */
void bounce_send(struct qmsg *msg, bounce_done_cb done);

/*
 * Build the notification text (LF line ends) for the failed recipients
 * of ENV. HEADERS is the header section of the original message. Sets
 * *EIGHTBIT when the result has bytes >= 0x80. Returns a new buffer.
 */
char *bounce_build(const struct envelope *env, const char *headers, size_t headers_len,
    const char *myhostname, const char *bounce_id, time_t now, size_t *len, int *eightbit);

/* The Diagnostic-Code value for REASON: "smtp; REPLY" for a server
 * reply, "X-Estafeta; TEXT" otherwise, one line, ASCII, length-capped. */
char *bounce_diagnostic_code(const char *reason);

#endif
