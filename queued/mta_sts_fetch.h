/*
 * The HTTPS fetch of MTA-STS policies (RFC 8461 section 3.3) with
 * libcurl, each in its own thread so queued's event loop never waits.
 *
 * The fetch connects only to the addresses the caller passes (found by
 * queued's resolver): curl gets them through CURLOPT_RESOLVE and never
 * resolves a name itself. Redirects, proxies and every scheme but https
 * are off. The certificate must verify against smtp_tls_CAfile (or the
 * system store) for mta-sts.DOMAIN. The reply must be 200 with media
 * type text/plain and at most MTA_STS_POLICY_MAX bytes, within
 * smtp_tls_mta_sts_timeout.
 */
#ifndef ESTAFETA_QUEUED_MTA_STS_FETCH_H
#define ESTAFETA_QUEUED_MTA_STS_FETCH_H

#include <stddef.h>

/*
 * Called on the event loop once per fetch. On success ERROR is NULL and
 * BODY holds LENGTH bytes (NUL-terminated, freed after the call);
 * otherwise BODY is NULL and ERROR describes the failure.
 */
typedef void mta_sts_fetch_cb(void *arg, const char *body, size_t length, const char *error);

/* Start curl and the completion pipe on queued_base. Returns 0, or -1 with
 * ERR set. */
int mta_sts_fetch_init(char *err, size_t errsize);
void mta_sts_fetch_shutdown(void);

/*
 * Fetch the policy of DOMAIN from one of ADDRESSES (NULL-terminated IPv4
 * or IPv6 literals, at least one). Returns 0 (CB follows later), or -1
 * when no thread could be started (CB is not called).
 */
int mta_sts_fetch_start(const char *domain, const char *const *addresses,
    mta_sts_fetch_cb *cb, void *arg);

#endif
