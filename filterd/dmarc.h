/*
 * DMARC (RFC 7489) for inbound mail at the message stage: the policy
 * that the From: domain publishes, applied to the SPF result of the MAIL
 * stage and the DKIM results of dkim_verify_check.
 */
#ifndef ESTAFETA_FILTERD_DMARC_H
#define ESTAFETA_FILTERD_DMARC_H

#include <stddef.h>

#include "filter.h"

/* Read dmarc_public_suffix_list, at start-up and again on SIGHUP.
 * Returns 0, or -1 with ERR set. */
int dmarc_init(char *err, size_t errsize);
void dmarc_stop(void);

/* Copy the organizational domain of DOMAIN (RFC 7489 section 3.2: the
 * public suffix plus one label) into OUT, lower case. A domain that is
 * itself a public suffix is its own organizational domain. */
void dmarc_organizational_domain(const char *domain, char *out, size_t size);

filter_check_fn dmarc_check;

/* dmarc_from.c: the author domains of a message. */

/* The maximum number of distinct From: domains evaluated. A message with
 * more is rejected, because each one costs DNS lookups. */
#define DMARC_FROM_MAX 8

struct dmarc_from {
	char domains[DMARC_FROM_MAX][256];	/* distinct, lower case, A-labels */
	size_t count;
	size_t fields;		/* From: fields in the header */
	size_t addresses;	/* addresses in all of them */
	size_t invalid;		/* addresses without a usable domain */
	int too_many;		/* more than DMARC_FROM_MAX domains */
};

/* Collect the domains of every address of every From: field of MSG's
 * header, read on to the empty line. Returns 0, or -1 with ERR set when
 * the spool file cannot be read. */
int dmarc_from_read(const struct filter_message *msg, struct dmarc_from *from, char *err,
    size_t errsize);

#endif
