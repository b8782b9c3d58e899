/*
 * The DMARC check (RFC 7489), written from the RFC rather than with
 * libopendmarc, so that the record comes through dns.h and the policy
 * steps are visible: find the single From: domain, fetch its record (or
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

/* The single From: address domain of the message, in DOMAIN. Returns 0,
 * or -1 when the header has no From: field, several, or a From: field
 * without exactly one address (RFC 7489 section 6.6.1). */
static int
from_domain(const struct spool_header *header, char *domain, size_t size)
{
	struct header_list list = { 0 };
	const struct header_field *from = NULL;
	char *addresses[2] = { 0 };
	size_t count = 0;
	int rc = -1;

	if (header_parse(header->text, header->len, &list) < 0)
		return -1;
	for (size_t i = 0; i < list.count; i++) {
		const struct header_field *field = &list.fields[i];

		if (field->namelen != 4 || ascii_ncasecmp(field->name, "From", 4) != 0)
			continue;
		if (from != NULL) {
			from = NULL;
			count = 2;
			break;
		}
		from = field;
	}
	if (from != NULL) {
		char *value = header_unfold(from);

		count = header_addresses(value, addresses, 2);
		free(value);
	}
	if (count == 1 && addresses[0] != NULL) {
		const char *at = strrchr(addresses[0], '@');

		if (at != NULL && at[1] != '\0' && strlen(at + 1) < size) {
			strlcpy_x(domain, at + 1, size);
			ascii_lower(domain);
			rc = 0;
		}
	}
	for (size_t i = 0; i < 2; i++)
		free(addresses[i]);
	header_list_free(&list);
	return rc;
}

/* Read the From: domain of MSG's message into FROM. Returns 1, 0 when
 * there is no single usable From: address, or -1 with ERR set. */
static int
message_from_domain(const struct filter_message *msg, char *from, size_t size, char *err,
    size_t errsize)
{
	struct spool_header header;
	int rc;

	if (spool_header_read(msg->fd, msg->size, &header, err, errsize) < 0)
		return -1;
	rc = from_domain(&header, from, size) == 0 ? 1 : 0;
	spool_header_free(&header);

	/* The domain goes into Authentication-Results and SMTP replies. */
	for (const char *p = from; rc == 1 && *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			rc = 0;
	}
	return rc;
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

int
dmarc_check(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	char from[256], text[RECORD_MAX];
	struct dmarc_record record;
	enum dmarc_policy policy, disposition;
	enum txt_status status;
	int at_organizational, found;

	if (msg->outbound)
		return 0;

	found = message_from_domain(msg, from, sizeof from, err, errsize);
	if (found < 0)
		return -1;
	if (found == 0) {
		filter_result_authres(result, "dmarc=permerror (no single From: address)");
		filter_result_log(result, "dmarc=permerror");
		return 0;
	}

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
