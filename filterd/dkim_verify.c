/*
 * DKIM verification (RFC 6376) of inbound mail at the message stage.
 * Every signature is checked, and each gets an Authentication-Results
 * part (RFC 8601 section 2.7.1). An unsigned message gets dkim=none.
 * Key records come from dns.h through dkim_key_record_lookup, never
 * from libopendkim's own resolver.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "dkim.h"
#include "header.h"
#include "log.h"
#include "util.h"

#define KEY_RECORD_MAX 4096

/* The key lookups of the message this thread verifies. */
struct lookup_state {
	long long deadline_usec;	/* after this, lookups fail as temporary */
	size_t count;			/* lookups made, at most DKIM_MAX_RESULTS */
	size_t ntempfail;
	struct {
		char domain[256];
		char selector[64];
	} tempfail[DKIM_MAX_RESULTS];
};

static __thread struct dkim_results thread_results;
static __thread struct lookup_state lookups;

const struct dkim_results *
dkim_thread_results(void)
{
	return &thread_results;
}

static void
tempfail_note(const char *domain, const char *selector)
{
	if (lookups.ntempfail == DKIM_MAX_RESULTS)
		return;
	strlcpy_x(lookups.tempfail[lookups.ntempfail].domain, domain,
	    sizeof lookups.tempfail[0].domain);
	strlcpy_x(lookups.tempfail[lookups.ntempfail].selector, selector,
	    sizeof lookups.tempfail[0].selector);
	lookups.ntempfail++;
}

static int
tempfail_noted(const char *domain, const char *selector)
{
	for (size_t i = 0; i < lookups.ntempfail; i++) {
		if (ascii_casecmp(lookups.tempfail[i].domain, domain) == 0 &&
		    strcmp(lookups.tempfail[i].selector, selector) == 0)
			return 1;
	}
	return 0;
}

DKIM_CBSTAT
dkim_key_record_lookup(DKIM *dkim, DKIM_SIGINFO *sig, unsigned char *buf, size_t buflen)
{
	const char *domain = (const char *)dkim_sig_getdomain(sig);
	const char *selector = (const char *)dkim_sig_getselector(sig);
	char name[512], clean[1024], err[256];
	enum txt_status status;

	if (domain == NULL || selector == NULL)
		return DKIM_CBSTAT_ERROR;
	if ((size_t)snprintf(name, sizeof name, "%s._domainkey.%s", selector, domain) >= sizeof name)
		return DKIM_CBSTAT_NOTFOUND;

	/* RFC 6376 section 6.1 lets a verifier limit the signatures it
	 * checks. Past the limit no lookup is made, and results_record
	 * reports only the first DKIM_MAX_RESULTS signatures. */
	if (lookups.count == DKIM_MAX_RESULTS)
		return DKIM_CBSTAT_REJECT;
	lookups.count++;

	if (now_usec() > lookups.deadline_usec) {
		log_warn("DKIM key lookup of %s skipped: dkim_key_lookup_timeout reached",
		    log_sanitize(clean, sizeof clean, name, strlen(name)));
		tempfail_note(domain, selector);
		return DKIM_CBSTAT_TRYAGAIN;
	}

	/* RFC 6376 section 3.6.2.2: the strings of the record are joined,
	 * which dns.h does, and a record need not start with v=DKIM1. */
	status = txt_lookup(name, "", (char *)buf, buflen < KEY_RECORD_MAX ? buflen : KEY_RECORD_MAX,
	    err, sizeof err);
	switch (status) {
	case TXT_FOUND:
	case TXT_SEVERAL:
		return DKIM_CBSTAT_CONTINUE;
	case TXT_NONE:
		return DKIM_CBSTAT_NOTFOUND;
	case TXT_TEMPFAIL:
		break;
	}
	/* ERR names the record too, so it is sanitized as a whole. */
	log_warn("DKIM key lookup failed: %s", log_sanitize(clean, sizeof clean, err, strlen(err)));
	tempfail_note(domain, selector);
	return DKIM_CBSTAT_TRYAGAIN;
}

/*
 * Whether the l= tag of SIG leaves part of the body unsigned. RFC 6376
 * section 8.2: anyone may append text after the signed length, a new
 * MIME part included, so such a signature does not vouch for the
 * message that arrived.
 */
static int
body_partly_signed(DKIM *dkim, DKIM_SIGINFO *sig)
{
	ssize_t body_length = 0, signed_length = 0, limit = -1;

	if (dkim_sig_getcanonlen(dkim, sig, &body_length, &signed_length, &limit) != DKIM_STAT_OK)
		return 0;
	return limit >= 0 && signed_length < body_length;
}

