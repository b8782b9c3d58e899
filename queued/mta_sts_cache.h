/*
 * MTA-STS policies of recipient domains (RFC 8461 section 5). A lookup
 * queries queued's resolver for the TXT record of _mta-sts.DOMAIN and
 * fetches the policy when the record's id is new. Policies are cached in
 * memory and in queue_directory/mta-sts/, so a restart keeps them until
 * their max_age runs out.
 *
 * A domain's TXT record is checked again at most every
 * MTA_STS_RECHECK_SECONDS. A policy is fetched again when the record's
 * id changes or the policy is past its max_age. When a fetch fails, an
 * unexpired cached policy stays in force, as section 5.1 requires.
 */
#ifndef ESTAFETA_QUEUED_MTA_STS_CACHE_H
#define ESTAFETA_QUEUED_MTA_STS_CACHE_H

#include "mta_sts.h"

#define MTA_STS_RECHECK_SECONDS	300

/*
 * Called once per lookup, on the event loop, possibly before
 * mta_sts_lookup returns. POLICY is NULL when DOMAIN has no policy in
 * force: no record, mode none, or no successful fetch yet. POLICY and
 * ID are valid only during the call.
 */
typedef void mta_sts_lookup_cb(void *arg, const struct mta_sts_policy *policy, const char *id);

/* Create the cache directory and load the cached policies. Returns 0, or -1
 * with ERR set. */
int mta_sts_cache_init(char *err, size_t errsize);
void mta_sts_cache_shutdown(void);

void mta_sts_lookup(const char *domain, mta_sts_lookup_cb *cb, void *arg);

#endif
