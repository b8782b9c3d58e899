/* The chain of checks: the table of compiled-in checks and the runner. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authres.h"
#include "chain.h"
#include "clamc.h"
#include "config.h"
#include "dkim.h"
#include "dmarc.h"
#include "log.h"
#include "spamc.h"
#include "spf.h"
#include "util.h"

/* The checks compiled into filterd. Each check adds its line here. */
static const struct chain_check chain_table[] = {
	{ "spf", CHAIN_MAIL | CHAIN_MESSAGE, spf_check, 0, spf_init, NULL },
	{ "dkim_verify", CHAIN_MESSAGE, dkim_verify_check, 0, dkim_verify_init, NULL },
	{ "dmarc", CHAIN_MESSAGE, dmarc_check, 0, dmarc_init, NULL },
	{ "dkim_sign", CHAIN_MESSAGE, dkim_sign_check, 0, dkim_sign_init, NULL },
	{ "authres", CHAIN_MESSAGE, authres_check, 0, NULL, NULL },
	{ "spamassassin", CHAIN_MESSAGE, spamc_check, 1, spamc_init, spamc_skipped },
	{ "clamav", CHAIN_MESSAGE, clamc_check, 1, clamc_init, NULL },
	{ NULL, 0, NULL, 0, NULL, NULL },
};

enum failure_policy { POLICY_ACCEPT, POLICY_TEMPFAIL };

/* A check of the configured chain. */
struct chain_link {
	const struct chain_check *check;
	enum failure_policy policy;
};

static struct chain_link *chain;
static size_t chain_count;
static long long scan_size_limit;

/*
 * A reload runs the checks' init again, so it must not overlap a running
 * check. It runs in its own thread (chain_reload) and waits until no
 * check runs, while new requests go on. Only after RELOAD_PATIENCE does
 * it close the gate to new requests, so a steady stream of requests
 * cannot keep it waiting for ever. The gate stays closed until the
 * running checks end and the init is done.
 */
/* NOTE: a chosen value, not measured. A check that runs longer than this
 * (a slow spamd) still delays new requests until it ends. Only a reload
 * that builds new state and swaps it in would avoid that. */
#define RELOAD_PATIENCE 5

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static size_t checks_running;
static int gate_closed;
static int reload_running, reload_again;

static const struct chain_check *
chain_find(const char *name)
{
	for (const struct chain_check *check = chain_table; check->name != NULL; check++)
		if (strcmp(check->name, name) == 0)
			return check;
	return NULL;
}

/* Read filterd_NAME_failure_policy into *POLICY. Returns -1 with ERR set
 * when it is missing. */
static int
chain_read_policy(const char *name, enum failure_policy *policy, char *err, size_t errsize)
{
	char param[128];

	snprintf(param, sizeof param, "filterd_%s_failure_policy", name);
	if (config_param_find(param) == NULL) {
		snprintf(err, errsize, "check %s has no %s parameter in lib/params_filterd.c",
		    name, param);
		return -1;
	}
	*policy = strcmp(config_string(param), "tempfail") == 0 ? POLICY_TEMPFAIL : POLICY_ACCEPT;
	return 0;
}

/*
 * Check the order of the configured chain. authres joins the results of
 * the checks before it, so a check after it would have its results lost.
 * dkim_sign signs the header as it is at that point, so a field that a
 * later check adds (X-Spam-Status, a Subject tag) would go unsigned or
 * break the signature. Only authres may follow it, because
 * Authentication-Results is never signed.
 */
static int
chain_check_order(char *err, size_t errsize)
{
	for (size_t i = 0; i + 1 < chain_count; i++) {
		const char *name = chain[i].check->name, *next = chain[i + 1].check->name;

		if (strcmp(name, "authres") == 0) {
			snprintf(err, errsize, "filterd_checks: authres must be the last check, "
			    "but %s follows it", next);
			return -1;
		}
		if (strcmp(name, "dkim_sign") == 0 && strcmp(next, "authres") != 0) {
			snprintf(err, errsize, "filterd_checks: only authres may follow dkim_sign, "
			    "but %s does; move dkim_sign after it", next);
			return -1;
		}
	}
	return 0;
}

static int
chain_init_checks(char *err, size_t errsize)
{
	for (size_t i = 0; i < chain_count; i++) {
		const struct chain_check *check = chain[i].check;
		char check_err[256] = "";

		if (check->init == NULL)
			continue;
		if (check->init(check_err, sizeof check_err) < 0) {
			snprintf(err, errsize, "check %s: %s", check->name, check_err);
			return -1;
		}
	}
	return 0;
}