/* The RFC 8601 result of one signature after dkim_eom, with a comment
 * that explains it in *COMMENT ("" for none). */
static const char *
signature_result(DKIM *dkim, DKIM_SIGINFO *sig, const char *domain, const char *selector,
    const char **comment)
{
	int error = dkim_sig_geterror(sig);

	*comment = "";
	if (DKIM_SIG_CHECK(sig) && (error == DKIM_SIGERROR_OK || error == DKIM_SIGERROR_UNKNOWN)) {
		if (body_partly_signed(dkim, sig)) {
			*comment = " (unsigned content after l=)";
			return "policy";
		}
		return "pass";
	}
	if (tempfail_noted(domain, selector) || error == DKIM_SIGERROR_KEYFAIL)
		return "temperror";

	switch (error) {
	case DKIM_SIGERROR_BADSIG:
	case DKIM_SIGERROR_EXPIRED:
	case DKIM_SIGERROR_FUTURE:
	case DKIM_SIGERROR_TOOLARGE_L:
		return "fail";
	case DKIM_SIGERROR_KEYTOOSMALL:
	case DKIM_SIGERROR_SUBDOMAIN:
		return "policy";
	case DKIM_SIGERROR_OK:
	case DKIM_SIGERROR_UNKNOWN:
		/* Verified, but the signature or the body hash did not match. */
		if ((dkim_sig_getflags(sig) & DKIM_SIGFLAG_PROCESSED) != 0)
			return "fail";
		return "neutral";
	default:
		/* Syntax errors in the signature or the key record, no key,
		 * a revoked key: RFC 8601 calls these permanent errors. */
		return "permerror";
	}
}

struct dkim_feed {
	DKIM *dkim;
	DKIM_STAT status;
};

static int
body_feed(void *context, const unsigned char *data, size_t len)
{
	struct dkim_feed *feed = context;

	feed->status = dkim_body(feed->dkim, (unsigned char *)data, len);
	return feed->status == DKIM_STAT_OK ? 0 : 1;
}

/* Pass every header field of HEADER to DKIM, folded lines as CRLF. The
 * fields after a line that is not a field are passed too, because mail
 * readers show them: a second From: there must count for h=. */
static DKIM_STAT
headers_feed(DKIM *dkim, const struct spool_header *header)
{
	struct header_list list = { 0 };
	DKIM_STAT status = DKIM_STAT_OK;

	spool_header_fields(header, &list);

	for (size_t i = 0; i < list.count && status == DKIM_STAT_OK; i++) {
		char *field = dkim_field_crlf(list.fields[i].start, list.fields[i].len);

		/* A malformed field (such as a DKIM-Signature: that does not
		 * parse) is a result for that field, not the end of the check. */
		status = dkim_header(dkim, (unsigned char *)field, strlen(field));
		if (status == DKIM_STAT_SYNTAX)
			status = DKIM_STAT_OK;
		free(field);
	}
	header_list_free(&list);
	return status;
}

/* Whether TEXT may stand as a property value in Authentication-Results
 * without quoting: a domain name or a selector. */
static int
token_valid(const char *text)
{
	if (text[0] == '\0')
		return 0;
	for (const char *p = text; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			return 0;
	}
	return 1;
}

/* Format " header.b=B" into OUT. Base64 may contain "/" and "=", which
 * RFC 8601 values (RFC 2045 tokens) may not, so such a B is quoted. */
static void
b_property(const char *b, char *out, size_t size)
{
	int quote = 0;

	for (const char *p = b; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '+' && *p != '/' && *p != '=')
			return;
		if (*p == '/' || *p == '=')
			quote = 1;
	}
	snprintf(out, size, quote ? " header.b=\"%s\"" : " header.b=%s", b);
}

