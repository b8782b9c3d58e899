/*
 * smtp_tls_policy_maps: per-destination TLS levels in Postfix's source
 * format, one "KEY LEVEL [match=NAME:NAME...]" line each, read from a
 * text file. '#' starts a comment line.
 *
 * KEY is a recipient domain (that domain only), .domain (every subdomain
 * of it), or [host] / [host]:port (a relayhost or transport host as it
 * is written there). LEVEL is one of none, may, encrypt, dane, verify and
 * secure. Level secure is verify with match=nexthop:dot-nexthop as its default.
 * In match=, "hostname" is the MX host name, "nexthop" the destination
 * domain, "dot-nexthop" its subdomains, and any other word a literal
 * name (".domain" for its subdomains).
 */
#ifndef ESTAFETA_TLS_POLICY_MAP_H
#define ESTAFETA_TLS_POLICY_MAP_H

#include <stddef.h>

#include "tls_client.h"

struct tls_policy_entry {
	char *key;		/* lower case */
	enum tls_level level;
	char **match;		/* NULL-terminated; NULL for the level's default */
};

struct tls_policy_map {
	struct tls_policy_entry *entries;
	size_t count;
};

/*
 * Read PATH into MAP. Returns 0, or -1 with ERR set to "PATH:LINE: what
 * is wrong" (MAP is then empty).
 */
int tls_policy_map_load(const char *path, struct tls_policy_map *map, char *err,
    size_t errsize);

/* Parse TEXT (the file's contents) with NAME in error messages. */
int tls_policy_map_parse(const char *text, const char *name, struct tls_policy_map *map,
    char *err, size_t errsize);

void tls_policy_map_free(struct tls_policy_map *map);

/*
 * Find the entry for NEXTHOP. The exact key comes first (with and without
 * a :port for a [host] nexthop), then ".parent" keys from the nearest
 * parent outward. Returns NULL when no line applies.
 */
const struct tls_policy_entry *tls_policy_map_find(const struct tls_policy_map *map,
    const char *nexthop);

/*
 * Expand ENTRY's match list for one connection into OUT (NULL-terminated,
 * at most OUTSIZE pointers with the NULL), with NEXTHOP and HOST in place
 * of the special words. The strings live in BUFFER. Returns the count.
 */
size_t tls_policy_match_names(const struct tls_policy_entry *entry, const char *nexthop,
    const char *host, const char **out, size_t outsize, char *buffer, size_t buffersize);

#endif
