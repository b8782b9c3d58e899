/* Blocking client I/O for one IMAP connection (see io.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "util.h"

#define OUT_FLUSH_AT	(64 * 1024)

void
imap_io_init(struct imap_io *io, int fd, int timeout_ms)
{
	memset(io, 0, sizeof *io);
	io->fd = fd;
	io->timeout_ms = timeout_ms;
}

void
imap_io_free(struct imap_io *io)
{
	free(io->out);
	io->out = NULL;
	io->outlen = io->outcap = 0;
}

size_t
imap_io_buffered(const struct imap_io *io)
{
	return io->inlen - io->inpos;
}

int
imap_io_wait(struct imap_io *io, int timeout_ms)
{
	struct pollfd pfd = { .fd = io->fd, .events = POLLIN };
	int n;

	if (imap_io_buffered(io) > 0)
		return 1;
	if (io->transport != NULL && io->transport->pending(io->transport->ctx) > 0)
		return 1;
	do
		n = poll(&pfd, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	return n;
}

/* Read more input into io->in. 1 on data, 0 on EOF or error, -2 on timeout. */
static int
fill(struct imap_io *io)
{
	ssize_t n;
	int ready;

	if (io->inpos == io->inlen)
		io->inpos = io->inlen = 0;
	if (io->inlen == sizeof io->in) {
		memmove(io->in, io->in + io->inpos, io->inlen - io->inpos);
		io->inlen -= io->inpos;
		io->inpos = 0;
	}
	if (imap_io_flush(io) < 0)
		return 0;
	ready = imap_io_wait(io, io->timeout_ms);
	if (ready == 0)
		return -2;
	if (ready < 0)
		return 0;
	do
		n = io->transport != NULL ?
		    io->transport->read(io->transport->ctx, io->in + io->inlen, sizeof io->in - io->inlen) :
		    read(io->fd, io->in + io->inlen, sizeof io->in - io->inlen);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return 0;
	io->inlen += (size_t)n;
	return 1;
}

static void
text_append(struct imap_command_text *text, const char *data, size_t len)
{
	if (text->len + len + 1 > text->cap) {
		size_t cap = text->cap == 0 ? 256 : text->cap;

		while (cap < text->len + len + 1)
			cap *= 2;
		text->data = xrealloc(text->data, cap);
		text->cap = cap;
	}
	memcpy(text->data + text->len, data, len);
	text->len += len;
	text->data[text->len] = '\0';
}

void
imap_command_text_free(struct imap_command_text *text)
{
	free(text->data);
	memset(text, 0, sizeof *text);
}

/*
 * Append input up to the next LF to TEXT, without the CR LF. Returns 1,
 * or 0 / -2 like fill(), or -3 when more than MAX bytes came before the
 * LF (the rest of the line is then skipped).
 */
static int
read_segment(struct imap_io *io, struct imap_command_text *text, size_t max)
{
	size_t got = 0;
	int overflow = 0;

	for (;;) {
		char *start = io->in + io->inpos;
		size_t avail = io->inlen - io->inpos;
		char *lf = memchr(start, '\n', avail);
		size_t take = lf != NULL ? (size_t)(lf - start) : avail;

		if (!overflow && got + take > max) {
			/* Keep the start, so that the reply can carry the tag. */
			text_append(text, start, max - got);
			got = max;
			overflow = 1;
		}
		if (!overflow) {
			text_append(text, start, take);
			got += take;
		}
		io->inpos += take;
		if (lf != NULL) {
			io->inpos++;
			break;
		}
		int r = fill(io);

		if (r <= 0)
			return r;
	}
	if (overflow)
		return -3;
	if (got > 0 && text->data[text->len - 1] == '\r')
		text->data[--text->len] = '\0';
	return 1;
}

/* Copy the first word of the command into text->tag and note APPEND. */
static void
note_tag(struct imap_command_text *text)
{
	const char *p = text->data, *end = text->data + text->len;
	size_t n = 0;

	while (p < end && *p != ' ' && n + 1 < sizeof text->tag)
		text->tag[n++] = *p++;
	text->tag[n] = '\0';
	if (p < end && *p == ' ') {
		p++;
		if (end - p >= 6 && ascii_ncasecmp(p, "APPEND", 6) == 0 &&
		    (end - p == 6 || p[6] == ' '))
			text->is_append = 1;
	}
}

/*
 * Whether the line in TEXT from START ends with a literal announcement:
 * 1 with *SIZE and *SYNC, 0 if not, -1 if it has an invalid number.
 */
