/* Scheduling: attempts, backoff, expiry, bounces and removal. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "bounce.h"
#include "commit.h"
#include "commit_dsn.h"
#include "config.h"
#include "domain.h"
#include "envelope.h"
#include "lmtp_client.h"
#include "log.h"
#include "outbound.h"
#include "queued.h"
#include "scheduler.h"
#include "util.h"

/* dsn for remote recipients while outbound delivery is off (RFC 3463
 * X.3.5: system incorrectly configured). */
#define OUTBOUND_DISABLED_DSN "4.3.5"

struct qmsg_list scheduler_messages = TAILQ_HEAD_INITIALIZER(scheduler_messages);
static struct qmsg_list ready_messages = TAILQ_HEAD_INITIALIZER(ready_messages);
static size_t ready_count;
static struct event *queue_run_ev;

static void finish_attempt(struct qmsg *msg);

int
scheduler_is_local(const char *address)
{
	const char *at = strrchr(address, '@');

	return at == NULL || domain_classify(at + 1) != DOMAIN_REMOTE;
}

static double
delay_seconds(const struct envelope *env)
{
	return (double)(now_usec() - env->arrival_usec) / 1e6;
}

void
scheduler_log_rcpt(const struct qmsg *msg, size_t index, const char *relay,
    const char *status, const char *reply)
{
	scheduler_log_rcpt_delays(msg, index, relay, NULL, status, reply);
}

void
scheduler_log_rcpt_delays(const struct qmsg *msg, size_t index, const char *relay,
    const char *delays, const char *status, const char *reply)
{
	const struct envelope_rcpt *rcpt = &msg->env->rcpts[index];
	char address[512], text[1024], relay_text[600];

	log_sanitize(address, sizeof address, rcpt->address, strlen(rcpt->address));
	log_sanitize(text, sizeof text, reply, strlen(reply));
	log_sanitize(relay_text, sizeof relay_text, relay, strlen(relay));
	log_info("%s: to=<%s>, relay=%s, delay=%.2f%s%s, dsn=%s, status=%s (%s)",
	    msg->env->id, address, relay_text, delay_seconds(msg->env),
	    delays != NULL ? ", delays=" : "", delays != NULL ? delays : "",
	    rcpt->dsn != NULL ? rcpt->dsn : "-", status, text);
}

static void
log_active(const struct qmsg *msg)
{
	char sender[512];

	log_sanitize(sender, sizeof sender, msg->env->sender, strlen(msg->env->sender));
	log_info("%s: from=<%s>, size=%lld, nrcpt=%zu (queue active)", msg->env->id,
	    sender, msg->env->size, msg->env->nrcpts);
}

/* Start an attempt: local recipients go to LMTP, remote ones to the
 * SMTP client, or wait while outbound delivery is off. */
static void
activate(struct qmsg *msg)
{
	struct envelope *env = msg->env;
	const char *outbound_off = outbound_disabled_reason();
	size_t nlmtp = 0, noutbound = 0;

	log_active(msg);
	msg->state = QMSG_READY;
	free(msg->lmtp_rcpt);
	free(msg->outbound_rcpt);
	msg->lmtp_rcpt = xcalloc(env->nrcpts ? env->nrcpts : 1, 1);
	msg->outbound_rcpt = xcalloc(env->nrcpts ? env->nrcpts : 1, 1);

	for (size_t i = 0; i < env->nrcpts; i++) {
		struct envelope_rcpt *rcpt = &env->rcpts[i];

		if (rcpt->status != RCPT_PENDING && rcpt->status != RCPT_DEFERRED)
			continue;
		if (scheduler_is_local(rcpt->address)) {
			msg->lmtp_rcpt[i] = 1;
			nlmtp++;
			continue;
		}
		if (outbound_off == NULL) {
			msg->outbound_rcpt[i] = 1;
			noutbound++;
			continue;
		}
		envelope_rcpt_set(rcpt, RCPT_DEFERRED, OUTBOUND_DISABLED_DSN, outbound_off);
		scheduler_log_rcpt(msg, i, "none", "deferred", outbound_off);
	}

	/* One extra part keeps the attempt open until every part has started. */
	msg->parts = 1;
	if (nlmtp == 0)
		msg->state = QMSG_ACTIVE;
	if (nlmtp > 0) {
		msg->parts++;
		TAILQ_INSERT_TAIL(&ready_messages, msg, ready_entry);
		ready_count++;
		lmtp_kick();
	}
	/* REQUIRETLS (RFC 8689) and TLS-Required: No reach the TLS policy
	 * through outbound_tls_request. */
	if (noutbound > 0)
		outbound_start(msg);
	scheduler_attempt_done(msg);
}

