/*
 * Synchronous DNS lookups for filterd's worker threads. One libunbound
 * context in threaded async mode resolves every query. A dispatcher
 * thread runs ub_process, and each caller waits on its own condition
 * variable until its result arrives or filterd_dns_timeout passes.
 * A plain ub_resolve would be simpler but has no timeout.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#include "config.h"
#include "dns.h"
#include "log.h"
#include "unbound_ctx.h"
#include "util.h"

#define CLASS_IN 1
#define DISPATCH_POLL_MS 200

static struct ub_ctx *context;
static long long timeout_seconds;
static pthread_t dispatcher;
static int dispatcher_running;
static atomic_int stopping;
static int initialized;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* One lookup in flight, shared by the caller and the callback. The side
 * that finishes last frees it: the callback when the caller gave up. */
struct pending {
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	int done;
	int abandoned;
	int err;
	struct ub_result *result;
};

static void
pending_free(struct pending *p)
{
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->done_cond);
	free(p);
}

/* A wall clock step must not shorten or stretch the wait, so the
 * condition variable measures its deadline on CLOCK_MONOTONIC. */
static void
pending_init_cond(struct pending *p)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->done_cond, &attr);
	pthread_condattr_destroy(&attr);
}

static void
lookup_done(void *arg, int err, struct ub_result *result)
{
	struct pending *p = arg;

	pthread_mutex_lock(&p->lock);
	if (p->abandoned) {
		pthread_mutex_unlock(&p->lock);
		if (result != NULL)
			ub_resolve_free(result);
		pending_free(p);
		return;
	}
	p->err = err;
	p->result = result;
	p->done = 1;
	pthread_cond_signal(&p->done_cond);
	pthread_mutex_unlock(&p->lock);
}

/* Run the callbacks of finished queries until dns_stop. */
static void *
dispatch_loop(void *arg)
{
	struct pollfd pfd = { .fd = ub_fd(context), .events = POLLIN };

	(void)arg;
	while (!stopping) {
		int n = poll(&pfd, 1, DISPATCH_POLL_MS);

		if (n < 0 && errno != EINTR) {
			log_error("DNS resolver: poll failed: %s", strerror(errno));
			sleep(1);
			continue;
		}
		if (n > 0) {
			int rc = ub_process(context);

			if (rc != 0)
				log_error("DNS resolver: ub_process failed: %s", ub_strerror(rc));
		}
	}
	return NULL;
}

static int
dns_create(char *err, size_t errsize)
{
	char *const *servers = config_list("dns_resolvers");
	const char *anchor = config_string("dns_trust_anchor_file");

	timeout_seconds = config_time("filterd_dns_timeout");
	if (servers[0] == NULL) {
		log_warn("DNS resolver: dns_resolvers is empty, so every DNS lookup of the SPF, DKIM and DMARC checks fails as a temporary error");
		return 0;
	}

	context = unbound_ctx_create(err, errsize);
	if (context == NULL)
		return -1;

	stopping = 0;
	if (pthread_create(&dispatcher, NULL, dispatch_loop, NULL) != 0) {
		snprintf(err, errsize, "cannot start the DNS dispatcher thread");
		ub_ctx_delete(context);
		context = NULL;
		return -1;
	}
	dispatcher_running = 1;
	log_info("DNS resolver: forwarding to %s%s, trust anchor %s, timeout %llds", servers[0],
	    servers[1] != NULL ? " and others" : "", anchor[0] != '\0' ? anchor : "none",
	    timeout_seconds);
	return 0;
}

int
dns_init(char *err, size_t errsize)
{
	int rc = 0;

	pthread_mutex_lock(&init_lock);
	if (!initialized) {
		rc = dns_create(err, errsize);
		initialized = rc == 0;
	}
	pthread_mutex_unlock(&init_lock);
	return rc;
}

void
dns_stop(void)
{
	if (dispatcher_running) {
		stopping = 1;
		pthread_join(dispatcher, NULL);
		dispatcher_running = 0;
	}
	if (context != NULL)
		ub_ctx_delete(context);
	context = NULL;
	initialized = 0;
}

/* Append wire-format name NAME (within END) to OUT as dotted text, with
 * dots and bytes outside printable ASCII inside labels written as \DDD. */
static char *
name_to_text(const unsigned char *name, const unsigned char *end)
{
	char *out = xmalloc(4 * 255 + 2);
	size_t len = 0;

	while (name < end && *name != 0) {
		size_t label = *name++;

		if (label > 63 || label > (size_t)(end - name) || len > 4 * 255 - 4 * label - 1)
			break;
		if (len > 0)
			out[len++] = '.';
		for (size_t i = 0; i < label; i++) {
			unsigned char c = name[i];

			if (c > 0x20 && c < 0x7f && c != '.' && c != '\\')
				out[len++] = (char)c;
			else
				len += (size_t)sprintf(out + len, "\\%03u", c);
		}
		name += label;
	}
	out[len] = '\0';
	return out;
}

