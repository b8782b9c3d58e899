/*
 * The DMARC check (RFC 7489), written from the RFC rather than with
 * libopendmarc, so that the record comes through dns.h and the policy
 * steps are visible: find the From: domains, fetch each one's record (or
 * the organizational domain's), decide alignment of SPF and DKIM, and
 * apply p=, sp= and pct=.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dkim.h"
#include "dmarc.h"
#include "header.h"
#include "log.h"
#include "util.h"

#define RECORD_MAX 2048

enum dmarc_policy { POLICY_NONE, POLICY_QUARANTINE, POLICY_REJECT };

struct dmarc_record {
	enum dmarc_policy p;
	enum dmarc_policy sp;
	int pct;		/* 0 to 100 */
	int strict_dkim;	/* adkim=s */
	int strict_spf;		/* aspf=s */
};

static const char *const policy_names[] = { "none", "quarantine", "reject" };

static int
policy_parse(const char *value, enum dmarc_policy *policy)
{
	for (int i = POLICY_NONE; i <= POLICY_REJECT; i++) {
		if (ascii_casecmp(value, policy_names[i]) == 0) {
			*policy = (enum dmarc_policy)i;
			return 0;
		}
	}
	return -1;
}

static char *
trim(char *text)
{
	char *end;

	while (isspace((unsigned char)*text))
		text++;
	end = text + strlen(text);
	while (end > text && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return text;
}

/* Parse TEXT, a record starting with v=DMARC1 (RFC 7489 section 6.3).
 * Unknown tags are ignored. Returns 0, or -1 when p= is missing or a
 * known tag has an invalid value. */
static int
record_parse(const char *text, struct dmarc_record *record)
{
	char copy[RECORD_MAX], *save = NULL;
	int have_p = 0, have_sp = 0, first = 1;

	memset(record, 0, sizeof *record);
	record->pct = 100;
	strlcpy_x(copy, text, sizeof copy);

	for (char *tag = strtok_r(copy, ";", &save); tag != NULL; tag = strtok_r(NULL, ";", &save)) {
		char *equals = strchr(tag, '='), *name, *value;

		if (equals == NULL) {
			if (trim(tag)[0] == '\0')
				continue;
			return -1;
		}
		*equals = '\0';
		name = trim(tag);
		value = trim(equals + 1);

		if (first) {
			/* v=DMARC1 must be the first tag. */
			if (strcmp(name, "v") != 0 || strcmp(value, "DMARC1") != 0)
				return -1;
			first = 0;
		} else if (strcmp(name, "p") == 0) {
			if (policy_parse(value, &record->p) < 0)
				return -1;
			have_p = 1;
		} else if (strcmp(name, "sp") == 0) {
			if (policy_parse(value, &record->sp) < 0)
				return -1;
			have_sp = 1;
		} else if (strcmp(name, "pct") == 0) {
			char *end;
			long pct = strtol(value, &end, 10);

			if (value[0] == '\0' || *end != '\0' || pct < 0 || pct > 100)
				return -1;
			record->pct = (int)pct;
		} else if (strcmp(name, "adkim") == 0 || strcmp(name, "aspf") == 0) {
			int *strict = name[1] == 'd' ? &record->strict_dkim : &record->strict_spf;

			if (strcmp(value, "s") != 0 && strcmp(value, "r") != 0)
				return -1;
			*strict = value[0] == 's';
		}
	}
	if (!have_p)
		return -1;
	if (!have_sp)
		record->sp = record->p;
	return 0;
}

/* Whether DOMAIN is aligned with FROM: equal, or with STRICT off, both
 * under the same organizational domain (RFC 7489 section 3.1). */
static int
aligned(const char *domain, const char *from, int strict)
{
	char org_domain[256], org_from[256];

	if (domain == NULL || domain[0] == '\0')
		return 0;
	if (ascii_casecmp(domain, from) == 0)
		return 1;
	if (strict)
		return 0;
	dmarc_organizational_domain(domain, org_domain, sizeof org_domain);
	dmarc_organizational_domain(from, org_from, sizeof org_from);
	return strcmp(org_domain, org_from) == 0;
}

static int
dkim_aligned(const struct filter_message *msg, const char *from, int strict)
{
	const struct dkim_results *results = dkim_thread_results();

	/* Results left by an earlier message on this thread do not count. */
	if (strcmp(results->queue_id, msg->queue_id) != 0)
		return 0;
	for (size_t i = 0; i < results->count; i++) {
		if (strcmp(results->signatures[i].result, "pass") == 0 &&
		    aligned(results->signatures[i].domain, from, strict))
			return 1;
	}
	return 0;
}

static int
spf_aligned(const struct filter_message *msg, const char *from, int strict)
{
	return msg->spf_result != NULL && strcmp(msg->spf_result, "pass") == 0 &&
	    aligned(msg->spf_domain, from, strict);
}

/* Fetch the record for FROM, or for its organizational domain (RFC 7489
 * section 6.6.3). Sets *AT_ORGANIZATIONAL when the record came from
 * there. */
static enum txt_status
record_fetch(const char *from, char *record, size_t size, int *at_organizational, char *err,
    size_t errsize)
{
	char name[300], organizational[256];
	enum txt_status status;

	*at_organizational = 0;
	snprintf(name, sizeof name, "_dmarc.%s", from);
	status = txt_lookup(name, "v=DMARC1", record, size, err, errsize);
	if (status != TXT_NONE)
		return status;

	dmarc_organizational_domain(from, organizational, sizeof organizational);
	if (strcmp(organizational, from) == 0)
		return TXT_NONE;
	*at_organizational = 1;
	snprintf(name, sizeof name, "_dmarc.%s", organizational);
	return txt_lookup(name, "v=DMARC1", record, size, err, errsize);
}

/* Apply POLICY (already reduced by pct=) to RESULT. */
static enum dmarc_policy
disposition_apply(enum dmarc_policy policy, const char *from, struct filter_result *result)
{
	char reply[FILTER_REPLY_MAX];

	if (config_bool("dmarc_policy_override"))
		return POLICY_NONE;

	switch (policy) {
	case POLICY_REJECT:
		snprintf(reply, sizeof reply,
		    "550 5.7.1 Message rejected: the DMARC policy of %s rejects unauthenticated mail",
		    from);
		filter_result_action(result, FILTER_REJECT, reply, "dmarc=fail");
		break;
	case POLICY_QUARANTINE:
		filter_result_action(result, FILTER_QUARANTINE, NULL, "dmarc=fail");
		break;
	case POLICY_NONE:
		break;
	}
	return policy;
}

/* Evaluate the DMARC policy of the author domain FROM for MSG and apply
 * it to RESULT. Returns 0, or -1 with ERR set on a DNS failure. */
static int
domain_evaluate(const struct filter_message *msg, const char *from,
    struct filter_result *result, char *err, size_t errsize)
{
	char text[RECORD_MAX];
	struct dmarc_record record;
	enum dmarc_policy policy, disposition;
	enum txt_status status;
	int at_organizational;

	status = record_fetch(from, text, sizeof text, &at_organizational, err, errsize);
	if (status == TXT_TEMPFAIL) {
		filter_result_authres(result, "dmarc=temperror header.from=%s", from);
		filter_result_log(result, "dmarc=temperror");
		return -1;
	}
	/* Several DMARC records end policy discovery (RFC 7489 section 6.6.3). */
	if (status == TXT_NONE || status == TXT_SEVERAL) {
		filter_result_authres(result, "dmarc=none header.from=%s", from);
		filter_result_log(result, "dmarc=none");
		return 0;
	}
	if (record_parse(text, &record) < 0) {
		filter_result_authres(result, "dmarc=permerror (invalid record) header.from=%s", from);
		filter_result_log(result, "dmarc=permerror");
		return 0;
	}

	policy = at_organizational ? record.sp : record.p;
	if (dkim_aligned(msg, from, record.strict_dkim) || spf_aligned(msg, from, record.strict_spf)) {
		filter_result_authres(result, "dmarc=pass (p=%s dis=none) header.from=%s",
		    policy_names[record.p], from);
		filter_result_log(result, "dmarc=pass");
		return 0;
	}

	/* pct= samples the failing messages the policy applies to; the rest
	 * get the next weaker policy (RFC 7489 section 6.6.4). */
	if (record.pct < 100 && (int)arc4random_uniform(100) >= record.pct && policy > POLICY_NONE)
		policy--;
	disposition = disposition_apply(policy, from, result);
	filter_result_authres(result, "dmarc=fail (p=%s dis=%s) header.from=%s",
	    policy_names[record.p], policy_names[disposition], from);
	filter_result_log(result, "dmarc=fail/%s", policy_names[disposition]);
	return 0;
}

/*
 * Evaluate every From: domain of the message on its own. Each one that
 * fails applies its policy, and the strongest action wins, so a second
 * From: field or address cannot hide a domain that publishes p=reject.
 */
int
dmarc_check(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	struct dmarc_from from;
	int rc = 0;

	if (msg->outbound)
		return 0;

	if (dmarc_from_read(msg, &from, err, errsize) < 0)
		return -1;
	if (from.fields > 1 || from.addresses > 1)
		filter_result_log(result, "from_fields=%zu, from_addresses=%zu", from.fields,
		    from.addresses);
	if (from.too_many) {
		char reply[FILTER_REPLY_MAX];

		snprintf(reply, sizeof reply, "550 5.7.1 Message rejected: more than %d From: domains",
		    DMARC_FROM_MAX);
		filter_result_action(result, FILTER_REJECT, reply, "dmarc=permerror");
		filter_result_authres(result, "dmarc=permerror (too many From: domains)");
		filter_result_log(result, "dmarc=permerror");
		return 0;
	}
	if (from.count == 0) {
		filter_result_authres(result, "dmarc=permerror (no usable From: address)");
		filter_result_log(result, "dmarc=permerror");
		return 0;
	}

	for (size_t i = 0; i < from.count; i++) {
		char domain_err[256] = "";

		if (domain_evaluate(msg, from.domains[i], result, domain_err, sizeof domain_err) < 0) {
			snprintf(err, errsize, "%s", domain_err);
			rc = -1;
		}
	}
	return rc;
}