void
scheduler_add(struct envelope *env)
{
	struct qmsg *msg = xcalloc(1, sizeof *msg);

	msg->env = env;
	msg->state = QMSG_DEFERRED;
	TAILQ_INSERT_TAIL(&scheduler_messages, msg, all_entry);
	if (env->next_attempt <= (long long)time(NULL))
		activate(msg);
}

struct qmsg *
scheduler_find(const char *id)
{
	struct qmsg *msg;

	TAILQ_FOREACH(msg, &scheduler_messages, all_entry)
		if (strcmp(msg->env->id, id) == 0)
			return msg;
	return NULL;
}

struct qmsg *
scheduler_next_ready(void)
{
	struct qmsg *msg = TAILQ_FIRST(&ready_messages);

	if (msg == NULL)
		return NULL;
	TAILQ_REMOVE(&ready_messages, msg, ready_entry);
	ready_count--;
	msg->state = QMSG_ACTIVE;
	return msg;
}

size_t
scheduler_ready_count(void)
{
	return ready_count;
}

static void
removed_cb(struct commit_job *job, void *arg)
{
	if (job->error != 0)
		log_error("%s: remove from the spool failed: %s", job->id, strerror(job->error));
	else
		log_info("%s: removed", job->id);
}

static void
free_message(struct qmsg *msg)
{
	envelope_free(msg->env);
	free(msg->lmtp_rcpt);
	free(msg->outbound_rcpt);
	free(msg);
}

static void
remove_message(struct qmsg *msg)
{
	if (msg->state == QMSG_READY) {
		TAILQ_REMOVE(&ready_messages, msg, ready_entry);
		ready_count--;
	}
	TAILQ_REMOVE(&scheduler_messages, msg, all_entry);
	commit_remove(msg->env, removed_cb, NULL);
	free_message(msg);
}

static void
update_cb(struct commit_job *job, void *arg)
{
	if (job->error != 0)
		log_error("%s: envelope update failed: %s; the last attempt may be repeated",
		    job->id, strerror(job->error));
}

/* Recipients still deferred after the queue lifetime fail, keeping the
 * reason of their last attempt. */
static void
expire_if_due(struct qmsg *msg)
{
	struct envelope *env = msg->env;
	long long lifetime = env->sender[0] == '\0' ?
	    queued_settings.bounce_queue_lifetime : queued_settings.maximal_queue_lifetime;
	char sender[512];

	if (envelope_count(env, RCPT_DEFERRED) == 0 ||
	    now_usec() - env->arrival_usec < lifetime * 1000000)
		return;

	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == RCPT_DEFERRED)
			envelope_rcpt_expire(&env->rcpts[i]);
	log_sanitize(sender, sizeof sender, env->sender, strlen(env->sender));
	log_info("%s: from=<%s>, status=expired, returned to sender", env->id, sender);
}

/* Count the recipients in STATUS that requested notifications of KIND. */
static size_t
count_wanting(const struct envelope *env, enum rcpt_status status, enum dsn_notify kind)
{
	size_t n = 0;

	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == status && envelope_rcpt_wants(&env->rcpts[i], kind))
			n++;
	return n;
}

/* Log that recipient INDEX gets no notification it would otherwise get, and why. */
static void
log_rcpt_notify_ignored(const struct qmsg *msg, size_t index, const char *why)
{
	const struct envelope_rcpt *rcpt = &msg->env->rcpts[index];
	char address[512];

	log_sanitize(address, sizeof address, rcpt->address, strlen(rcpt->address));
	log_info("%s: to=<%s>, notify=%s: no notification to the sender: %s", msg->env->id,
	    address, rcpt->notify != NULL ? rcpt->notify : "-", why);
}

