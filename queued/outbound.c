/* Outbound jobs: grouping by domain, concurrency limits, connection reuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "envelope.h"
#include "log.h"
#include "outbound_auth.h"
#include "outbound.h"
#include "outbound_route.h"
#include "outbound_session.h"
#include "outbound_tls.h"
#include "resolver.h"
#include "scheduler.h"
#include "util.h"

/* Active sessions to one nexthop. */
struct destination {
	char nexthop[ROUTE_NAME_MAX];
	size_t sessions;
	struct destination *next;
};

TAILQ_HEAD(job_list, outbound_job);

static struct job_list waiting = TAILQ_HEAD_INITIALIZER(waiting);
static struct destination *destinations;
static size_t total_sessions;
/* The wording is what queue listings and tests have shown since before
 * outbound delivery existed. */
static char disabled_reason[600] = "outbound delivery is not enabled";
static int enabled;
static char secrets_error[512];
static int secrets_failed;

void
outbound_load_secrets(void)
{
	if (config_bool("outbound_delivery") &&
	    outbound_auth_init(secrets_error, sizeof secrets_error) < 0)
		secrets_failed = 1;
}

void
outbound_init(void)
{
	char err[512] = "";

	if (!config_bool("outbound_delivery")) {
		log_info("outbound delivery is off (outbound_delivery = no): mail for remote domains stays queued");
		return;
	}
	if (secrets_failed)
		snprintf(err, sizeof err, "%s", secrets_error);
	if (secrets_failed || resolver_init(err, sizeof err) < 0 || route_init(err, sizeof err) < 0 ||
	    outbound_tls_init(err, sizeof err) < 0) {
		snprintf(disabled_reason, sizeof disabled_reason, "outbound delivery is off: %s", err);
		log_error("%s", disabled_reason);
		resolver_stop();
		return;
	}
	enabled = 1;
	log_info("outbound delivery is on: relayhost=%s, smtp_destination_concurrency_limit=%lld",
	    config_string("relayhost")[0] != '\0' ? config_string("relayhost") : "none (MX lookup)",
	    config_int("smtp_destination_concurrency_limit"));
}

const char *
outbound_disabled_reason(void)
{
	return enabled ? NULL : disabled_reason;
}

static struct destination *
find_destination(const char *nexthop, int create)
{
	struct destination *d;

	for (d = destinations; d != NULL; d = d->next)
		if (strcmp(d->nexthop, nexthop) == 0)
			return d;
	if (!create)
		return NULL;
	d = xcalloc(1, sizeof *d);
	snprintf(d->nexthop, sizeof d->nexthop, "%s", nexthop);
	d->next = destinations;
	destinations = d;
	return d;
}

static void
release_session(const char *nexthop)
{
	struct destination *d = find_destination(nexthop, 0);
	struct destination **link;

	total_sessions--;
	if (d == NULL || --d->sessions > 0)
		return;
	for (link = &destinations; *link != d; link = &(*link)->next)
		;
	*link = d->next;
	free(d);
}

/* Start waiting jobs while the limits allow. */
static void
kick(void)
{
	struct outbound_job *job, *next;
	size_t limit = (size_t)config_int("smtp_destination_concurrency_limit");

	TAILQ_FOREACH_SAFE(job, &waiting, entry, next) {
		struct destination *d;

		if (total_sessions >= (size_t)config_int("smtp_concurrency_limit"))
			return;
		d = find_destination(job->nexthop, 1);
		if (d->sessions >= limit)
			continue;
		d->sessions++;
		total_sessions++;
		TAILQ_REMOVE(&waiting, job, entry);
		session_start(job);
	}
}

