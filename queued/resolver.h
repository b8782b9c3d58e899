/*
 * The DNS resolver of queued: libunbound, asynchronous, driven by the
 * libevent loop. Queries go only to the servers in dns_resolvers (never
 * to /etc/resolv.conf or the root servers), and answers are validated
 * with DNSSEC against dns_trust_anchor_file.
 */
#ifndef ESTAFETA_QUEUED_RESOLVER_H
#define ESTAFETA_QUEUED_RESOLVER_H

#include <stddef.h>

#include <unbound.h>

/*
 * Called once per query with ERR (0, or a libunbound error for
 * resolver_strerror) and RESULT (NULL when ERR is set). RESULT->secure
 * is set when the answer was DNSSEC-validated, RESULT->bogus when
 * validation failed. The callback owns RESULT and frees it with
 * ub_resolve_free.
 */
typedef void resolver_cb(void *arg, int err, struct ub_result *result);

/* Start the resolver from dns_resolvers and dns_trust_anchor_file.
 * Returns 0, or -1 with ERR set (and no resolver). */
int resolver_init(char *err, size_t errsize);

/* 1 when resolver_init succeeded. */
int resolver_enabled(void);

/* Store in OUT the name DNS queries use for NAME: NAME itself when it is
 * ASCII, and otherwise its IDNA A-label form (RFC 5890, with UTS #46
 * non-transitional mapping), so "bücher.test" becomes
 * "xn--bcher-kva.test". Returns 0, or -1 with ERR set when NAME is not
 * a valid internationalized domain name or the result does not fit. */
int resolver_ascii_name(const char *name, char *out, size_t outsize, char *err, size_t errsize);

/* Look up NAME of type RRTYPE (1 A, 28 AAAA, 15 MX, 16 TXT, 52 TLSA) in
 * class IN, with a UTF-8 NAME converted by resolver_ascii_name. Returns 0, or -1 (no resolver, or libunbound refused the
 * query) without calling CB. */
int resolver_resolve(const char *name, int rrtype, resolver_cb *cb, void *arg);

const char *resolver_strerror(int err);

void resolver_stop(void);

#endif