static void
mark_failed_bounced(struct envelope *env)
{
	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == RCPT_FAILED)
			env->rcpts[i].status = RCPT_BOUNCED;
}

static void
delay_warning_done(struct qmsg *msg, const char *bounce_id)
{
	if (bounce_id != NULL) {
		log_info("%s: sender delay notification: %s", msg->env->id, bounce_id);
		envelope_set_attr(msg->env, "delay_warning_sent", "yes");
	}
	finish_attempt(msg);
}

/* Warn the sender once when recipients are still deferred after
 * delay_warning_time (0 turns warnings off, as in Postfix). */
static void
send_delay_warning(struct qmsg *msg)
{
	const struct envelope *env = msg->env;
	long long after = queued_settings.delay_warning_time;

	if (after == 0 || msg->deleted || env->sender[0] == '\0' ||
	    envelope_attr(env, "delay_warning_sent") != NULL ||
	    count_wanting(env, RCPT_DEFERRED, DSN_NOTIFY_DELAY) == 0 ||
	    now_usec() - env->arrival_usec < after * 1000000) {
		finish_attempt(msg);
		return;
	}
	bounce_send(msg, BOUNCE_DELAYED, delay_warning_done);
}

/* NOTE: when the notification cannot be queued and every recipient is
 * done, the message is removed anyway and the sender gets no success
 * notification. Failure notifications are retried instead. */
static void
success_notice_done(struct qmsg *msg, const char *bounce_id)
{
	struct envelope *env = msg->env;

	if (bounce_id != NULL) {
		log_info("%s: sender delivery status notification: %s", env->id, bounce_id);
		for (size_t i = 0; i < env->nrcpts; i++)
			if (env->rcpts[i].status == RCPT_SENT &&
			    envelope_rcpt_wants(&env->rcpts[i], DSN_NOTIFY_SUCCESS))
				env->rcpts[i].success_reported = 1;
	}
	send_delay_warning(msg);
}

/*
 * Send a "delivered" DSN for recipients delivered with NOTIFY=SUCCESS.
 * Only a sender who logged in or submitted locally gets one, so that an
 * open SMTP client cannot make this host send mail to any address it
 * puts in MAIL FROM. Other senders' requests are logged and dropped.
 */
static void
send_success_notice(struct qmsg *msg)
{
	struct envelope *env = msg->env;
	size_t wanted = 0;

	for (size_t i = 0; i < env->nrcpts; i++) {
		struct envelope_rcpt *rcpt = &env->rcpts[i];

		if (rcpt->status != RCPT_SENT || rcpt->success_reported ||
		    !envelope_rcpt_wants(rcpt, DSN_NOTIFY_SUCCESS))
			continue;
		if (env->sender[0] != '\0' && envelope_sender_authenticated(env)) {
			wanted++;
			continue;
		}
		log_rcpt_notify_ignored(msg, i, env->sender[0] == '\0' ? "null sender" :
		    "sender not authenticated");
		rcpt->success_reported = 1;
	}
	if (wanted == 0 || msg->deleted) {
		send_delay_warning(msg);
		return;
	}
	bounce_send(msg, BOUNCE_DELIVERED, success_notice_done);
}

static void
failure_notice_done(struct qmsg *msg, const char *bounce_id)
{
	if (bounce_id != NULL) {
		log_info("%s: sender non-delivery notification: %s", msg->env->id, bounce_id);
		mark_failed_bounced(msg->env);
	}
	send_success_notice(msg);
}

/* Failed recipients whose NOTIFY leaves out FAILURE (NOTIFY=NEVER, for
 * one) are done without a notification. */
static void
drop_unwanted_failures(struct qmsg *msg)
{
	struct envelope *env = msg->env;

	for (size_t i = 0; i < env->nrcpts; i++) {
		struct envelope_rcpt *rcpt = &env->rcpts[i];

		if (rcpt->status != RCPT_FAILED || envelope_rcpt_wants(rcpt, DSN_NOTIFY_FAILURE))
			continue;
		log_rcpt_notify_ignored(msg, i, "no failure notification requested");
		rcpt->status = RCPT_BOUNCED;
	}
}