/* Record the result of each signature in RESULT and in thread_results. */
static void
results_record(DKIM *dkim, struct filter_result *result)
{
	DKIM_SIGINFO **sigs = NULL;
	int nsigs = 0;

	if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK || nsigs == 0) {
		filter_result_authres(result, "dkim=none");
		filter_result_log(result, "dkim=none");
		return;
	}

	if (nsigs > DKIM_MAX_RESULTS) {
		filter_result_authres(result, "dkim=policy (%d signatures, %d checked)", nsigs,
		    DKIM_MAX_RESULTS);
		filter_result_log(result, "dkim_signatures=%d", nsigs);
		nsigs = DKIM_MAX_RESULTS;
	}

	for (int i = 0; i < nsigs; i++) {
		const char *domain = (const char *)dkim_sig_getdomain(sigs[i]);
		const char *selector = (const char *)dkim_sig_getselector(sigs[i]);
		char b[64] = "", authres_b[80] = "", clean[512];
		size_t blen = sizeof b;
		const char *verdict, *comment;

		domain = domain != NULL ? domain : "";
		selector = selector != NULL ? selector : "";
		verdict = signature_result(dkim, sigs[i], domain, selector, &comment);
		/* RFC 6008: the shortest prefix of b= that distinguishes this
		 * signature from the others, which libopendkim makes at least 8
		 * characters long. */
		if (dkim_get_sigsubstring(dkim, sigs[i], b, &blen) == DKIM_STAT_OK && blen > 0)
			b_property(b, authres_b, sizeof authres_b);

		if (token_valid(domain) && token_valid(selector))
			filter_result_authres(result, "dkim=%s%s header.d=%s header.s=%s%s", verdict,
			    comment, domain, selector, authres_b);
		else
			filter_result_authres(result, "dkim=%s (invalid signature)", verdict);
		filter_result_log(result, "dkim=%s/%s", verdict,
		    log_sanitize(clean, sizeof clean, domain, strlen(domain)));

		if (thread_results.count < DKIM_MAX_RESULTS) {
			struct dkim_signature_result *out =
			    &thread_results.signatures[thread_results.count++];

			strlcpy_x(out->result, verdict, sizeof out->result);
			strlcpy_x(out->domain, domain, sizeof out->domain);
			strlcpy_x(out->selector, selector, sizeof out->selector);
			strlcpy_x(out->b_prefix, b, sizeof out->b_prefix);
		}
	}
}

/* Turn the final STATUS of the verification into Authentication-Results
 * parts. Returns -1 with ERR set when libopendkim itself failed. */
static int
verdict_record(DKIM *dkim, DKIM_STAT status, int signed_message, struct filter_result *result,
    char *err, size_t errsize)
{
	switch (status) {
	case DKIM_STAT_NOSIG:
		filter_result_authres(result, "dkim=none");
		filter_result_log(result, "dkim=none");
		return 0;
	case DKIM_STAT_NORESOURCE:
	case DKIM_STAT_INTERNAL:
	case DKIM_STAT_INVALID:
		snprintf(err, errsize, "DKIM verification failed: %s", dkim_getresultstr(status));
		return -1;
	case DKIM_STAT_SYNTAX:
		if (signed_message) {
			/* libopendkim found the header section itself unusable. */
			filter_result_authres(result, "dkim=permerror (invalid header section)");
			filter_result_log(result, "dkim=permerror");
			return 0;
		}
		filter_result_authres(result, "dkim=none");
		filter_result_log(result, "dkim=none");
		return 0;
	default:
		results_record(dkim, result);
		return 0;
	}
}

/* Whether HEADER has a DKIM-Signature field. */
static int
has_signature(const struct spool_header *header)
{
	struct header_list list = { 0 };
	int found;

	spool_header_fields(header, &list);
	found = header_find(&list, "DKIM-Signature") != NULL;
	header_list_free(&list);
	return found;
}

int
dkim_verify_check(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	struct spool_header header;
	struct dkim_feed feed = { 0 };
	DKIM_STAT status;
	int rc = 0;

	memset(&thread_results, 0, sizeof thread_results);
	memset(&lookups, 0, sizeof lookups);
	if (msg->outbound)
		return 0;
	strlcpy_x(thread_results.queue_id, msg->queue_id, sizeof thread_results.queue_id);

	if (spool_header_read(msg->fd, msg->size, &header, err, errsize) < 0)
		return -1;
	lookups.deadline_usec = now_usec() + config_time("dkim_key_lookup_timeout") * 1000000LL;

	feed.dkim = dkim_verify(dkim_library(), (const unsigned char *)msg->queue_id, NULL, &status);
	if (feed.dkim == NULL) {
		snprintf(err, errsize, "cannot start DKIM verification: %s",
		    dkim_getresultstr(status));
		spool_header_free(&header);
		return -1;
	}

	/* NOSIG from dkim_eoh means unsigned: the body is not needed. */
	status = headers_feed(feed.dkim, &header);
	if (status == DKIM_STAT_OK)
		status = dkim_eoh(feed.dkim);
	if (status == DKIM_STAT_OK) {
		feed.status = DKIM_STAT_OK;
		if (spool_body_feed(msg->fd, header.body_offset, msg->size, body_feed, &feed) < 0) {
			snprintf(err, errsize, "cannot read the spool file body");
			rc = -1;
		}
		status = feed.status;
		if (rc == 0 && status == DKIM_STAT_OK)
			status = dkim_eom(feed.dkim, NULL);
	}

	if (rc == 0)
		rc = verdict_record(feed.dkim, status, has_signature(&header), result, err,
		    errsize);

	dkim_free(feed.dkim);
	spool_header_free(&header);
	return rc;
}
