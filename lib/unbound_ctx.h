/*
 * The libunbound context that queued's SMTP client and filterd's checks
 * both use: queries go only to the servers of dns_resolvers (never to
 * /etc/resolv.conf or the root servers), and answers are validated with
 * DNSSEC against dns_trust_anchor_file when it is set.
 */
#ifndef ESTAFETA_UNBOUND_CTX_H
#define ESTAFETA_UNBOUND_CTX_H

#include <stddef.h>

#include <unbound.h>

/* Create an asynchronous (threaded) context from dns_resolvers and
 * dns_trust_anchor_file. Returns NULL with ERR set on error. The caller
 * checks first that dns_resolvers is not empty. */
struct ub_ctx *unbound_ctx_create(char *err, size_t errsize);

#endif