/* Return failed recipients to the sender, unless it is the null sender. */
static void
send_failure_notice(struct qmsg *msg)
{
	struct envelope *env = msg->env;

	drop_unwanted_failures(msg);
	if (envelope_count(env, RCPT_FAILED) == 0) {
		send_success_notice(msg);
		return;
	}
	if (env->sender[0] == '\0') {
		log_info("%s: no bounce to the null sender; %zu failed recipients dropped",
		    env->id, envelope_count(env, RCPT_FAILED));
		mark_failed_bounced(env);
		send_success_notice(msg);
		return;
	}
	bounce_send(msg, BOUNCE_FAILED, failure_notice_done);
}

/* The steps after an attempt run in order, each possibly waiting for a
 * notification to be committed: expiry, failure notice, success notice,
 * delay warning, then removal or deferral (finish_attempt). */
void
scheduler_attempt_done(struct qmsg *msg)
{
	if (--msg->parts > 0)
		return;
	msg->env->attempts++;
	if (msg->deleted) {
		remove_message(msg);
		return;
	}
	expire_if_due(msg);
	send_failure_notice(msg);
}

/* Remove the message if every recipient is done, else defer it. */
static void
finish_attempt(struct qmsg *msg)
{
	struct envelope *env = msg->env;
	long long backoff;

	if (msg->deleted || (envelope_count(env, RCPT_PENDING) == 0 &&
	    envelope_count(env, RCPT_DEFERRED) == 0 && envelope_count(env, RCPT_FAILED) == 0)) {
		remove_message(msg);
		return;
	}

	backoff = scheduler_backoff(env->attempts, queued_settings.minimal_backoff_time,
	    queued_settings.maximal_backoff_time);
	env->next_attempt = (long long)time(NULL) + backoff;
	msg->state = QMSG_DEFERRED;
	commit_update(env, update_cb, NULL);
}

size_t
scheduler_flush(const char *id)
{
	struct qmsg *msg, *next;
	size_t count = 0;

	TAILQ_FOREACH_SAFE(msg, &scheduler_messages, all_entry, next) {
		if (id != NULL && strcmp(msg->env->id, id) != 0)
			continue;
		if (msg->state != QMSG_DEFERRED)
			continue;
		msg->env->next_attempt = 0;
		count++;
		activate(msg);
	}
	return count;
}

int
scheduler_delete(const char *id)
{
	struct qmsg *msg = scheduler_find(id);

	if (msg == NULL)
		return -1;
	if (msg->state == QMSG_READY && msg->parts > 1) {
		/* Outbound jobs still run: take back the LMTP part only. */
		TAILQ_REMOVE(&ready_messages, msg, ready_entry);
		ready_count--;
		msg->state = QMSG_ACTIVE;
		msg->deleted = 1;
		scheduler_attempt_done(msg);
	} else if (msg->state == QMSG_ACTIVE) {
		msg->deleted = 1;
	} else {
		remove_message(msg);
	}
	return 0;
}

/* Queue run: make due deferred messages ready (Postfix's queue_run_delay). */
static void
queue_run_cb(evutil_socket_t fd, short what, void *arg)
{
	long long now = (long long)time(NULL);
	struct qmsg *msg, *next;

	TAILQ_FOREACH_SAFE(msg, &scheduler_messages, all_entry, next)
		if (msg->state == QMSG_DEFERRED && msg->env->next_attempt <= now)
			activate(msg);
}

void
scheduler_init(void)
{
	struct timeval interval = { .tv_sec = queued_settings.queue_run_delay };

	queue_run_ev = event_new(queued_base, -1, EV_PERSIST, queue_run_cb, NULL);
	event_add(queue_run_ev, &interval);
}

void
scheduler_stop(void)
{
	struct qmsg *msg;

	if (queue_run_ev != NULL)
		event_free(queue_run_ev);
	queue_run_ev = NULL;
	while ((msg = TAILQ_FIRST(&scheduler_messages)) != NULL) {
		TAILQ_REMOVE(&scheduler_messages, msg, all_entry);
		free_message(msg);
	}
	TAILQ_INIT(&ready_messages);
	ready_count = 0;
}