int
chain_init(char *err, size_t errsize)
{
	char *const *names = config_list("filterd_checks");
	size_t count = 0;

	while (names[count] != NULL)
		count++;
	chain = xcalloc(count + 1, sizeof *chain);
	chain_count = 0;
	scan_size_limit = config_size("filterd_scan_size_limit");

	for (size_t i = 0; i < count; i++) {
		const struct chain_check *check = chain_find(names[i]);

		if (check == NULL) {
			snprintf(err, errsize, "filterd_checks: unknown check %s (not compiled in)",
			    names[i]);
			return -1;
		}
		for (size_t j = 0; j < chain_count; j++)
			if (chain[j].check == check) {
				snprintf(err, errsize, "filterd_checks: check %s is listed twice",
				    names[i]);
				return -1;
			}
		if (chain_read_policy(check->name, &chain[chain_count].policy, err, errsize) < 0)
			return -1;
		chain[chain_count++].check = check;
	}
	if (chain_check_order(err, errsize) < 0)
		return -1;
	return chain_init_checks(err, errsize);
}

/* Wait with gate_lock held until no check runs, closing the gate to new
 * requests after RELOAD_PATIENCE. */
static void
reload_wait_for_checks(void)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += RELOAD_PATIENCE;
	while (checks_running > 0) {
		if (pthread_cond_timedwait(&gate_cond, &gate_lock, &deadline) == ETIMEDOUT)
			break;
	}
	if (checks_running > 0)
		log_info("reload waits for %zu running checks; new requests wait too",
		    checks_running);
	gate_closed = 1;
	while (checks_running > 0)
		pthread_cond_wait(&gate_cond, &gate_lock);
}

static void *
reload_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&gate_lock);
	do {
		char err[512];

		reload_again = 0;
		reload_wait_for_checks();
		pthread_mutex_unlock(&gate_lock);

		if (chain_init_checks(err, sizeof err) < 0)
			log_error("reload failed: %s", err);
		else
			log_info("reloaded %zu checks", chain_count);

		pthread_mutex_lock(&gate_lock);
		gate_closed = 0;
		pthread_cond_broadcast(&gate_cond);
	} while (reload_again);
	reload_running = 0;
	pthread_mutex_unlock(&gate_lock);
	return NULL;
}

void
chain_reload(void)
{
	pthread_attr_t attr;
	pthread_t thread;
	int rc;

	pthread_mutex_lock(&gate_lock);
	if (reload_running) {
		reload_again = 1;
		pthread_mutex_unlock(&gate_lock);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&thread, &attr, reload_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		reload_running = 1;
	pthread_mutex_unlock(&gate_lock);
	if (rc != 0)
		log_error("reload failed: cannot start its thread: %s", strerror(rc));
}

size_t
chain_length(void)
{
	return chain_count;
}

/* Apply LINK's failure policy to a check that could not run. */
static void
chain_check_failed(const struct chain_link *link, const struct filter_message *msg,
    struct filter_result *result, const char *error)
{
	const char *id = msg->queue_id[0] != '\0' ? msg->queue_id : "NOQUEUE";
	char reply[FILTER_REPLY_MAX], reason[128];

	if (link->policy == POLICY_ACCEPT) {
		log_warn("%s: check %s failed: %s; accepting without it (failure policy accept)",
		    id, link->check->name, error);
		filter_result_log(result, "%s=error", link->check->name);
		return;
	}

	log_warn("%s: check %s failed: %s; replying 451 (failure policy tempfail)",
	    id, link->check->name, error);
	snprintf(reply, sizeof reply, "451 4.7.0 Error: the %s check is unavailable, try again later",
	    link->check->name);
	snprintf(reason, sizeof reason, "%s=error", link->check->name);
	filter_result_action(result, FILTER_TEMPFAIL, reply, reason);
	filter_result_log(result, "%s=error", link->check->name);
}

void
chain_run(enum filter_stage stage, const struct filter_message *msg,
    struct filter_result *result)
{
	unsigned stage_bit = stage == FILTER_STAGE_MAIL ? CHAIN_MAIL : CHAIN_MESSAGE;
	int too_big = stage == FILTER_STAGE_MESSAGE && msg->size > scan_size_limit;
	int skipped = 0;

	pthread_mutex_lock(&gate_lock);
	while (gate_closed)
		pthread_cond_wait(&gate_cond, &gate_lock);
	checks_running++;
	pthread_mutex_unlock(&gate_lock);

	for (size_t i = 0; i < chain_count; i++) {
		const struct chain_link *link = &chain[i];
		filter_check_fn *check;
		char err[256] = "";

		if ((link->check->stages & stage_bit) == 0)
			continue;
		check = link->check->fn;
		if (too_big && link->check->content_scanner) {
			skipped = 1;
			check = link->check->skipped;
			if (check == NULL)
				continue;
		}
		if (check(msg, result, err, sizeof err) < 0)
			chain_check_failed(link, msg, result, err[0] != '\0' ? err : "unknown error");
	}
	pthread_mutex_lock(&gate_lock);
	if (--checks_running == 0)
		pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);

	if (skipped) {
		filter_result_field(result,
		    "X-Estafeta-Filter: scan skipped, message larger than %lld bytes", scan_size_limit);
		filter_result_log(result, "scan=skipped");
	}
}
