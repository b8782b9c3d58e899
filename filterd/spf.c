/*
 * The SPF check (RFC 7208) with libspf2. At MAIL FROM it evaluates the
 * HELO identity and the MAIL FROM identity and applies the spf_policy_*
 * settings; at the end of the data it writes Received-SPF: and the spf=
 * part of Authentication-Results from the result smtpd passes back.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spf2/spf.h>

#include "config.h"
#include "dns.h"
#include "log.h"
#include "spf.h"
#include "spf_internal.h"
#include "util.h"

/* Policies per result, read at start-up and on SIGHUP. */
struct spf_settings {
	int reject_fail;
	int reject_softfail;
	int tempfail_temperror;
	int reject_permerror;
	int helo_check;		/* spf_helo_policy is not "off" */
	int helo_enforce;	/* spf_helo_policy is "enforce" */
	char receiver[256];
};

static SPF_server_t *spf_server;
static struct spf_settings settings;

/* The outcome of one evaluation. */
struct spf_outcome {
	const char *result;	/* RFC 7208 result name */
	char detail[256];	/* temperror, permerror: what went wrong */
};

static void libspf2_error(const char *file, int line, const char *message)
    __attribute__((noreturn));

static void
libspf2_error(const char *file, int line, const char *message)
{
	fatalx("libspf2 internal error at %s:%d: %s", file, line, message);
}

static void
libspf2_warning(const char *file, int line, const char *message)
{
	char text[512];

	(void)file;
	(void)line;

	/* The message can quote an SPF record, which is remote text. */
	log_warn("libspf2: %s", log_sanitize(text, sizeof text, message, strlen(message)));
}

static void
libspf2_set_handlers(void)
{
	SPF_error_handler = libspf2_error;
	SPF_warning_handler = libspf2_warning;
	SPF_info_handler = NULL;
	SPF_debug_handler = NULL;
}

static void
spf_read_settings(void)
{
	const char *helo_policy = config_string("spf_helo_policy");

	settings.reject_fail = strcmp(config_string("spf_policy_fail"), "reject") == 0;
	settings.reject_softfail = strcmp(config_string("spf_policy_softfail"), "reject") == 0;
	settings.tempfail_temperror = strcmp(config_string("spf_policy_temperror"), "tempfail") == 0;
	settings.reject_permerror = strcmp(config_string("spf_policy_permerror"), "reject") == 0;
	settings.helo_check = strcmp(helo_policy, "off") != 0;
	settings.helo_enforce = strcmp(helo_policy, "enforce") == 0;
	strlcpy_x(settings.receiver, config_myhostname(), sizeof settings.receiver);
}

static int
spf_server_create(char *err, size_t errsize)
{
	SPF_dns_server_t *dns = spf_dns_new();

	if (dns == NULL) {
		snprintf(err, errsize, "cannot create the libspf2 DNS layer: out of memory");
		return -1;
	}
	spf_server = SPF_server_new_dns(dns, 0);
	if (spf_server == NULL) {
		SPF_dns_free(dns);
		snprintf(err, errsize, "SPF_server_new_dns failed: out of memory");
		return -1;
	}

	/* RFC 7208 section 4.6.4: at most 10 terms that query DNS, and at
	 * most 10 names from one MX or PTR lookup. */
	SPF_server_set_max_dns_mech(spf_server, 10);
	SPF_server_set_max_dns_mx(spf_server, 10);
	SPF_server_set_max_dns_ptr(spf_server, 10);
	return 0;
}

int
spf_init(char *err, size_t errsize)
{
	libspf2_set_handlers();
	spf_read_settings();
	if (dns_init(err, errsize) < 0)
		return -1;
	if (spf_server == NULL && spf_server_create(err, errsize) < 0)
		return -1;

	/* The receiver is the only server setting that a reload can change. */
	SPF_server_set_rec_dom(spf_server, settings.receiver);
	return 0;
}

/* Whether NAME is a domain name SPF can evaluate: two or more labels of
 * letters, digits, '-' and '_', each 1 to 63 bytes, 253 bytes in all. */
