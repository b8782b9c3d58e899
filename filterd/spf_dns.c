/*
 * libspf2's DNS layer over filterd's resolver (dns.h), so that libspf2
 * never calls res_query or reads /etc/resolv.conf. It also counts void
 * lookups, which libspf2 1.2.10 does not limit, and DNS-querying terms,
 * which libspf2 limits per record but not across include: and
 * redirect= (RFC 7208 section 4.6.4 limits the whole evaluation).
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spf2/spf.h>

#include "dns.h"
#include "log.h"
#include "spf_internal.h"
#include "util.h"

/* Per-thread state of the check that runs on this thread. */
static __thread int void_lookups;
static __thread int dns_terms;
static __thread int record_fetched;	/* the TXT lookup of the identity's record is done */
static __thread int address_lookups;	/* A/AAAA lookups still due for mx or ptr names */
static __thread char dns_error[256];

void
spf_dns_reset(void)
{
	void_lookups = 0;
	dns_terms = 0;
	record_fetched = 0;
	address_lookups = 0;
	dns_error[0] = '\0';
}

int
spf_dns_void_lookups(void)
{
	return void_lookups;
}

int
spf_dns_terms(void)
{
	return dns_terms;
}

/*
 * Count the term that made libspf2 query RR_TYPE. libspf2 evaluates one
 * term at a time: the first TXT query fetches the identity's record and
 * each later one is an include: or redirect=; MX and PTR queries are mx
 * and ptr terms, whose names then get one A or AAAA query each, which
 * are not terms; any other A or AAAA query is an a or exists term.
 * NOTE: the PTR query of a %{p} macro counts as a term too, one more
 * than RFC 7208 counts.
 */
static void
count_term(ns_type rr_type)
{
	switch (rr_type) {
	case ns_t_txt:
		if (!record_fetched)
			record_fetched = 1;
		else
			dns_terms++;
		break;
	case ns_t_a:
	case ns_t_aaaa:
		if (address_lookups > 0)
			address_lookups--;
		else
			dns_terms++;
		break;
	default:
		dns_terms++;
		break;
	}
}

const char *
spf_dns_error(void)
{
	return dns_error;
}

/*
 * Return NAME, as a macro expansion left it, without the leading labels
 * that make it longer than 253 bytes, as RFC 7208 section 7.3 requires.
 * pyspf 2.0.14 removes only the first label, which is the same whenever
 * that is enough.
 */
static const char *
truncate_query_name(const char *name)
{
	size_t len = strlen(name);
	const char *dot;

	if (len > 0 && name[len - 1] == '.')
		len--;
	while (len > 253 && (dot = memchr(name, '.', len)) != NULL) {
		len -= (size_t)(dot + 1 - name);
		name = dot + 1;
	}
	return name;
}

/*
 * Return 1 when NAME is a domain name that DNS can carry: labels of 1 to
 * 63 bytes and at most 253 bytes in all, not counting a final dot. RFC
 * 7208 section 4.8 makes a malformed name match nothing, as pyspf 2.0.14
 * does, but filterd's resolver fails the lookup of such a name, which
 * libspf2 would turn into temperror.
 */
static int
valid_query_name(const char *name)
{
	size_t len = strlen(name);
	size_t label = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (name[i] != '.') {
			label++;
			continue;
		}
		if (label == 0 || label > 63)
			return 0;
		label = 0;
	}
	return label > 0 && label <= 63;
}

/* Copy the records of ANSWER into SPFRR in the layout libspf2 expects. */
static int
rr_fill(SPF_dns_rr_t *spfrr, int rrtype, const struct dns_answer *answer)
{
	int count = 0;

	for (size_t i = 0; i < answer->count; i++) {
		const struct dns_record *record = &answer->records[i];
		const void *data;
		size_t len;

		if (rrtype == DNS_TYPE_A || rrtype == DNS_TYPE_AAAA) {
			len = rrtype == DNS_TYPE_A ? 4 : 16;
			if (record->rdlength != len)
				continue;
			data = record->rdata;
		} else {
			len = strlen(record->text) + 1;
			data = record->text;
		}
		if (SPF_dns_rr_buf_realloc(spfrr, count, len) != SPF_E_SUCCESS)
			return -1;
		memcpy(spfrr->rr[count], data, len);
		count++;
	}
	spfrr->num_rr = count;
	if (count == 0)
		spfrr->herrno = NO_DATA;
	return 0;
}