static int
literal_at_end(const struct imap_command_text *text, size_t start, unsigned long long *size,
    int *sync)
{
	const char *line = text->data + start;
	size_t len = text->len - start;
	size_t open, digits_end;
	unsigned long long n = 0;

	if (len < 3 || line[len - 1] != '}')
		return 0;
	digits_end = len - 1;
	*sync = 1;
	if (line[digits_end - 1] == '+') {
		*sync = 0;
		digits_end--;
	}
	open = digits_end;
	while (open > 0 && line[open - 1] >= '0' && line[open - 1] <= '9')
		open--;
	if (open == 0 || line[open - 1] != '{')
		return 0;
	if (open == digits_end || digits_end - open > 10)
		return -1;
	for (size_t i = open; i < digits_end; i++)
		n = n * 10 + (unsigned long long)(line[i] - '0');
	if (n > 4294967295ULL)
		return -1;
	*size = n;
	return 1;
}

/* Discard SIZE bytes of input. 1, or 0 / -2 like fill(). */
static int
skip_bytes(struct imap_io *io, unsigned long long size)
{
	while (size > 0) {
		size_t avail = io->inlen - io->inpos;

		if (avail == 0) {
			int r = fill(io);

			if (r <= 0)
				return r;
			continue;
		}
		if (avail > size)
			avail = (size_t)size;
		io->inpos += avail;
		size -= avail;
	}
	return 1;
}

static int
read_literal(struct imap_io *io, struct imap_command_text *text, unsigned long long size)
{
	while (size > 0) {
		size_t avail = io->inlen - io->inpos;

		if (avail == 0) {
			int r = fill(io);

			if (r <= 0)
				return r;
			continue;
		}
		if (avail > size)
			avail = (size_t)size;
		text_append(text, io->in + io->inpos, avail);
		io->inpos += avail;
		size -= avail;
	}
	return 1;
}

static enum imap_read_status
read_failure(int r)
{
	return r == -2 ? IMAP_READ_TIMEOUT : IMAP_READ_EOF;
}

enum imap_read_status
imap_io_read_command(struct imap_io *io, const struct imap_limits *limits,
    struct imap_command_text *text)
{
	unsigned long long literal_total = 0;

	text->len = 0;
	text->tag[0] = '\0';
	text->is_append = 0;
	text_append(text, "", 0);

	for (int first = 1;; first = 0) {
		size_t start = text->len;
		unsigned long long size;
		size_t limit;
		int sync, r, literal;

		r = read_segment(io, text, limits->max_line);
		if (first && text->len > 0)
			note_tag(text);
		if (r == -3)
			return IMAP_READ_TOO_LONG;
		if (r <= 0)
			return read_failure(r);

		literal = literal_at_end(text, start, &size, &sync);
		if (literal == 0)
			return IMAP_READ_OK;
		if (literal < 0)
			return IMAP_READ_BAD_LITERAL;

		/* The limit covers all literals of the command together. */
		limit = text->is_append ? limits->max_append : limits->max_literal;
		literal_total += size;
		if (literal_total > limit) {
			if (sync)
				return IMAP_READ_LITERAL_TOO_BIG;
			if (size > limits->max_append + limits->max_literal)
				return IMAP_READ_LITERAL_CLOSE;
			r = skip_bytes(io, size);
			if (r > 0) {
				text->len = 0;
				r = read_segment(io, text, limits->max_line);
			}
			if (r == 0 || r == -2)
				return read_failure(r);
			return IMAP_READ_LITERAL_SKIPPED;
		}

		text_append(text, "\r\n", 2);
		if (sync) {
			imap_io_puts(io, "+ OK\r\n");
			if (imap_io_flush(io) < 0)
				return IMAP_READ_EOF;
		}
		r = read_literal(io, text, size);
		if (r <= 0)
			return read_failure(r);
	}
}

char *
imap_io_read_line(struct imap_io *io, size_t max, enum imap_read_status *status)
{
	struct imap_command_text text = { 0 };
	int r;

	text_append(&text, "", 0);
	r = read_segment(io, &text, max);
	if (r == 1) {
		*status = IMAP_READ_OK;
		return text.data;
	}
	*status = r == -3 ? IMAP_READ_TOO_LONG : read_failure(r);
	free(text.data);
	return NULL;
}

