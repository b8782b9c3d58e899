/*
 * Rate-limited log lines for errors a client can repeat at will (a
 * failing accept, a rejected request). The first line is logged; the
 * same text again within LOG_REPEAT_INTERVAL seconds is only counted,
 * and the count is logged once when the interval ends.
 */
#ifndef ESTAFETA_QUEUED_LOG_REPEAT_H
#define ESTAFETA_QUEUED_LOG_REPEAT_H

#define LOG_REPEAT_INTERVAL 10	/* seconds */

enum log_repeat_level {
	LOG_REPEAT_WARN,
	LOG_REPEAT_ERROR,
};

struct event;

/* The state of one log call site, zero-initialized (static) before use. */
struct log_repeat {
	enum log_repeat_level level;
	char last[512];		/* text of the last line logged */
	unsigned long repeats;	/* lines with that text not logged since */
	struct event *timer;	/* logs the count at the end of the interval */
	struct log_repeat *next;	/* in the list of call sites with a timer */
};

void log_repeat(struct log_repeat *repeat, enum log_repeat_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log every pending count and free the timers, before the event base
 * is freed at exit. */
void log_repeat_flush_all(void);

#endif
