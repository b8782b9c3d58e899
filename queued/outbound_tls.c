/*
 * The TLS policy of outbound delivery: which level applies to one MX
 * host, the client SSL for it, and the check after the handshake.
 *
 * The level comes from, in order:
 *   1. smtp_tls_policy_maps, when a line matches the nexthop;
 *   2. DANE (RFC 7672): with level dane, DNSSEC-validated TLSA records of
 *      _PORT._tcp.HOST require TLS with a matching certificate. A bogus
 *      or failed TLSA lookup defers, an insecure one falls through;
 *   3. MTA-STS (RFC 8461) of the recipient domain, when smtp_tls_mta_sts
 *      is on: enforce requires a CA-verified certificate for an MX host
 *      that matches the policy's mx patterns, testing only logs;
 *   4. smtp_tls_security_level (dane without TLSA records means may).
 * REQUIRETLS (RFC 8689) raises any level below verify to verify and
 * turns every TLS failure into a 5.7.30 bounce. "TLS-Required: No"
 * skips DANE and MTA-STS.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "mta_sts_cache.h"
#include "mta_sts_fetch.h"
#include "outbound_tls.h"
#include "resolver.h"
#include "tls.h"
#include "tls_client.h"
#include "tls_policy_map.h"
#include "util.h"

#define RR_TLSA		52

/* Maximum number of names a verify level may match. */
#define MATCH_MAX	16

/* The TLS side's part of a policy (outbound_tls_policy.data). */
struct host_policy {
	struct tls_peer peer;
	char host[256];
	char nexthop[256];
	const char *match[MATCH_MAX + 1];
	char match_buffer[1024];
	struct tls_tlsa *tlsa;		/* every TLSA record of the host, sized to the response */
	unsigned char **tlsa_data;
	int requiretls;
	int sts_testing;	/* MTA-STS testing: verify and log, never fail */
	char sts_id[MTA_STS_ID_SIZE];
};

/* One policy lookup in progress. */
struct lookup {
	struct outbound_tls_policy *policy;
	struct host_policy *data;
	enum tls_level level;		/* the level before DANE and MTA-STS */
	int from_map;			/* LEVEL came from smtp_tls_policy_maps */
	int mx_secure, host_secure, tls_required_no;
	char log_id[256];		/* the queue id, or the next hop, that log lines start with */
	outbound_tls_policy_cb *cb;
	void *arg;
};

static struct tls_client *client;
static struct tls_policy_map policy_map;
static int mta_sts_enabled;

int
outbound_tls_init(char *err, size_t errsize)
{
	const char *map_path = config_string("smtp_tls_policy_maps");

	client = tls_client_new(err, errsize);
	if (client == NULL)
		return -1;
	if (map_path[0] != '\0' && tls_policy_map_load(map_path, &policy_map, err, errsize) < 0)
		goto failed;

	mta_sts_enabled = config_bool("smtp_tls_mta_sts");
	if (mta_sts_enabled && (mta_sts_fetch_init(err, errsize) < 0 ||
	    mta_sts_cache_init(err, errsize) < 0))
		goto failed;

	log_info("outbound TLS: smtp_tls_security_level=%s policy_map_entries=%zu mta_sts=%s CAfile=%s",
	    config_string("smtp_tls_security_level"), policy_map.count, mta_sts_enabled ? "yes" : "no",
	    config_string("smtp_tls_CAfile")[0] != '\0' ? config_string("smtp_tls_CAfile") : "system");
	return 0;

failed:
	tls_client_free(client);
	client = NULL;
	tls_policy_map_free(&policy_map);
	return -1;
}

void
outbound_tls_shutdown(void)
{
	if (mta_sts_enabled) {
		mta_sts_cache_shutdown();
		mta_sts_fetch_shutdown();
	}
	tls_policy_map_free(&policy_map);
	tls_client_free(client);
	client = NULL;
}

static void
host_policy_free(struct host_policy *data)
{
	if (data == NULL)
		return;
	for (size_t i = 0; i < data->peer.tlsa_count; i++)
		free(data->tlsa_data[i]);
	free(data->tlsa_data);
	free(data->tlsa);
	free(data);
}

void
outbound_tls_policy_free(struct outbound_tls_policy *policy)
{
	if (policy == NULL)
		return;
	host_policy_free(policy->data);
	free(policy);
}

