/*
 * Reading the spool file for DKIM: the header section into memory, the
 * body in chunks with its LF line ends turned into CRLF, as RFC 6376
 * canonicalization expects. The file is only read with pread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dkim.h"
#include "util.h"

#define READ_CHUNK 65536
/* The largest header section read into memory, in bytes. */
#define HEADER_MAX (4 * 1024 * 1024)

/* The end of the header section in TEXT: the offset of the blank line,
 * or -1 when there is none yet. */
static ssize_t
header_end(const char *text, size_t len)
{
	if (len > 0 && text[0] == '\n')
		return 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (text[i] == '\n' && text[i + 1] == '\n')
			return (ssize_t)i + 1;
	}
	return -1;
}

int
spool_header_read(int fd, off_t size, struct spool_header *header, char *err, size_t errsize)
{
	size_t used = 0, capacity = 0;
	char *text = NULL;
	ssize_t end = -1;

	while (end < 0 && (off_t)used < size && used < HEADER_MAX) {
		ssize_t got;

		if (capacity - used < READ_CHUNK + 1) {
			capacity += READ_CHUNK + 1;
			text = xrealloc(text, capacity);
		}
		got = pread(fd, text + used, READ_CHUNK, (off_t)used);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(err, errsize, "cannot read the spool file: %s",
			    got < 0 ? strerror(errno) : "unexpected end of file");
			free(text);
			return -1;
		}
		/* Look again from the last byte read before, which may be the
		 * first LF of the blank line. */
		used += (size_t)got;
		end = header_end(text, used);
	}
	if (text == NULL)
		text = xmalloc(1);

	if (end < 0) {
		/* A message of header fields only, or one too large. */
		if (used >= HEADER_MAX) {
			snprintf(err, errsize, "header section larger than %d bytes", HEADER_MAX);
			free(text);
			return -1;
		}
		header->len = used;
		header->body_offset = size;
	} else {
		header->len = (size_t)end;
		header->body_offset = (off_t)end + 1;
	}
	text[header->len] = '\0';
	header->text = text;
	return 0;
}

/*
 * Split HEADER into fields the way smtpd's header editor does: a field
 * starts at each line that does not start with a space or tab and runs
 * over the folded lines after it, up to the empty line. Its name is the
 * text before the colon on its first line, spaces and tabs before the
 * colon removed (RFC 5322 section 4.5, obsolete syntax). A line without
 * a colon is skipped, unlike header_parse, which ends the header there:
 * smtpd, Dovecot and mail readers read on, so a field after such a line
 * must be seen here too, and counted the same way for removals.
 */
int
spool_header_fields(const struct spool_header *header, struct header_list *out)
{
	const char *text = header->text, *end = header->text + header->len;
	size_t capacity = 16;

	memset(out, 0, sizeof *out);
	out->fields = xmalloc(capacity * sizeof *out->fields);
	out->capacity = capacity;

	for (const char *p = text; p < end;) {
		const char *line_end = memchr(p, '\n', (size_t)(end - p));
		const char *field_end = p, *colon;
		struct header_field *field;
		size_t namelen;

		/* The field ends at the LF that no space or tab follows. */
		for (;;) {
			const char *lf = memchr(field_end, '\n', (size_t)(end - field_end));

			field_end = lf != NULL ? lf + 1 : end;
			if (field_end >= end || (*field_end != ' ' && *field_end != '\t'))
				break;
		}
		if (line_end == NULL)
			line_end = end;
		colon = memchr(p, ':', (size_t)(line_end - p));
		namelen = colon != NULL ? (size_t)(colon - p) : 0;
		while (namelen > 0 && (p[namelen - 1] == ' ' || p[namelen - 1] == '\t'))
			namelen--;
		if (namelen == 0) {
			p = field_end;
			continue;
		}

		if (out->count == out->capacity) {
			out->capacity *= 2;
			out->fields = xrealloc(out->fields, out->capacity * sizeof *out->fields);
		}
		field = &out->fields[out->count++];
		field->start = p;
		field->len = (size_t)(field_end - p);
		field->name = p;
		field->namelen = namelen;
		field->value = colon + 1;
		field->valuelen = (size_t)(field_end - field->value);
		if (field->valuelen > 0 && field_end[-1] == '\n')
			field->valuelen--;
		p = field_end;
	}
	out->header_len = header->len;
	out->body_offset = header->len;
	return 0;
}

void
spool_header_free(struct spool_header *header)
{
	free(header->text);
	header->text = NULL;
}

int
spool_body_feed(int fd, off_t offset, off_t size,
    int (*feed)(void *context, const unsigned char *data, size_t len), void *context)
{
	/* On the heap: filterd's worker threads have small stacks. */
	unsigned char *in = xmalloc(READ_CHUNK), *out = xmalloc(2 * READ_CHUNK);
	int rc = 0;

	while (offset < size && rc == 0) {
		size_t want = size - offset < READ_CHUNK ? (size_t)(size - offset) : READ_CHUNK;
		size_t n = 0;
		ssize_t got;

		got = pread(fd, in, want, offset);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			rc = -1;
			break;
		}
		offset += got;

		for (ssize_t i = 0; i < got; i++) {
			if (in[i] == '\n')
				out[n++] = '\r';
			out[n++] = in[i];
		}
		rc = feed(context, out, n);
	}
	free(in);
	free(out);
	return rc;
}

char *
dkim_field_crlf(const char *start, size_t len)
{
	char *out = xmalloc(2 * len + 1);
	size_t n = 0;

	while (len > 0 && (start[len - 1] == '\n' || start[len - 1] == '\r'))
		len--;
	for (size_t i = 0; i < len; i++) {
		if (start[i] == '\n' && (i == 0 || start[i - 1] != '\r'))
			out[n++] = '\r';
		out[n++] = start[i];
	}
	out[n] = '\0';
	return out;
}
