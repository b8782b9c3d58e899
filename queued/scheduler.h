/*
 * The scheduler: every committed message, its delivery attempts,
 * deferral with exponential backoff, expiry and removal.
 *
 * A message is DEFERRED (waiting for next_attempt; a queue run every
 * queue_run_delay, or FLUSH, makes it READY), READY (waiting for an
 * LMTP connection) or ACTIVE (being delivered or finishing an attempt).
 */
#ifndef ESTAFETA_QUEUED_SCHEDULER_H
#define ESTAFETA_QUEUED_SCHEDULER_H

#include <stddef.h>
#include <sys/queue.h>

struct envelope;

enum qmsg_state {
	QMSG_DEFERRED,
	QMSG_READY,
	QMSG_ACTIVE,
};

struct qmsg {
	struct envelope *env;
	enum qmsg_state state;
	int deleted;		/* DELETE arrived during an attempt */
	/* Per recipient: 1 if this attempt hands it to LMTP. */
	unsigned char *lmtp_rcpt;
	/* Per recipient: 1 if this attempt hands it to the SMTP client,
	 * 2 once an outbound job has taken it. */
	unsigned char *outbound_rcpt;
	/* Parts of the attempt still running (the LMTP delivery and each
	 * outbound job); scheduler_attempt_done ends the attempt at 0. */
	int parts;
	TAILQ_ENTRY(qmsg) all_entry;
	TAILQ_ENTRY(qmsg) ready_entry;
};

TAILQ_HEAD(qmsg_list, qmsg);

/* glibc's <sys/queue.h> lacks the BSD _SAFE iterator. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)				\
	for ((var) = TAILQ_FIRST(head);						\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);		\
	    (var) = (tvar))
#endif

/* Every message, in arrival order of this process. */
extern struct qmsg_list scheduler_messages;

void scheduler_init(void);
void scheduler_stop(void);

/* Take a committed message (ENV is owned from now on) and start it. */
void scheduler_add(struct envelope *env);

struct qmsg *scheduler_find(const char *id);

/* Make deferred messages (all, or the one with ID) ready now.
 * Returns how many were rescheduled. */
size_t scheduler_flush(const char *id);

/* Remove the message with ID. 0, or -1 if there is none. */
int scheduler_delete(const char *id);

/* For the LMTP client: the next READY message (now ACTIVE), or NULL. */
struct qmsg *scheduler_next_ready(void);
size_t scheduler_ready_count(void);

/* For the LMTP and SMTP clients: one part of the attempt on MSG is
 * over, and the outcome of each of its recipients is in the envelope.
 * The attempt ends when the last part is over. */
void scheduler_attempt_done(struct qmsg *msg);

/* 1 if ADDRESS is delivered by deliverd (local or virtual domain, or no domain). */
int scheduler_is_local(const char *address);

/* Log one recipient's outcome the Postfix way. */
void scheduler_log_rcpt(const struct qmsg *msg, size_t index, const char *relay,
    const char *status, const char *reply);

/* The same with Postfix's "delays=a/b/c/d" field after delay= (DELAYS
 * is "a/b/c/d" in seconds, or NULL to leave the field out). */
void scheduler_log_rcpt_delays(const struct qmsg *msg, size_t index, const char *relay,
    const char *delays, const char *status, const char *reply);

/* The delay in seconds after attempt number ATTEMPTS (1 for the first):
 * MINIMAL, doubled for each further attempt, at most MAXIMAL. */
static inline long long
scheduler_backoff(int attempts, long long minimal, long long maximal)
{
	long long delay = minimal;

	for (int i = 1; i < attempts && delay < maximal; i++)
		delay *= 2;
	return delay < maximal ? delay : maximal;
}

#endif
