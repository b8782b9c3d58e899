/*
 * A per-process cache of userdb lookups (lib/userdb.c) for a blocking
 * client that looks up the same users again and again, such as a
 * deliverd LMTP session. Found and not-found results are kept for a
 * fixed time, failures not at all. Time is measured on the
 * monotonic clock, so a clock step neither keeps nor drops entries.
 */
#ifndef ESTAFETA_USERDB_CACHE_H
#define ESTAFETA_USERDB_CACHE_H

#include <stddef.h>

#include "userdb.h"

struct userdb_cache;

/* Create a cache that keeps each result for SECONDS (0: none). */
struct userdb_cache *userdb_cache_new(long long seconds);
void userdb_cache_free(struct userdb_cache *cache);

/* Look up USER through CACHE, with the arguments and results of userdb_lookup. */
int userdb_cache_lookup(struct userdb_cache *cache, struct userdb_client *client,
    const char *user, const char *service, int timeout_ms, struct userdb_entry *out,
    char *err, size_t errsize);

#endif
