/* Small helpers every program uses: allocation that aborts on failure,
 * string copies with bounds, file descriptor flags. */
#ifndef ESTAFETA_UTIL_H
#define ESTAFETA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copy with truncation; returns strlen(src) like BSD strlcpy. */
size_t strlcpy_x(char *dst, const char *src, size_t size);

int set_nonblocking(int fd);
int set_cloexec(int fd);

/* Write all of BUF, retrying on EINTR and short writes. 0 or -1. */
int write_all(int fd, const void *buf, size_t len);

/* fsync the directory that contains PATH (or PATH itself if it is one). */
int fsync_directory(const char *dir);

/* Close every descriptor from 3 up except KEEP_A and KEEP_B (-1 for
 * none), so a new child inherits nothing it was not given. */
void close_descriptors_except(int keep_a, int keep_b);

/* mkdir -p with MODE for each created component. 0 or -1. */
int mkdir_p(const char *path, mode_t mode);

/* Wall-clock time in microseconds, and monotonic time in milliseconds. */
long long now_usec(void);
long long monotonic_msec(void);

/* The 32-bit FNV-1a hash of TEXT, for hash tables. */
uint32_t hash_fnv1a(const char *text);

/* Case-insensitive ASCII comparison helpers. */
int ascii_casecmp(const char *a, const char *b);
int ascii_ncasecmp(const char *a, const char *b, size_t n);
void ascii_lower(char *s);

#endif