static int
domain_valid(const char *name)
{
	size_t len = strlen(name), label = 0, labels = 1;

	if (len == 0 || len > 253 || name[0] == '.' || name[len - 1] == '.')
		return 0;
	for (const char *p = name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			labels++;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return labels >= 2;
}

/* Copy TEXT into OUT with only printable ASCII, for an SMTP reply. */
static void
reply_text(char *out, size_t outsize, const char *text)
{
	size_t len = 0;

	for (; *text != '\0' && len + 1 < outsize; text++) {
		unsigned char c = (unsigned char)*text;

		out[len++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[len] = '\0';
}

static const char *
result_name(SPF_result_t result)
{
	switch (result) {
	case SPF_RESULT_PASS:
		return "pass";
	case SPF_RESULT_FAIL:
		return "fail";
	case SPF_RESULT_SOFTFAIL:
		return "softfail";
	case SPF_RESULT_NEUTRAL:
		return "neutral";
	case SPF_RESULT_NONE:
		return "none";
	case SPF_RESULT_TEMPERROR:
		return "temperror";
	default:
		return "permerror";
	}
}

/* The result for a response that libspf2 left unset, with a syntax error
 * copied into DETAIL. */
static SPF_result_t
unset_result(SPF_response_t *response, SPF_errcode_t code, char *detail, size_t detailsize)
{
	int count = response != NULL ? SPF_response_messages(response) : 0;

	for (int i = 0; i < count; i++) {
		SPF_error_t *message = SPF_response_message(response, i);
		SPF_errcode_t message_code = SPF_error_code(message);

		if (!SPF_error_errorp(message) || message_code == SPF_E_NOT_SPF ||
		    message_code == SPF_E_DNS_ERROR)
			continue;
		reply_text(detail, detailsize, SPF_error_message(message));
		return SPF_RESULT_PERMERROR;
	}
	if (code == SPF_E_NOT_SPF)
		return SPF_RESULT_NONE;
	return SPF_RESULT_TEMPERROR;
}

static int
request_set_client(SPF_request_t *request, const char *address)
{
	struct in6_addr ipv6;
	struct in_addr ipv4;

	if (inet_pton(AF_INET, address, &ipv4) == 1)
		return SPF_request_set_ipv4(request, ipv4);
	if (inet_pton(AF_INET6, address, &ipv6) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED(&ipv6)) {
		memcpy(&ipv4, &ipv6.s6_addr[12], sizeof ipv4);
		return SPF_request_set_ipv4(request, ipv4);
	}
	return SPF_request_set_ipv6(request, ipv6);
}

/*
 * Evaluate check_host() for the client of MSG and SENDER, or for the
 * HELO identity (postmaster@HELO) when SENDER is "". The caller has
 * checked that the identity's domain is valid.
 */
static int
spf_evaluate(const struct filter_message *msg, const char *sender, struct spf_outcome *out,
    char *err, size_t errsize)
{
	SPF_request_t *request;
	SPF_response_t *response = NULL;
	SPF_errcode_t code;
	SPF_result_t result;

	memset(out, 0, sizeof *out);
	request = SPF_request_new(spf_server);
	if (request == NULL) {
		snprintf(err, errsize, "SPF_request_new failed");
		return -1;
	}
	if (request_set_client(request, msg->client_address) != 0) {
		snprintf(err, errsize, "invalid client address %s", msg->client_address);
		SPF_request_free(request);
		return -1;
	}
	SPF_request_set_helo_dom(request, msg->helo);
	if (sender[0] != '\0')
		SPF_request_set_env_from(request, sender);

	spf_dns_reset();
	code = SPF_request_query_mailfrom(request, &response);
	result = response != NULL ? SPF_response_result(response) : SPF_RESULT_INVALID;

	/* libspf2 leaves the result unset when it found no record (none),
	 * the record lookup failed (temperror) or the record did not compile
	 * (permerror): the error messages of the response show which. */
	if (result == SPF_RESULT_INVALID)
		result = unset_result(response, code, out->detail, sizeof out->detail);
	if (spf_dns_error()[0] != '\0' &&
	    (result == SPF_RESULT_NONE || result == SPF_RESULT_TEMPERROR)) {
		result = SPF_RESULT_TEMPERROR;
		reply_text(out->detail, sizeof out->detail, spf_dns_error());
	}
	if (spf_dns_terms() > SPF_DNS_TERM_LIMIT) {
		result = SPF_RESULT_PERMERROR;
		snprintf(out->detail, sizeof out->detail, "more than %d DNS-querying terms",
		    SPF_DNS_TERM_LIMIT);
	}
	if (spf_dns_void_lookups() > SPF_VOID_LOOKUP_LIMIT) {
		result = SPF_RESULT_PERMERROR;
		snprintf(out->detail, sizeof out->detail, "more than %d void DNS lookups",
		    SPF_VOID_LOOKUP_LIMIT);
	}
	out->result = result_name(result);

	if (result == SPF_RESULT_PERMERROR && out->detail[0] == '\0')
		reply_text(out->detail, sizeof out->detail, SPF_strerror(code != SPF_E_SUCCESS ?
		    code : SPF_response_errcode(response)));
	if (result == SPF_RESULT_TEMPERROR && out->detail[0] == '\0')
		snprintf(out->detail, sizeof out->detail, "DNS lookup failed");

	if (response != NULL)
		SPF_response_free(response);
	SPF_request_free(request);
	return 0;
}

/*
 * Apply the policy for OUTCOME of IDENTITY (mailfrom or helo) on DOMAIN.
 * The fail reply states the fact in our words. A domain's exp= text is
 * not used: libspf2 1.2.10 returned it with the macros unexpanded and
 * each space turned into '%' (seen with the Debian 12 package), so the
 * DNS layer does not even fetch it.
 */
static void
spf_apply_policy(struct filter_result *result, const struct spf_outcome *outcome,
    const char *client, const char *identity, const char *domain)
{
	char reply[FILTER_REPLY_MAX], reason[64], address[64];

	snprintf(reason, sizeof reason, "spf%s=%s", strcmp(identity, "helo") == 0 ? "_helo" : "",
	    outcome->result);

	if ((strcmp(outcome->result, "fail") == 0 && settings.reject_fail) ||
	    (strcmp(outcome->result, "softfail") == 0 && settings.reject_softfail)) {
		reply_text(address, sizeof address, client);
		snprintf(reply, sizeof reply,
		    "550 5.7.23 SPF check failed: %s is not allowed to send mail for %s", address,
		    domain);
		filter_result_action(result, FILTER_REJECT, reply, reason);
	} else if (strcmp(outcome->result, "temperror") == 0 && settings.tempfail_temperror) {
		snprintf(reply, sizeof reply,
		    "451 4.7.24 SPF check of %s failed temporarily: %s", domain, outcome->detail);
		filter_result_action(result, FILTER_TEMPFAIL, reply, reason);
	} else if (strcmp(outcome->result, "permerror") == 0 && settings.reject_permerror) {
		snprintf(reply, sizeof reply, "550 5.7.24 SPF record of %s is invalid: %s", domain,
		    outcome->detail);
		filter_result_action(result, FILTER_REJECT, reply, reason);
	}
}

static void
spf_record_result(struct filter_result *result, const char *name, const char *domain)
{
	strlcpy_x(result->spf_result, name, sizeof result->spf_result);
	strlcpy_x(result->spf_domain, domain, sizeof result->spf_domain);
}

/* Check the HELO identity when the HELO name is a domain. Returns 1
 * when its result decides the transaction (spf_helo_policy=enforce), 0
 * when the MAIL FROM check should follow, -1 with ERR set on an error. */
static int
spf_check_helo(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	struct spf_outcome outcome;
	enum filter_action before = result->action;

	if (!domain_valid(msg->helo)) {
		filter_result_log(result, "spf_helo=none");
		return 0;
	}
	if (spf_evaluate(msg, "", &outcome, err, errsize) < 0)
		return -1;

	filter_result_log(result, "spf_helo=%s", outcome.result);
	if (outcome.detail[0] != '\0')
		log_info("SPF: HELO %s from %s: %s: %s", msg->helo, msg->client_address,
		    outcome.result, outcome.detail);
	if (!settings.helo_enforce)
		return 0;

	spf_apply_policy(result, &outcome, msg->client_address, "helo", msg->helo);
	if (result->action != before) {
		spf_record_result(result, outcome.result, msg->helo);
		return 1;
	}
	return 0;
}

int
spf_check_mail(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	struct spf_outcome outcome;
	const char *at, *domain, *identity;
	int decided;

	if (msg->outbound)
		return 0;
	if (spf_server == NULL) {
		snprintf(err, errsize, "the SPF check was not initialized");
		return -1;
	}

	/* RFC 7208 section 2.4: for the null sender, MAIL FROM is checked
	 * as postmaster@HELO, which is the HELO check. */
	if (msg->sender[0] == '\0') {
		identity = "helo";
		domain = msg->helo;
	} else {
		identity = "mailfrom";
		at = strrchr(msg->sender, '@');
		domain = at != NULL ? at + 1 : "";
		if (settings.helo_check) {
			decided = spf_check_helo(msg, result, err, errsize);
			if (decided != 0)
				return decided < 0 ? -1 : 0;
		}
	}

	/* RFC 7208 section 4.3: a malformed domain gives none. */
	if (!domain_valid(domain)) {
		spf_record_result(result, "none", "");
		filter_result_log(result, "spf=none");
		return 0;
	}
	if (spf_evaluate(msg, msg->sender, &outcome, err, errsize) < 0)
		return -1;

	spf_record_result(result, outcome.result, domain);
	filter_result_log(result, "spf=%s", outcome.result);
	if (outcome.detail[0] != '\0')
		log_info("SPF: %s %s from %s: %s: %s", identity, domain, msg->client_address,
		    outcome.result, outcome.detail);
	spf_apply_policy(result, &outcome, msg->client_address, identity, domain);
	return 0;
}

int
spf_check(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	if (msg->queue_id[0] == '\0')
		return spf_check_mail(msg, result, err, errsize);
	return spf_check_message(msg, result, err, errsize);
}