static void
add_job(struct qmsg *msg, const char *domain)
{
	struct outbound_job *job = xcalloc(1, sizeof *job);
	struct envelope *env = msg->env;

	job->msg = msg;
	job->created_usec = now_usec();
	snprintf(job->domain, sizeof job->domain, "%s", domain);
	route_nexthop(domain, job->nexthop, sizeof job->nexthop);
	job->rcpts = xcalloc(env->nrcpts, sizeof *job->rcpts);
	for (size_t i = 0; i < env->nrcpts; i++) {
		const char *at = strrchr(env->rcpts[i].address, '@');

		if (msg->outbound_rcpt[i] == 1 && at != NULL && strcasecmp(at + 1, domain) == 0) {
			job->rcpts[job->nrcpts++] = i;
			msg->outbound_rcpt[i] = 2;	/* taken by this job */
		}
	}
	msg->parts++;
	TAILQ_INSERT_TAIL(&waiting, job, entry);
}

void
outbound_start(struct qmsg *msg)
{
	struct envelope *env = msg->env;

	for (size_t i = 0; i < env->nrcpts; i++) {
		const char *at = strrchr(env->rcpts[i].address, '@');

		if (msg->outbound_rcpt[i] == 1 && at != NULL)
			add_job(msg, at + 1);
	}
	kick();
}

static void
free_job(struct outbound_job *job)
{
	free(job->rcpts);
	free(job);
}

/* Return the value of envelope attribute KEY of MSG, or "" when it is absent. */
static const char *
attr_or_empty(const struct qmsg *msg, const char *key)
{
	const char *value = envelope_attr(msg->env, key);

	return value != NULL ? value : "";
}

/* Return whether a session set up for FIRST may carry SECOND. The TLS
 * policy was looked up with FIRST's REQUIRETLS and TLS-Required values, so
 * both messages must have the same values. */
static int
same_tls_needs(const struct qmsg *first, const struct qmsg *second)
{
	return strcmp(attr_or_empty(first, "requiretls"), attr_or_empty(second, "requiretls")) == 0 &&
	    strcmp(attr_or_empty(first, "tls_required"), attr_or_empty(second, "tls_required")) == 0;
}

void
outbound_job_done(struct outbound_job *job, struct session *session)
{
	struct qmsg *msg = job->msg;
	struct outbound_job *next;
	char nexthop[ROUTE_NAME_MAX];

	snprintf(nexthop, sizeof nexthop, "%s", job->nexthop);
	free_job(job);

	/* Take the job that reuses the connection before the attempt ends,
	 * since ending it may free MSG. */
	TAILQ_FOREACH(next, &waiting, entry)
		if (session != NULL && strcmp(next->nexthop, nexthop) == 0 && same_tls_needs(msg, next->msg))
			break;
	if (next != NULL)
		TAILQ_REMOVE(&waiting, next, entry);
	scheduler_attempt_done(msg);

	if (session == NULL) {
		release_session(nexthop);
		kick();
	} else if (next != NULL) {
		session_continue(session, next);
	} else {
		session_quit(session);
	}
}

void
outbound_session_closed(const char *nexthop)
{
	release_session(nexthop);
	kick();
}

void
outbound_reload(void)
{
	char err[512] = "";
	long entries;

	if (!enabled) {
		log_info("SIGHUP received: outbound delivery is off, so there is nothing to reload");
		return;
	}

	entries = route_reload(err, sizeof err);
	if (entries < 0)
		log_error("reloading transport_maps failed: %s; the map loaded before stays in use", err);
	else if (config_string("transport_maps")[0] != '\0')
		log_info("transport_maps %s reloaded: %ld entries", config_string("transport_maps"), entries);

	/* As the queue user, queued cannot read a password file that only
	 * root may read, so a reload then fails and the old credentials stay. */
	if (config_string("relayhost_password_file")[0] == '\0')
		return;
	if (outbound_auth_reload(err, sizeof err) < 0)
		log_error("reloading relayhost_password_file failed: %s; the credentials read before stay in use",
		    err);
	else
		log_info("relayhost_password_file %s reloaded", config_string("relayhost_password_file"));
}

void
outbound_stop(void)
{
	struct outbound_job *job;

	session_close_all();
	while ((job = TAILQ_FIRST(&waiting)) != NULL) {
		TAILQ_REMOVE(&waiting, job, entry);
		free_job(job);
	}
	if (enabled) {
		outbound_tls_shutdown();
		resolver_stop();
	}
	outbound_auth_free();
}
