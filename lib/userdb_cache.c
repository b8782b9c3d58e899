/*
 * Cached userdb lookups (see userdb_cache.h). The table has a fixed
 * number of slots, one per hash of service and name, and a new result
 * replaces the one in its slot. A slot keeps copies of the entry's
 * strings rather than a struct userdb_entry, which contains two buffers
 * of PATH_MAX bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "userdb_cache.h"
#include "util.h"

#define USERDB_CACHE_SLOTS 64

/* Longest "SERVICE\tNAME" key. userdb_lookup accepts names of up to 512
 * bytes and services of up to 64, so a longer key is never cached. */
#define USERDB_CACHE_KEY_MAX 600

struct cached_result {
	char *key;		/* "SERVICE\tNAME" */
	int found;		/* 1 found, 0 not found */
	long long expires;	/* monotonic milliseconds */
	char *user, *home, *mail;	/* of the entry, when found */
	uid_t uid;
	gid_t gid;
};

struct userdb_cache {
	long long seconds;
	struct cached_result *slots[USERDB_CACHE_SLOTS];
};

static void
result_free(struct cached_result *result)
{
	if (result == NULL)
		return;
	free(result->key);
	free(result->user);
	free(result->home);
	free(result->mail);
	free(result);
}

struct userdb_cache *
userdb_cache_new(long long seconds)
{
	struct userdb_cache *cache = xcalloc(1, sizeof *cache);

	cache->seconds = seconds;
	return cache;
}

void
userdb_cache_free(struct userdb_cache *cache)
{
	if (cache == NULL)
		return;
	for (size_t i = 0; i < USERDB_CACHE_SLOTS; i++)
		result_free(cache->slots[i]);
	free(cache);
}

/* Return the slot index of KEY. */
static size_t
slot_of(const char *key)
{
	return hash_fnv1a(key) % USERDB_CACHE_SLOTS;
}

/* Return the unexpired result for KEY, or NULL. */
static const struct cached_result *
cache_find(const struct userdb_cache *cache, const char *key)
{
	const struct cached_result *slot = cache->slots[slot_of(key)];

	if (slot == NULL || strcmp(slot->key, key) != 0 || slot->expires <= monotonic_msec())
		return NULL;
	return slot;
}

/* Keep the result FOUND (and ENTRY, when found) under KEY. */
static void
cache_store(struct userdb_cache *cache, const char *key, int found,
    const struct userdb_entry *entry)
{
	struct cached_result **slot = &cache->slots[slot_of(key)];
	struct cached_result *result = xcalloc(1, sizeof *result);

	result->key = xstrdup(key);
	result->found = found;
	result->expires = monotonic_msec() + cache->seconds * 1000;
	if (found) {
		result->user = xstrdup(entry->user);
		result->home = xstrdup(entry->home);
		result->mail = xstrdup(entry->mail);
		result->uid = entry->uid;
		result->gid = entry->gid;
	}
	result_free(*slot);
	*slot = result;
}

/* Fill OUT from the found RESULT. */
static void
cache_copy_entry(const struct cached_result *result, struct userdb_entry *out)
{
	strlcpy_x(out->user, result->user, sizeof out->user);
	strlcpy_x(out->home, result->home, sizeof out->home);
	strlcpy_x(out->mail, result->mail, sizeof out->mail);
	out->uid = result->uid;
	out->gid = result->gid;
}

int
userdb_cache_lookup(struct userdb_cache *cache, struct userdb_client *client,
    const char *user, const char *service, int timeout_ms, struct userdb_entry *out,
    char *err, size_t errsize)
{
	const struct cached_result *hit;
	char key[USERDB_CACHE_KEY_MAX];
	int found;

	if (cache == NULL || cache->seconds <= 0 ||
	    (size_t)snprintf(key, sizeof key, "%s\t%s", service, user) >= sizeof key)
		return userdb_lookup(client, user, service, timeout_ms, out, err, errsize);

	hit = cache_find(cache, key);
	if (hit != NULL) {
		if (hit->found)
			cache_copy_entry(hit, out);
		return hit->found;
	}

	found = userdb_lookup(client, user, service, timeout_ms, out, err, errsize);
	if (found >= 0)
		cache_store(cache, key, found, out);
	return found;
}
