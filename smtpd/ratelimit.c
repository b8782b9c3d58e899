/* Per-client-address event rates in a bounded table (see ratelimit.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "smtpd.h"
#include "util.h"

/* Slots searched from an address's hash slot before one is reused. */
#define RATE_PROBE_MAX	16

struct rate_slot {
	char ip[SMTPD_IP_MAX];		/* "" when the slot is free */
	time_t window_start;
	unsigned long counts[RATE_EVENT_MAX];
};

struct rate_table {
	long long time_unit;
	size_t nslots;
	struct rate_slot *slots;
};

struct rate_table *
rate_table_new(long long time_unit, size_t slots)
{
	struct rate_table *table = xcalloc(1, sizeof *table);

	table->time_unit = time_unit > 0 ? time_unit : 1;
	table->nslots = slots > 0 ? slots : 1;
	table->slots = xcalloc(table->nslots, sizeof *table->slots);
	return table;
}

void
rate_table_free(struct rate_table *table)
{
	if (table == NULL)
		return;
	free(table->slots);
	free(table);
}

/* FNV-1a over the printable address. */
static uint32_t
hash_ip(const char *ip)
{
	uint32_t hash = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)ip; *p != '\0'; p++) {
		hash ^= *p;
		hash *= 16777619u;
	}
	return hash;
}

static int
slot_expired(const struct rate_table *table, const struct rate_slot *slot, time_t now)
{
	return slot->ip[0] == '\0' || now - slot->window_start >= (time_t)table->time_unit ||
	    now < slot->window_start;
}

/*
 * The slot of IP: its own, else a free or expired one, else the one
 * with the oldest window among the RATE_PROBE_MAX slots searched.
 */
static struct rate_slot *
slot_find(struct rate_table *table, const char *ip, time_t now)
{
	size_t start = hash_ip(ip) % table->nslots;
	size_t probes = table->nslots < RATE_PROBE_MAX ? table->nslots : RATE_PROBE_MAX;
	struct rate_slot *reusable = NULL;

	for (size_t i = 0; i < probes; i++) {
		struct rate_slot *slot = &table->slots[(start + i) % table->nslots];

		if (slot->ip[0] != '\0' && strcmp(slot->ip, ip) == 0)
			return slot;
		if (reusable == NULL || (!slot_expired(table, reusable, now) &&
		    (slot_expired(table, slot, now) || slot->window_start < reusable->window_start)))
			reusable = slot;
	}

	memset(reusable, 0, sizeof *reusable);
	strlcpy_x(reusable->ip, ip, sizeof reusable->ip);
	reusable->window_start = now;
	return reusable;
}

unsigned long
rate_count(struct rate_table *table, const char *ip, enum rate_event event, time_t now)
{
	struct rate_slot *slot = slot_find(table, ip, now);

	if (slot_expired(table, slot, now)) {
		memset(slot->counts, 0, sizeof slot->counts);
		slot->window_start = now;
	}
	return ++slot->counts[event];
}
