/*
 * Failure delays per client address (the rip= of AUTH). The first
 * failure from an address waits auth_failure_delay, and each further one
 * twice as long as the one before, up to auth_failure_delay_max. A
 * success from the address, or auth_failure_reset_time without a failure,
 * resets its count. Attempts without rip= always get auth_failure_delay.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authd.h"
#include "config.h"
#include "util.h"

#define THROTTLE_ADDRESSES_MAX	16384	/* addresses remembered; the least recent goes first */

struct throttle_entry {
	struct throttle_entry *prev, *next;
	char *rip;
	unsigned failures;
	time_t last_failure;	/* CLOCK_MONOTONIC seconds */
};

/* Most recent failure first. */
static struct throttle_entry *head, *tail;
static size_t count;

static time_t
monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void
unlink_entry(struct throttle_entry *entry)
{
	if (entry->prev != NULL)
		entry->prev->next = entry->next;
	else
		head = entry->next;
	if (entry->next != NULL)
		entry->next->prev = entry->prev;
	else
		tail = entry->prev;
	entry->prev = entry->next = NULL;
}

static void
push_front(struct throttle_entry *entry)
{
	entry->next = head;
	if (head != NULL)
		head->prev = entry;
	head = entry;
	if (tail == NULL)
		tail = entry;
}

static void
remove_entry(struct throttle_entry *entry)
{
	unlink_entry(entry);
	free(entry->rip);
	free(entry);
	count--;
}

/* Forget the addresses whose last failure is older than auth_failure_reset_time. */
static void
expire(time_t now)
{
	time_t reset = (time_t)config_time("auth_failure_reset_time");

	while (tail != NULL && now - tail->last_failure >= reset)
		remove_entry(tail);
}

static struct throttle_entry *
find(const char *rip)
{
	for (struct throttle_entry *entry = head; entry != NULL; entry = entry->next)
		if (strcmp(entry->rip, rip) == 0)
			return entry;
	return NULL;
}

unsigned
throttle_failure(const char *rip, unsigned *failures)
{
	unsigned base = (unsigned)config_time("auth_failure_delay");
	unsigned max = (unsigned)config_time("auth_failure_delay_max");
	unsigned delay = base;
	time_t now = monotonic_seconds();
	struct throttle_entry *entry;

	*failures = 1;
	if (*rip == '\0' || base == 0)
		return base;

	expire(now);
	entry = find(rip);
	if (entry != NULL) {
		unlink_entry(entry);
	} else {
		if (count >= THROTTLE_ADDRESSES_MAX)
			remove_entry(tail);
		entry = xcalloc(1, sizeof *entry);
		entry->rip = xstrdup(rip);
		count++;
	}
	entry->failures++;
	entry->last_failure = now;
	push_front(entry);

	/* base * 2^(failures - 1), stopping at the cap before it can overflow. */
	for (unsigned i = 1; i < entry->failures && delay < max; i++)
		delay *= 2;
	*failures = entry->failures;
	return delay < max ? delay : (max > base ? max : base);
}

void
throttle_success(const char *rip)
{
	struct throttle_entry *entry;

	if (*rip == '\0')
		return;
	entry = find(rip);
	if (entry != NULL)
		remove_entry(entry);
}
