/* Rate-limited log lines (see log_repeat.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "log_repeat.h"
#include "queued.h"

static struct log_repeat *call_sites;

static void
log_line(enum log_repeat_level level, const char *text)
{
	if (level == LOG_REPEAT_ERROR)
		log_error("%s", text);
	else
		log_warn("%s", text);
}

static void
log_repeats(struct log_repeat *repeat)
{
	char text[sizeof repeat->last + 64];

	snprintf(text, sizeof text, "%s (repeated %lu more times in %d seconds)",
	    repeat->last, repeat->repeats, LOG_REPEAT_INTERVAL);
	log_line(repeat->level, text);
	repeat->repeats = 0;
}

/* End of an interval: log the count and start the next interval, so a
 * flood that goes on is logged once per interval. */
static void
interval_end(evutil_socket_t fd, short what, void *arg)
{
	struct log_repeat *repeat = arg;
	struct timeval interval = { LOG_REPEAT_INTERVAL, 0 };

	if (repeat->repeats == 0) {
		repeat->last[0] = '\0';
		return;
	}
	log_repeats(repeat);
	evtimer_add(repeat->timer, &interval);
}

void
log_repeat(struct log_repeat *repeat, enum log_repeat_level level, const char *fmt, ...)
{
	struct timeval interval = { LOG_REPEAT_INTERVAL, 0 };
	char text[sizeof repeat->last];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);

	if (repeat->timer == NULL) {
		repeat->timer = evtimer_new(queued_base, interval_end, repeat);
		repeat->next = call_sites;
		call_sites = repeat;
	}
	if (evtimer_pending(repeat->timer, NULL) && strcmp(text, repeat->last) == 0) {
		repeat->repeats++;
		return;
	}

	if (repeat->repeats > 0)
		log_repeats(repeat);
	repeat->level = level;
	memcpy(repeat->last, text, sizeof repeat->last);
	log_line(level, text);
	evtimer_add(repeat->timer, &interval);
}

void
log_repeat_flush_all(void)
{
	while (call_sites != NULL) {
		struct log_repeat *repeat = call_sites;

		call_sites = repeat->next;
		if (repeat->repeats > 0)
			log_repeats(repeat);
		event_free(repeat->timer);
		repeat->timer = NULL;
		repeat->last[0] = '\0';
	}
}