void
imap_io_write(struct imap_io *io, const void *data, size_t len)
{
	if (io->outlen + len > io->outcap) {
		size_t cap = io->outcap == 0 ? 4096 : io->outcap;

		while (cap < io->outlen + len)
			cap *= 2;
		io->out = xrealloc(io->out, cap);
		io->outcap = cap;
	}
	memcpy(io->out + io->outlen, data, len);
	io->outlen += len;
	if (io->outlen >= OUT_FLUSH_AT)
		imap_io_flush(io);
}

void
imap_io_puts(struct imap_io *io, const char *text)
{
	imap_io_write(io, text, strlen(text));
}

void
imap_io_printf(struct imap_io *io, const char *fmt, ...)
{
	char small[512], *text = small;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof small) {
		text = xmalloc((size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(text, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	imap_io_write(io, text, (size_t)n);
	if (text != small)
		free(text);
}

static int
quotable(const char *text, size_t len)
{
	if (len > 1024)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80)
			return 0;
	}
	return 1;
}

void
imap_io_nstring(struct imap_io *io, const char *text, size_t len)
{
	if (text == NULL) {
		imap_io_puts(io, "NIL");
		return;
	}
	if (!quotable(text, len)) {
		imap_io_printf(io, "{%zu}\r\n", len);
		imap_io_write(io, text, len);
		return;
	}
	imap_io_write(io, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '"' || text[i] == '\\')
			imap_io_write(io, "\\", 1);
		imap_io_write(io, text + i, 1);
	}
	imap_io_write(io, "\"", 1);
}

void
imap_io_astring(struct imap_io *io, const char *text, size_t len)
{
	imap_io_nstring(io, text != NULL ? text : "", text != NULL ? len : 0);
}

/* Write all of DATA through the transport. 0, or -1 with errno set. */
static int
transport_write_all(const struct imap_io_transport *transport, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = transport->write(transport->ctx, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int
imap_io_flush(struct imap_io *io)
{
	int r;

	if (io->outlen == 0)
		return io->failed ? -1 : 0;
	if (!io->failed) {
		r = io->transport != NULL ?
		    transport_write_all(io->transport, io->out, io->outlen) :
		    write_all(io->fd, io->out, io->outlen);
		if (r < 0)
			io->failed = 1;
	}
	io->outlen = 0;
	return io->failed ? -1 : 0;
}

size_t
imap_io_discard_input(struct imap_io *io)
{
	size_t n = io->inlen - io->inpos;

	io->inpos = io->inlen = 0;
	return n;
}

size_t
imap_io_take_input(struct imap_io *io, char *out, size_t outsize)
{
	size_t n = io->inlen - io->inpos;

	if (n > outsize)
		n = outsize;
	memcpy(out, io->in + io->inpos, n);
	io->inpos += n;
	return n;
}

void
imap_io_push_input(struct imap_io *io, const char *input, size_t len)
{
	size_t have = io->inlen - io->inpos;

	if (len + have > sizeof io->in)
		len = sizeof io->in - have;
	memmove(io->in + len, io->in + io->inpos, have);
	memcpy(io->in, input, len);
	io->inpos = 0;
	io->inlen = have + len;
}

int
imap_io_reject(struct imap_io *io, enum imap_read_status status,
    const struct imap_command_text *text)
{
	const char *tag = text->tag[0] != '\0' ? text->tag : "*";

	switch (status) {
	case IMAP_READ_OK:
		return 0;
	case IMAP_READ_EOF:
		return 1;
	case IMAP_READ_TIMEOUT:
		imap_io_puts(io, "* BYE Disconnected for inactivity\r\n");
		imap_io_flush(io);
		return 1;
	case IMAP_READ_TOO_LONG:
		imap_io_printf(io, "%s BAD [TOOBIG] Command line too long\r\n", tag);
		break;
	case IMAP_READ_LITERAL_TOO_BIG:
	case IMAP_READ_LITERAL_SKIPPED:
		if (text->is_append)
			imap_io_printf(io, "%s NO [TOOBIG] Message too big\r\n", tag);
		else
			imap_io_printf(io, "%s BAD [TOOBIG] Literal too big\r\n", tag);
		break;
	case IMAP_READ_LITERAL_CLOSE:
		imap_io_puts(io, "* BYE [TOOBIG] Literal too big\r\n");
		imap_io_flush(io);
		return 1;
	case IMAP_READ_BAD_LITERAL:
		imap_io_printf(io, "%s BAD Invalid literal size\r\n", tag);
		break;
	}
	return imap_io_flush(io) < 0;
}
