/*
 * Per-client-address event rates (connections, AUTH commands), counted
 * in fixed windows of smtpd_client_rate_time_unit seconds, similar to
 * Postfix's anvil. The table has a fixed number of slots: a full
 * table reuses the slot whose window is oldest, so memory stays bounded
 * and old addresses age out.
 */
#ifndef ESTAFETA_SMTPD_RATELIMIT_H
#define ESTAFETA_SMTPD_RATELIMIT_H

#include <time.h>

enum rate_event {
	RATE_CONNECTION,
	RATE_AUTH,
	RATE_EVENT_MAX
};

struct rate_table;

/* A table for TIME_UNIT-second windows with at most SLOTS addresses. */
struct rate_table *rate_table_new(long long time_unit, size_t slots);
void rate_table_free(struct rate_table *table);

/*
 * Count one EVENT from client address IP at time NOW and return the
 * number of such events in the current window, this one included.
 */
unsigned long rate_count(struct rate_table *table, const char *ip, enum rate_event event,
    time_t now);

#endif
