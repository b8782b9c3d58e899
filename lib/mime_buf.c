/* Byte buffers and IMAP string output for lib/mime. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

/* Longer strings go out as literals, which read better in a protocol
 * trace and never need escaping. */
#define QUOTED_MAX 1024

static void
reserve(struct mime_buf *buf, size_t extra)
{
	size_t capacity;

	if (buf->len + extra + 1 <= buf->capacity)
		return;
	capacity = buf->capacity ? buf->capacity : 256;
	while (capacity < buf->len + extra + 1)
		capacity *= 2;
	buf->data = xrealloc(buf->data, capacity);
	buf->capacity = capacity;
}

void
mime_buf_add(struct mime_buf *buf, const void *data, size_t len)
{
	reserve(buf, len);
	if (len > 0)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
}

void
mime_buf_add_str(struct mime_buf *buf, const char *s)
{
	mime_buf_add(buf, s, strlen(s));
}

void
mime_buf_add_char(struct mime_buf *buf, char c)
{
	mime_buf_add(buf, &c, 1);
}

void
mime_buf_add_printf(struct mime_buf *buf, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	mime_buf_add(buf, s, (size_t)n);
	free(s);
}

char *
mime_buf_take(struct mime_buf *buf, size_t *len)
{
	char *data;

	reserve(buf, 0);
	buf->data[buf->len] = '\0';
	data = buf->data;
	if (len != NULL)
		*len = buf->len;
	memset(buf, 0, sizeof *buf);
	return data;
}

/* RFC 3501 quoted strings contain 7-bit characters except NUL, CR and LF. */
static int
can_quote(const char *s, size_t len)
{
	if (len > QUOTED_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == 0 || c >= 0x80 || c == '\r' || c == '\n')
			return 0;
	}
	return 1;
}

/* IMAP strings cannot contain NUL (RFC 3501 CHAR8 is %x01-ff), so NUL
 * bytes from a damaged header are dropped. */
static void
add_string_without_nul(struct mime_buf *buf, const char *s, size_t len)
{
	struct mime_buf clean = { 0 };

	for (size_t i = 0; i < len; i++)
		if (s[i] != '\0')
			mime_buf_add_char(&clean, s[i]);
	mime_buf_add_string_len(buf, clean.data != NULL ? clean.data : "", clean.len);
	free(clean.data);
}

void
mime_buf_add_string_len(struct mime_buf *buf, const char *s, size_t len)
{
	if (len > 0 && memchr(s, '\0', len) != NULL) {
		add_string_without_nul(buf, s, len);
		return;
	}
	if (!can_quote(s, len)) {
		mime_buf_add_printf(buf, "{%zu}\r\n", len);
		mime_buf_add(buf, s, len);
		return;
	}

	mime_buf_add_char(buf, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			mime_buf_add_char(buf, '\\');
		mime_buf_add_char(buf, s[i]);
	}
	mime_buf_add_char(buf, '"');
}

void
mime_buf_add_nstring(struct mime_buf *buf, const char *s)
{
	if (s == NULL)
		mime_buf_add_str(buf, "NIL");
	else
		mime_buf_add_string_len(buf, s, strlen(s));
}
