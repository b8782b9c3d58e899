/* One SMTP client session and the jobs it carries (queued/outbound.c
 * schedules them). */
#ifndef ESTAFETA_QUEUED_OUTBOUND_SESSION_H
#define ESTAFETA_QUEUED_OUTBOUND_SESSION_H

#include <stddef.h>
#include <sys/queue.h>

#include "outbound_route.h"

struct qmsg;
struct session;

/* The recipients of one message for one recipient domain. */
struct outbound_job {
	struct qmsg *msg;
	char domain[ROUTE_NAME_MAX];
	char nexthop[ROUTE_NAME_MAX];
	size_t *rcpts;		/* indexes into msg->env->rcpts */
	size_t nrcpts;
	long long created_usec;	/* when the attempt handed the job over */
	TAILQ_ENTRY(outbound_job) entry;
};

/* Route JOB and deliver it on a new session. */
void session_start(struct outbound_job *job);

/* Deliver JOB on SESSION, which is idle after an earlier job to the same
 * nexthop. */
void session_continue(struct session *session, struct outbound_job *job);

/* Close SESSION (QUIT when it is idle). */
void session_quit(struct session *session);

/* Close every session at once. */
void session_close_all(void);

/* Called by the session code when JOB is over and every recipient has an
 * outcome. SESSION is idle and may take another job, or is NULL when the
 * connection is gone. */
void outbound_job_done(struct outbound_job *job, struct session *session);

/* Called by the session code when a session that carried no job is gone. */
void outbound_session_closed(const char *nexthop);

#endif