static SPF_dns_rr_t *
spf_dns_lookup(SPF_dns_server_t *server, const char *domain, ns_type rr_type, int should_cache)
{
	struct dns_answer answer;
	SPF_dns_rr_t *spfrr;
	const char *query_name;
	char err[256];

	(void)should_cache;

	/* RFC 7208 section 14.1 retired the SPF RR type, so a query for it
	 * would only cost time; libspf2 falls back to TXT on NO_DATA. */
	if (rr_type == ns_t_spf)
		return SPF_dns_rr_new_init(server, domain, rr_type, 0, NO_DATA);

	/* Past a limit the check ends as permerror anyway, so further names
	 * are not asked for. */
	if (void_lookups > SPF_VOID_LOOKUP_LIMIT || dns_terms > SPF_DNS_TERM_LIMIT)
		return SPF_dns_rr_new_init(server, domain, rr_type, 0, HOST_NOT_FOUND);
	count_term(rr_type);
	if (dns_terms > SPF_DNS_TERM_LIMIT)
		return SPF_dns_rr_new_init(server, domain, rr_type, 0, HOST_NOT_FOUND);

	/* A malformed name matches nothing without a query and, as in pyspf,
	 * without counting as a void lookup. */
	query_name = truncate_query_name(domain);
	if (!valid_query_name(query_name))
		return SPF_dns_rr_new_init(server, domain, rr_type, 0, HOST_NOT_FOUND);

	/* The check logs the first error with its result, once per check. */
	if (dns_lookup(query_name, (int)rr_type, &answer, err, sizeof err) < 0) {
		log_debug("SPF: %s", err);
		if (dns_error[0] == '\0')
			strlcpy_x(dns_error, err, sizeof dns_error);
		return SPF_dns_rr_new_init(server, domain, rr_type, 0, TRY_AGAIN);
	}

	switch (answer.status) {
	case DNS_NXDOMAIN:
		void_lookups++;
		spfrr = SPF_dns_rr_new_init(server, domain, rr_type, 0, HOST_NOT_FOUND);
		break;
	case DNS_NODATA:
		void_lookups++;
		spfrr = SPF_dns_rr_new_init(server, domain, rr_type, 0, NO_DATA);
		break;
	default:
		spfrr = SPF_dns_rr_new_init(server, domain, rr_type, 0, NETDB_SUCCESS);
		if (spfrr != NULL && rr_fill(spfrr, (int)rr_type, &answer) < 0) {
			SPF_dns_rr_free(spfrr);
			spfrr = SPF_dns_rr_new_init(server, domain, rr_type, 0, TRY_AGAIN);
		}
		if (rr_type == ns_t_mx || rr_type == ns_t_ptr)
			address_lookups = answer.count < 10 ? (int)answer.count : 10;
		break;
	}
	dns_answer_free(&answer);
	return spfrr;
}

/*
 * Skip the TXT lookup of an exp= domain: filterd's replies do not use
 * the explanation, and that lookup is no term, so it must not reach the
 * term count. libspf2 passes the exp= domain in *BUF and keeps whatever
 * text this leaves there.
 */
static SPF_errcode_t
spf_dns_get_exp(SPF_server_t *spf_server, const char *domain, char **buf, size_t *buflen)
{
	(void)spf_server;
	(void)domain;

	if (*buf != NULL && *buflen > 0)
		(*buf)[0] = '\0';
	return SPF_E_SUCCESS;
}

static void
spf_dns_destroy(SPF_dns_server_t *server)
{
	free(server);
}

SPF_dns_server_t *
spf_dns_new(void)
{
	SPF_dns_server_t *server = calloc(1, sizeof *server);

	if (server == NULL)
		return NULL;
	server->destroy = spf_dns_destroy;
	server->lookup = spf_dns_lookup;
	server->get_exp = spf_dns_get_exp;
	server->name = "estafeta";
	return server;
}
