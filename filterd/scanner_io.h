/*
 * Blocking socket I/O with a deadline, shared by the spamd and clamd
 * clients. Every call waits at most until DEADLINE, a value from
 * scanner_deadline() on the monotonic clock, so one scan takes at most its timeout from connect to the last byte of
 * the reply. Errors are written into ERR as "what failed: why".
 */
#ifndef ESTAFETA_FILTERD_SCANNER_IO_H
#define ESTAFETA_FILTERD_SCANNER_IO_H

#include <stddef.h>
#include <sys/types.h>

/* Return value of scanner_send when the peer sent data or closed the
 * connection before all of the request was sent (clamd does that when a stream is
 * over its StreamMaxLength). The caller should read the reply. */
#define SCANNER_PEER_REPLIED 1

/*
 * Connect to the Unix socket PATH, or when PATH is empty to ADDRESS
 * ("IPv4:port" or "[IPv6]:port", numeric, so no DNS lookup). NAME
 * ("spamd", "clamd") goes into the error text. Returns a blocking,
 * close-on-exec descriptor, or -1 with ERR set.
 */
int scanner_connect(const char *name, const char *path, const char *address,
    long long deadline, char *err, size_t errsize);

/* Check at start-up what scanner_connect would use: PATH fits a Unix
 * socket address, or ADDRESS parses. Returns 0, or -1 with ERR set. */
int scanner_check_target(const char *name, const char *path, const char *address,
    char *err, size_t errsize);

/* Send all of BUF. Returns 0, SCANNER_PEER_REPLIED, or -1 with ERR set. */
int scanner_send(int fd, const void *buf, size_t len, long long deadline,
    char *err, size_t errsize);

/* Send one byte and the descriptor PASSED (SCM_RIGHTS) over the Unix
 * socket FD. Returns 0 or -1 with ERR set. */
int scanner_send_fd(int fd, int passed, long long deadline, char *err, size_t errsize);

/* Receive up to LEN bytes. Returns the count (0 at the end of the
 * stream), or -1 with ERR set. */
ssize_t scanner_recv(int fd, void *buf, size_t len, long long deadline,
    char *err, size_t errsize);

/* The deadline TIMEOUT seconds from now. */
long long scanner_deadline(long long timeout);

#endif
