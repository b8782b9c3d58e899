/*
 * filterd's DNS lookups: synchronous calls over one libunbound context
 * that forwards every query to dns_resolvers (never /etc/resolv.conf).
 * The checks call dns_lookup from their worker threads, and each call
 * waits at most filterd_dns_timeout.
 */
#ifndef ESTAFETA_FILTERD_DNS_H
#define ESTAFETA_FILTERD_DNS_H

#include <stddef.h>

/* RR types (RFC 1035, RFC 3596) that the checks query. */
#define DNS_TYPE_A	1
#define DNS_TYPE_NS	2
#define DNS_TYPE_CNAME	5
#define DNS_TYPE_PTR	12
#define DNS_TYPE_MX	15
#define DNS_TYPE_TXT	16
#define DNS_TYPE_AAAA	28

/* Outcome of a lookup that returned 0. */
enum dns_status {
	DNS_FOUND,	/* records of the type asked for */
	DNS_NXDOMAIN,	/* the name does not exist (RCODE 3) */
	DNS_NODATA,	/* the name exists, no records of that type */
};

/* One record of the answer section. */
struct dns_record {
	unsigned char *rdata;	/* the RDATA as received */
	size_t rdlength;
	/*
	 * RDATA as text, NUL-terminated:
	 * TXT: the character-strings concatenated with nothing between
	 *      them (RFC 7208 section 3.3, RFC 6376 section 3.6.2.2);
	 * MX: the exchange name, with the preference in `preference`;
	 * PTR, CNAME, NS: the target name;
	 * names are lower-case-preserving, without the final dot.
	 * NULL for A and AAAA: use rdata (4 or 16 bytes).
	 */
	char *text;
	unsigned preference;	/* MX only */
};

struct dns_answer {
	enum dns_status status;
	int rcode;		/* DNS RCODE of the answer */
	int secure;		/* 1 when DNSSEC validated the answer */
	char *canonical_name;	/* the name after CNAMEs, without the final dot */
	struct dns_record *records;
	size_t count;
};

/*
 * Create the resolver from dns_resolvers, dns_trust_anchor_file and
 * filterd_dns_timeout. With dns_resolvers empty it logs that, returns 0,
 * and every later lookup fails as a temporary error. Returns -1 with ERR
 * set on an invalid setting. Each check may call it from its init: only
 * the first successful call creates the resolver, so a changed setting
 * takes a restart.
 */
int dns_init(char *err, size_t errsize);

/* Free the resolver. No lookup may be running. */
void dns_stop(void);

/*
 * Look up NAME (no final dot needed) of type RRTYPE in class IN. Returns
 * 0 with OUT filled (status DNS_FOUND, DNS_NXDOMAIN or DNS_NODATA; free
 * it with dns_answer_free), or -1 with ERR set for a temporary error:
 * no resolver configured, a timeout, SERVFAIL or another RCODE, or an
 * answer that failed DNSSEC validation. Thread-safe.
 */
int dns_lookup(const char *name, int rrtype, struct dns_answer *out, char *err,
    size_t errsize);

void dns_answer_free(struct dns_answer *answer);

#endif
