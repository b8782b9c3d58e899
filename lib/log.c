/* Logging to syslog facility mail and to stderr in the foreground. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static char log_tag[64] = "estafeta";
static int log_foreground = 1;
static int log_syslog;
static int log_debug_enabled;

void
log_init(const char *program, int foreground, int use_syslog)
{
	snprintf(log_tag, sizeof log_tag, "estafeta/%s", program);
	log_foreground = foreground;
	log_syslog = use_syslog;
	if (log_syslog)
		openlog(log_tag, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_close_syslog(void)
{
	if (log_syslog)
		closelog();
}

void
log_reopen_syslog(void)
{
	if (log_syslog)
		openlog(log_tag, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_debug(int enabled)
{
	log_debug_enabled = enabled;
}

static void
log_emit(int priority, const char *prefix, const char *fmt, va_list ap)
{
	char line[4096];

	vsnprintf(line, sizeof line, fmt, ap);

	if (log_syslog)
		syslog(priority, "%s%s", prefix, line);

	if (log_foreground) {
		struct timespec ts;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
		fprintf(stderr, "%s %s[%ld]: %s%s\n", stamp, log_tag, (long)getpid(),
		    prefix, line);
	}
}

#define LOG_FUNCTION(name, priority, prefix)		\
void							\
name(const char *fmt, ...)				\
{							\
	va_list ap;					\
	int saved_errno = errno;			\
							\
	va_start(ap, fmt);				\
	log_emit(priority, prefix, fmt, ap);		\
	va_end(ap);					\
	errno = saved_errno;				\
}

LOG_FUNCTION(log_info, LOG_INFO, "")
LOG_FUNCTION(log_warn, LOG_WARNING, "warning: ")
LOG_FUNCTION(log_error, LOG_ERR, "error: ")

void
log_debug(const char *fmt, ...)
{
	va_list ap;
	int saved_errno = errno;

	if (!log_debug_enabled)
		return;
	va_start(ap, fmt);
	log_emit(LOG_DEBUG, "debug: ", fmt, ap);
	va_end(ap);
	errno = saved_errno;
}

static void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, "fatal: ", fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int saved_errno = errno;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	log_fatal("%s: %s", line, strerror(saved_errno));
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	log_fatal("%s", line);
	exit(1);
}

char *
log_sanitize(char *out, size_t outsize, const char *text, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (outsize == 0)
		return out;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			if (o + 1 >= outsize)
				break;
			out[o++] = (char)c;
			continue;
		}
		if (o + 4 >= outsize)
			break;
		out[o++] = '\\';
		if (c == '\\') {
			out[o++] = '\\';
			continue;
		}
		out[o++] = 'x';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 0xf];
	}
	out[o] = '\0';
	return out;
}