/* Concatenate the character-strings of a TXT RDATA (RFC 7208 section 3.3). */
static char *
txt_to_text(const unsigned char *rdata, size_t rdlength)
{
	char *out = xmalloc(rdlength + 1);
	size_t len = 0;

	for (size_t i = 0; i < rdlength;) {
		size_t n = rdata[i++];

		if (n > rdlength - i)
			n = rdlength - i;
		memcpy(out + len, rdata + i, n);
		len += n;
		i += n;
	}
	out[len] = '\0';
	return out;
}

static void
record_fill(struct dns_record *record, int rrtype, const unsigned char *rdata, size_t rdlength)
{
	record->rdata = xmalloc(rdlength + 1);
	memcpy(record->rdata, rdata, rdlength);
	record->rdlength = rdlength;

	switch (rrtype) {
	case DNS_TYPE_TXT:
		record->text = txt_to_text(rdata, rdlength);
		break;
	case DNS_TYPE_MX:
		if (rdlength >= 3) {
			record->preference = (unsigned)rdata[0] << 8 | rdata[1];
			record->text = name_to_text(rdata + 2, rdata + rdlength);
		} else {
			record->text = xstrdup("");
		}
		break;
	case DNS_TYPE_PTR:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_NS:
		record->text = name_to_text(rdata, rdata + rdlength);
		break;
	default:
		record->text = NULL;
		break;
	}
}

/* Turn a libunbound result into OUT, or -1 for a temporary error. */
static int
answer_fill(const char *name, int rrtype, const struct ub_result *result,
    struct dns_answer *out, char *err, size_t errsize)
{
	size_t count = 0;

	if (result->bogus) {
		snprintf(err, errsize, "DNSSEC validation failed for %s type %d: %s", name, rrtype,
		    result->why_bogus != NULL ? result->why_bogus : "no reason given");
		return -1;
	}
	if (result->rcode != 0 && result->rcode != 3) {
		snprintf(err, errsize, "DNS lookup of %s type %d failed with RCODE %d", name, rrtype,
		    result->rcode);
		return -1;
	}

	out->rcode = result->rcode;
	out->secure = result->secure;
	if (result->canonname != NULL) {
		out->canonical_name = xstrdup(result->canonname);
		size_t len = strlen(out->canonical_name);

		if (len > 1 && out->canonical_name[len - 1] == '.')
			out->canonical_name[len - 1] = '\0';
	}

	if (result->nxdomain) {
		out->status = DNS_NXDOMAIN;
		return 0;
	}
	while (result->havedata && result->data[count] != NULL)
		count++;
	if (count == 0) {
		out->status = DNS_NODATA;
		return 0;
	}

	out->status = DNS_FOUND;
	out->records = xcalloc(count, sizeof *out->records);
	for (size_t i = 0; i < count; i++)
		record_fill(&out->records[i], rrtype, (const unsigned char *)result->data[i],
		    (size_t)result->len[i]);
	out->count = count;
	return 0;
}

/* Wait for P until the deadline. Returns 1 when it is done, 0 on timeout. */
static int
pending_wait(struct pending *p)
{
	struct timespec deadline;
	int done;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_seconds;

	pthread_mutex_lock(&p->lock);
	while (!p->done) {
		if (pthread_cond_timedwait(&p->done_cond, &p->lock, &deadline) == ETIMEDOUT)
			break;
	}
	done = p->done;
	if (!done)
		p->abandoned = 1;
	pthread_mutex_unlock(&p->lock);
	return done;
}

int
dns_lookup(const char *name, int rrtype, struct dns_answer *out, char *err, size_t errsize)
{
	struct pending *p;
	int async_id, rc;

	memset(out, 0, sizeof *out);
	if (context == NULL) {
		snprintf(err, errsize, "no DNS resolver configured (dns_resolvers is empty)");
		return -1;
	}

	p = xcalloc(1, sizeof *p);
	pthread_mutex_init(&p->lock, NULL);
	pending_init_cond(p);
	rc = ub_resolve_async(context, name, rrtype, CLASS_IN, p, lookup_done, &async_id);
	if (rc != 0) {
		snprintf(err, errsize, "DNS lookup of %s type %d failed: %s", name, rrtype,
		    ub_strerror(rc));
		pending_free(p);
		return -1;
	}

	if (!pending_wait(p)) {
		/* After a successful cancel the callback never runs, so free P
		 * here. Otherwise the callback is running or about to run, and
		 * it frees P because P is marked abandoned. */
		if (ub_cancel(context, async_id) == 0)
			pending_free(p);
		snprintf(err, errsize, "DNS lookup of %s type %d timed out after %llds", name, rrtype,
		    timeout_seconds);
		return -1;
	}

	if (p->err != 0) {
		snprintf(err, errsize, "DNS lookup of %s type %d failed: %s", name, rrtype,
		    ub_strerror(p->err));
		rc = -1;
	} else {
		rc = answer_fill(name, rrtype, p->result, out, err, errsize);
	}
	if (p->result != NULL)
		ub_resolve_free(p->result);
	pending_free(p);
	if (rc < 0)
		dns_answer_free(out);
	return rc;
}

void
dns_answer_free(struct dns_answer *answer)
{
	for (size_t i = 0; i < answer->count; i++) {
		free(answer->records[i].rdata);
		free(answer->records[i].text);
	}
	free(answer->records);
	free(answer->canonical_name);
	memset(answer, 0, sizeof *answer);
}
