/* Declarations shared by spf.c and its libspf2 DNS layer (spf_dns.c). */
#ifndef ESTAFETA_FILTERD_SPF_INTERNAL_H
#define ESTAFETA_FILTERD_SPF_INTERNAL_H

#include <spf2/spf.h>

/* RFC 7208 section 4.6.4: more void lookups (NXDOMAIN or no records)
 * than this in one evaluation make the result permerror. */
#define SPF_VOID_LOOKUP_LIMIT 2

/* RFC 7208 section 4.6.4: more terms that query DNS (include, a, mx,
 * ptr, exists, redirect) than this in one evaluation make it permerror. */
#define SPF_DNS_TERM_LIMIT 10

/* A DNS layer that sends libspf2's queries through dns_lookup. */
SPF_dns_server_t *spf_dns_new(void);

/* Start counting void lookups and DNS errors for a check on this thread. */
void spf_dns_reset(void);

/* The void lookups of this thread's check so far. */
int spf_dns_void_lookups(void);

/* The DNS-querying terms of this thread's check so far, includes too. */
int spf_dns_terms(void);

/* The first DNS error of this thread's check, or "". */
const char *spf_dns_error(void);

#endif