/* Set LOOKUP's policy to no delivery to this host, with DSN and a reason. */
static void
policy_refuse(struct lookup *lookup, const char *dsn, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void
policy_refuse(struct lookup *lookup, const char *dsn, const char *format, ...)
{
	va_list ap;

	snprintf(lookup->policy->dsn, sizeof lookup->policy->dsn, "%s",
	    lookup->data->requiretls ? "5.7.30" : dsn);
	va_start(ap, format);
	vsnprintf(lookup->policy->reason, sizeof lookup->policy->reason, format, ap);
	va_end(ap);
}

/* Hand the finished policy to the caller. */
static void
lookup_finish(struct lookup *lookup)
{
	struct outbound_tls_policy *policy = lookup->policy;
	struct host_policy *data = lookup->data;

	/* REQUIRETLS: a verified certificate or no delivery. */
	if (data->requiretls && policy->dsn[0] == '\0') {
		if (policy->level == OUTBOUND_TLS_NONE) {
			policy_refuse(lookup, "5.7.30", "REQUIRETLS: the TLS level of %s is none (%s)",
			    data->nexthop, policy->source);
		} else if (policy->level == OUTBOUND_TLS_MAY || policy->level == OUTBOUND_TLS_ENCRYPT) {
			policy->level = OUTBOUND_TLS_VERIFY;
			data->peer.level = TLS_LEVEL_VERIFY;
			data->peer.match = NULL;
			data->sts_testing = 0;
			snprintf(policy->source, sizeof policy->source, "REQUIRETLS");
		}
	}

	policy->data = data;
	lookup->cb(policy, lookup->arg);
	free(lookup);
}

static void
set_level(struct lookup *lookup, enum outbound_tls_level level, enum tls_level peer_level,
    const char *source)
{
	lookup->policy->level = level;
	lookup->data->peer.level = peer_level;
	snprintf(lookup->policy->source, sizeof lookup->policy->source, "%s", source);
}

/* Set the level of LOOKUP from the policy map or smtp_tls_security_level,
 * without DANE or MTA-STS. */
static void
use_base_level(struct lookup *lookup)
{
	const char *source = lookup->from_map ? "smtp_tls_policy_maps" : "smtp_tls_security_level";

	switch (lookup->level) {
	case TLS_LEVEL_NONE:
		set_level(lookup, OUTBOUND_TLS_NONE, TLS_LEVEL_NONE, source);
		break;
	case TLS_LEVEL_ENCRYPT:
		set_level(lookup, OUTBOUND_TLS_ENCRYPT, TLS_LEVEL_ENCRYPT, source);
		break;
	case TLS_LEVEL_VERIFY:
		set_level(lookup, OUTBOUND_TLS_VERIFY, TLS_LEVEL_VERIFY, source);
		break;
	default:
		/* may, and dane without usable TLSA records */
		set_level(lookup, OUTBOUND_TLS_MAY, TLS_LEVEL_MAY, source);
		break;
	}
}

static void
sts_cb(void *arg, const struct mta_sts_policy *sts, const char *id)
{
	struct lookup *lookup = arg;
	struct host_policy *data = lookup->data;
	char source[OUTBOUND_TLS_TEXT_MAX];
	int enforce;

	use_base_level(lookup);
	if (sts == NULL) {
		lookup_finish(lookup);
		return;
	}
	snprintf(data->sts_id, sizeof data->sts_id, "%s", id);
	snprintf(source, sizeof source, "MTA-STS %s id=%s", mta_sts_mode_name(sts->mode), id);

	/* A REQUIRETLS message must not reach an MX host the policy leaves
	 * out, so for it a testing policy is enforced. */
	enforce = sts->mode == MTA_STS_MODE_ENFORCE || data->requiretls;

	if (!mta_sts_mx_match(sts, data->host)) {
		if (enforce) {
			snprintf(lookup->policy->source, sizeof lookup->policy->source, "%s", source);
			policy_refuse(lookup, "4.7.5", "MX host %s does not match the MTA-STS policy of %s (id=%s)",
			    data->host, data->nexthop, id);
		} else {
			log_warn("MTA-STS testing policy of %s (id=%s): MX host %s does not match its mx patterns; delivering anyway",
			    data->nexthop, id, data->host);
		}
		lookup_finish(lookup);
		return;
	}

	if (enforce) {
		set_level(lookup, OUTBOUND_TLS_MTA_STS, TLS_LEVEL_VERIFY, source);
		data->peer.match = NULL;
	} else if (lookup->policy->level == OUTBOUND_TLS_MAY) {
		/* Testing mode: verify the certificate so the result is logged, but deliver
		 * even when verification fails (outbound_tls_check). */
		data->sts_testing = 1;
	}
	lookup_finish(lookup);
}

/* Return whether the recipient domain's MTA-STS policy is looked up for
 * LOOKUP. */
static int
mta_sts_applies(const struct lookup *lookup)
{
	if (!mta_sts_enabled || lookup->from_map || lookup->tls_required_no)
		return 0;
	if (lookup->level != TLS_LEVEL_MAY && lookup->level != TLS_LEVEL_DANE)
		return 0;

	/* A relayhost or transport host is not the recipient domain's MX. */
	if (config_string("relayhost")[0] != '\0' || lookup->data->nexthop[0] == '[')
		return 0;
	return 1;
}

static void
dane_done_without_tlsa(struct lookup *lookup)
{
	if (mta_sts_applies(lookup)) {
		mta_sts_lookup(lookup->data->nexthop, sts_cb, lookup);
		return;
	}
	use_base_level(lookup);
	lookup_finish(lookup);
}

/* Copy the TLSA records of RESULT into DATA. Returns how many are usable. */
static size_t
tlsa_copy(struct host_policy *data, const struct ub_result *result)
{
	size_t usable = 0, nrecords = 0;

	while (result->data[nrecords] != NULL)
		nrecords++;
	data->tlsa = xcalloc(nrecords > 0 ? nrecords : 1, sizeof *data->tlsa);
	data->tlsa_data = xcalloc(nrecords > 0 ? nrecords : 1, sizeof *data->tlsa_data);

	for (size_t i = 0; i < nrecords; i++) {
		const unsigned char *rdata = (const unsigned char *)result->data[i];
		struct tls_tlsa *record = &data->tlsa[data->peer.tlsa_count];
		size_t n = data->peer.tlsa_count;

		if (result->len[i] < 4)
			continue;
		data->tlsa_data[n] = xmalloc((size_t)result->len[i] - 3);
		memcpy(data->tlsa_data[n], rdata + 3, (size_t)result->len[i] - 3);
		record->usage = rdata[0];
		record->selector = rdata[1];
		record->mtype = rdata[2];
		record->data = data->tlsa_data[n];
		record->length = (size_t)result->len[i] - 3;
		data->peer.tlsa_count++;
		if (tls_tlsa_usable(record))
			usable++;
	}
	data->peer.tlsa = data->tlsa;
	return usable;
}

static void
tlsa_cb(void *arg, int err, struct ub_result *result)
{
	struct lookup *lookup = arg;
	struct host_policy *data = lookup->data;
	size_t usable;

	snprintf(lookup->policy->source, sizeof lookup->policy->source, "DANE TLSA");
	if (err != 0 || result == NULL) {
		policy_refuse(lookup, "4.7.5", "TLSA lookup for %s failed: %s", data->host,
		    err != 0 ? resolver_strerror(err) : "no result");
		goto done;
	}
	if (result->bogus) {
		policy_refuse(lookup, "4.7.5", "TLSA records of %s failed DNSSEC validation: %s",
		    data->host, result->why_bogus != NULL ? result->why_bogus : "bogus");
		goto done;
	}
	if (!result->secure) {
		if (result->rcode != 0 && !result->nxdomain) {
			/* The host's address was secure, so its zone is signed. */
			policy_refuse(lookup, "4.7.5", "TLSA lookup for %s failed: rcode %d", data->host,
			    result->rcode);
			goto done;
		}
		ub_resolve_free(result);
		dane_done_without_tlsa(lookup);
		return;
	}
	if (!result->havedata) {
		ub_resolve_free(result);
		dane_done_without_tlsa(lookup);
		return;
	}

	usable = tlsa_copy(data, result);
	if (usable > 0) {
		set_level(lookup, OUTBOUND_TLS_DANE, TLS_LEVEL_DANE, "DANE TLSA");
	} else {
		/* RFC 7672 section 2.2: unusable records still require TLS. */
		set_level(lookup, OUTBOUND_TLS_ENCRYPT, TLS_LEVEL_ENCRYPT, "DANE TLSA (no usable record)");
		log_warn("%s: DANE: no usable TLSA record for %s among %zu, so TLS is required without authentication",
		    lookup->log_id, data->host, data->peer.tlsa_count);
	}

done:
	if (result != NULL)
		ub_resolve_free(result);
	lookup_finish(lookup);
}

/* Return whether DANE can apply to LOOKUP's host. Its address and, when it
 * came from an MX record, the MX response must be DNSSEC-validated (RFC 7672
 * section 2.2). */
static int
dane_applies(const struct lookup *lookup)
{
	const struct host_policy *data = lookup->data;
	int direct = data->nexthop[0] == '[' || ascii_casecmp(data->nexthop, data->host) == 0;

	if (lookup->level != TLS_LEVEL_DANE || lookup->tls_required_no || !resolver_enabled())
		return 0;
	return lookup->host_secure && (lookup->mx_secure || direct);
}

/* Start LOOKUP from smtp_tls_policy_maps or smtp_tls_security_level. */
static void
lookup_base_level(struct lookup *lookup)
{
	const struct tls_policy_entry *entry = tls_policy_map_find(&policy_map, lookup->data->nexthop);
	struct host_policy *data = lookup->data;

	if (entry != NULL) {
		lookup->level = entry->level;
		lookup->from_map = 1;
		if (entry->match != NULL) {
			tls_policy_match_names(entry, data->nexthop, data->host, data->match,
			    MATCH_MAX + 1, data->match_buffer, sizeof data->match_buffer);
			data->peer.match = data->match;
		}
		return;
	}
	lookup->level = (enum tls_level)tls_level_parse(config_string("smtp_tls_security_level"));
}

void
outbound_tls_policy_lookup(const struct outbound_tls_request *request,
    outbound_tls_policy_cb *cb, void *arg)
{
	struct lookup *lookup = xcalloc(1, sizeof *lookup);
	struct host_policy *data = xcalloc(1, sizeof *data);
	char query[300];

	lookup->policy = xcalloc(1, sizeof *lookup->policy);
	lookup->data = data;
	lookup->cb = cb;
	lookup->arg = arg;
	lookup->mx_secure = request->mx_secure;
	lookup->host_secure = request->host_secure;
	snprintf(data->host, sizeof data->host, "%s", request->host);
	snprintf(data->nexthop, sizeof data->nexthop, "%s", request->nexthop);
	data->peer.host = data->host;
	data->peer.port = request->port > 0 ? request->port : (int)config_int("smtp_port");
	data->requiretls = request->requiretls;
	snprintf(lookup->log_id, sizeof lookup->log_id, "%s",
	    request->queue_id != NULL ? request->queue_id : request->nexthop);

	/* RFC 8689 section 5: REQUIRETLS wins over "TLS-Required: No". */
	lookup->tls_required_no = request->tls_required_no && !request->requiretls;

	lookup_base_level(lookup);
	if (!dane_applies(lookup)) {
		dane_done_without_tlsa(lookup);
		return;
	}

	/* The TLSA name carries the port that the client connects to, so a
	 * relayhost or transport on port 587 is looked up at _587._tcp. */
	snprintf(query, sizeof query, "_%d._tcp.%s", data->peer.port, data->host);
	if (resolver_resolve(query, RR_TLSA, tlsa_cb, lookup) < 0) {
		policy_refuse(lookup, "4.7.5", "TLSA lookup for %s could not be started", data->host);
		lookup_finish(lookup);
	}
}

SSL *
outbound_tls_ssl_new(const struct outbound_tls_policy *policy,
    const struct outbound_tls_request *request, char *err, size_t errsize)
{
	const struct host_policy *data = policy->data;
	struct tls_peer peer;

	if (client == NULL || data == NULL) {
		snprintf(err, errsize, "no TLS client context");
		return NULL;
	}
	peer = data->peer;

	/* In MTA-STS testing mode, set the names so that outbound_tls_check can
	 * log the verification result. */
	if (data->sts_testing)
		peer.level = TLS_LEVEL_VERIFY;
	return tls_client_ssl_new(client, &peer, err, errsize);
}

int
outbound_tls_check(SSL *ssl, const struct outbound_tls_policy *policy,
    const struct outbound_tls_request *request, char *dsn, char *reason, size_t reasonsize)
{
	const struct host_policy *data = policy->data;
	struct tls_peer peer = data->peer;
	char description[TLS_DESCRIPTION_MAX];
	enum tls_trust trust;
	int rc;

	if (data->sts_testing)
		peer.level = TLS_LEVEL_VERIFY;
	rc = tls_client_verify(ssl, &peer, &trust, reason, reasonsize);
	tls_describe(ssl, description, sizeof description);
	log_info("%s: %s TLS connection established to %s: %s",
	    request->queue_id != NULL ? request->queue_id : data->nexthop, tls_trust_name(trust),
	    data->host, description);

	if (rc == 0)
		return 0;
	if (data->sts_testing) {
		log_warn("%s: MTA-STS testing policy of %s (id=%s): %s; delivering anyway",
		    request->queue_id != NULL ? request->queue_id : data->nexthop, data->nexthop,
		    data->sts_id, reason);
		return 0;
	}
	snprintf(dsn, 16, "%s", data->requiretls ? "5.7.30" : "4.7.5");
	if (data->requiretls) {
		size_t used = strlen(reason);

		snprintf(reason + used, reasonsize - used, " (REQUIRETLS)");
	}
	return -1;
}

const char *
outbound_tls_level_name(enum outbound_tls_level level)
{
	switch (level) {
	case OUTBOUND_TLS_NONE: return "none";
	case OUTBOUND_TLS_MAY: return "may";
	case OUTBOUND_TLS_ENCRYPT: return "encrypt";
	case OUTBOUND_TLS_DANE: return "dane";
	case OUTBOUND_TLS_VERIFY: return "verify";
	case OUTBOUND_TLS_MTA_STS: return "mta-sts";
	}
	return "unknown";
}
