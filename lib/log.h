/* Logging to syslog (facility mail) and, in the foreground, to stderr. */
#ifndef ESTAFETA_LOG_H
#define ESTAFETA_LOG_H

#include <stdarg.h>
#include <stddef.h>

/*
 * Start logging as PROGRAM (tagged "estafeta/PROGRAM", as Postfix tags
 * "postfix/smtpd"). FOREGROUND also copies every line to stderr.
 * USE_SYSLOG may be 0 for tests and `make run`.
 */
void log_init(const char *program, int foreground, int use_syslog);

/* One line per event. Callers start the text with the queue id or
 * session id when there is one, then key=value fields. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Log and exit(EX_CONFIG or 1); the *_errno forms append strerror(errno). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

void log_set_debug(int enabled);

/* In a new child that is about to close every inherited descriptor:
 * log_close_syslog before, log_reopen_syslog after, so the syslog
 * socket never shares a number with a file the child opens later. */
void log_close_syslog(void);
void log_reopen_syslog(void);

/*
 * Copy untrusted text (client input) into OUT for logging: control
 * characters and bytes >= 0x7f become \xNN, and the result is cut at
 * OUTSIZE - 1 bytes. Returns OUT.
 */
char *log_sanitize(char *out, size_t outsize, const char *text, size_t len);

#endif
