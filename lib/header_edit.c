/*
 * Editing the header section of a spool file in place. The header
 * section is read into memory (at most HEADER_EDIT_MAX bytes), rebuilt
 * with the edits, and the body is moved by the difference in length in
 * fixed-size chunks, so memory stays bounded whatever the message size.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "header_edit.h"
#include "util.h"

#define CHUNK_SIZE (64 * 1024)

/* One field of the header section: its bytes with the final LF. */
struct field_span {
	size_t start;
	size_t len;
	size_t name_len;	/* bytes before the colon, 0 when there is none */
};

static int
edit_error(char *err, size_t errsize, const char *what)
{
	snprintf(err, errsize, "%s: %s", what, strerror(errno));
	return -1;
}

static int
pread_all(int fd, char *buf, size_t len, off_t offset)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;	/* the file is shorter than announced */
			return -1;
		}
		buf += n;
		len -= (size_t)n;
		offset += n;
	}
	return 0;
}

static int
pwrite_all(int fd, const char *buf, size_t len, off_t offset)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
		offset += n;
	}
	return 0;
}

/*
 * Read the header section of the first SIZE bytes of FD into *HEADER.
 * *HEADER_LEN is its length up to and including the LF of its last
 * line: 0 when the message starts with the empty line, SIZE when there
 * is no empty line. Returns 0, or -1 or HEADER_EDIT_TOO_LARGE with ERR
 * set.
 */
static int
read_header(int fd, off_t size, char **header, size_t *header_len, char *err, size_t errsize)
{
	size_t limit = size < HEADER_EDIT_MAX + 1 ? (size_t)size : HEADER_EDIT_MAX + 1;
	char *buf = xmalloc(limit + 1);
	size_t got = 0;

	while (got < limit) {
		size_t want = limit - got < CHUNK_SIZE ? limit - got : CHUNK_SIZE;
		size_t from = got > 0 ? got - 1 : 0;

		if (pread_all(fd, buf + got, want, (off_t)got) < 0) {
			free(buf);
			return edit_error(err, errsize, "reading the header section failed");
		}
		got += want;

		if (buf[0] == '\n') {
			*header_len = 0;
			*header = buf;
			return 0;
		}
		for (size_t i = from; i + 1 < got; i++)
			if (buf[i] == '\n' && buf[i + 1] == '\n') {
				*header_len = i + 1;
				*header = buf;
				return 0;
			}
	}

	if ((off_t)got < size) {
		free(buf);
		snprintf(err, errsize, "header section longer than %d bytes", HEADER_EDIT_MAX);
		return HEADER_EDIT_TOO_LARGE;
	}
	*header_len = got;
	*header = buf;
	return 0;
}

/* Split HEADER into fields; returns their number, *SPANS allocated. */
static size_t
split_fields(const char *header, size_t len, struct field_span **spans)
{
	size_t count = 0, capacity = 16;

	*spans = xmalloc(capacity * sizeof **spans);
	for (size_t pos = 0; pos < len;) {
		size_t end = pos;
		struct field_span *span;
		const char *colon;

		/* The field ends at the LF that is not followed by a space or tab. */
		for (;;) {
			const char *lf = memchr(header + end, '\n', len - end);

			end = lf != NULL ? (size_t)(lf - header) + 1 : len;
			if (end >= len || (header[end] != ' ' && header[end] != '\t'))
				break;
		}

		if (count == capacity) {
			capacity *= 2;
			*spans = xrealloc(*spans, capacity * sizeof **spans);
		}
		span = &(*spans)[count++];
		span->start = pos;
		span->len = end - pos;
		colon = memchr(header + pos, ':', end - pos);
		span->name_len = colon != NULL ? (size_t)(colon - (header + pos)) : 0;

		/* RFC 5322's obsolete syntax allows spaces before the colon. */
		while (span->name_len > 0 &&
		    (header[pos + span->name_len - 1] == ' ' || header[pos + span->name_len - 1] == '\t'))
			span->name_len--;
		pos = end;
	}
	return count;
}

static int
span_is(const char *header, const struct field_span *span, const char *name)
{
	size_t len = strlen(name);

	return span->name_len == len && strncasecmp(header + span->start, name, len) == 0;
}

/* Mark in REMOVE[] the fields that EDITS removes. */
static void
mark_removals(const char *header, const struct field_span *spans, size_t count,
    const struct header_edits *edits, char *remove)
{
	for (size_t r = 0; r < edits->nremovals; r++) {
		unsigned seen = 0;

		for (size_t i = 0; i < count; i++)
			if (span_is(header, &spans[i], edits->removals[r].name) &&
			    ++seen == edits->removals[r].index) {
				remove[i] = 1;
				break;
			}
	}
}

static void
append(char **buf, size_t *len, size_t *capacity, const char *data, size_t n)
{
	if (*len + n > *capacity) {
		while (*len + n > *capacity)
			*capacity *= 2;
		*buf = xrealloc(*buf, *capacity);
	}
	memcpy(*buf + *len, data, n);
	*len += n;
}

/* Append the Subject: field FIELD with PREFIX at the start of its value. */
static void
append_prefixed_subject(char **buf, size_t *len, size_t *capacity, const char *field,
    size_t field_len, size_t name_len, const char *prefix)
{
	size_t prefix_len = strlen(prefix);
	size_t value = name_len + 1;

	while (prefix_len > 0 && (prefix[prefix_len - 1] == ' ' || prefix[prefix_len - 1] == '\t'))
		prefix_len--;
	while (value < field_len && (field[value] == ' ' || field[value] == '\t'))
		value++;

	if (value >= field_len || field[value] == '\n') {
		/* The value starts on a continuation line (or is empty): the
		 * prefix goes right after the colon. */
		append(buf, len, capacity, field, name_len + 1);
		append(buf, len, capacity, " ", 1);
		append(buf, len, capacity, prefix, prefix_len);
		append(buf, len, capacity, field + name_len + 1, field_len - name_len - 1);
		return;
	}
	append(buf, len, capacity, field, value);
	append(buf, len, capacity, prefix, prefix_len);
	append(buf, len, capacity, " ", 1);
	append(buf, len, capacity, field + value, field_len - value);
}

/* Build the edited header section of HEADER (LEN bytes) into *OUT. */
static size_t
build_header(const char *header, size_t len, const struct header_edits *edits, char **out)
{
	struct field_span *spans;
	size_t count = split_fields(header, len, &spans);
	char *remove = xcalloc(count + 1, 1);
	size_t capacity = len + 1024, used = 0;
	int prefixed = edits->subject_prefix[0] == '\0';

	*out = xmalloc(capacity);
	for (size_t i = 0; i < edits->nfields; i++) {
		append(out, &used, &capacity, edits->fields[i], strlen(edits->fields[i]));
		append(out, &used, &capacity, "\n", 1);
	}

	mark_removals(header, spans, count, edits, remove);
	for (size_t i = 0; i < count; i++) {
		const struct field_span *span = &spans[i];

		if (remove[i])
			continue;
		if (!prefixed && span_is(header, span, "Subject")) {
			append_prefixed_subject(out, &used, &capacity, header + span->start, span->len,
			    span->name_len, edits->subject_prefix);
			prefixed = 1;
			continue;
		}
		append(out, &used, &capacity, header + span->start, span->len);
	}

	/* NOTE: a message without a Subject: field gets one holding only
	 * the prefix, so that the tag is still visible. */
	if (!prefixed) {
		append(out, &used, &capacity, "Subject: ", 9);
		append(out, &used, &capacity, edits->subject_prefix, strlen(edits->subject_prefix));
		append(out, &used, &capacity, "\n", 1);
	}

	free(remove);
	free(spans);
	return used;
}

/*
 * Move the bytes [FROM, END) of FD to start at TO, chunk by chunk: from
 * the end when they move towards the end of the file, from the start
 * otherwise, so no byte is overwritten before it is copied.
 */
static int
move_body(int fd, off_t from, off_t end, off_t to)
{
	char *chunk = xmalloc(CHUNK_SIZE);
	off_t total = end - from;
	int rc = 0;

	for (off_t done = 0; done < total && rc == 0;) {
		size_t n = total - done < CHUNK_SIZE ? (size_t)(total - done) : CHUNK_SIZE;
		off_t offset = to > from ? end - done - (off_t)n : from + done;
		off_t shift = to - from;

		if (pread_all(fd, chunk, n, offset) < 0 || pwrite_all(fd, chunk, n, offset + shift) < 0)
			rc = -1;
		done += (off_t)n;
	}
	free(chunk);
	return rc;
}

int
header_edit_apply(int fd, off_t size, const struct header_edits *edits, off_t *new_size,
    char *err, size_t errsize)
{
	char *header, *edited;
	size_t header_len, edited_len;
	off_t delta;
	int rc;

	if ((rc = read_header(fd, size, &header, &header_len, err, errsize)) < 0)
		return rc;
	edited_len = build_header(header, header_len, edits, &edited);
	free(header);
	delta = (off_t)edited_len - (off_t)header_len;

	if (delta != 0 && move_body(fd, (off_t)header_len, size, (off_t)header_len + delta) < 0) {
		free(edited);
		return edit_error(err, errsize, "moving the message body failed");
	}
	if (pwrite_all(fd, edited, edited_len, 0) < 0) {
		free(edited);
		return edit_error(err, errsize, "writing the header section failed");
	}
	free(edited);

	*new_size = size + delta;
	if (ftruncate(fd, *new_size) < 0)
		return edit_error(err, errsize, "truncating the spool file failed");
	if (lseek(fd, *new_size, SEEK_SET) < 0)
		return edit_error(err, errsize, "seeking to the end of the spool file failed");
	return 0;
}

void
header_edits_clear(struct header_edits *edits)
{
	for (size_t i = 0; i < edits->nfields; i++)
		free(edits->fields[i]);
	free(edits->fields);
	free(edits->removals);
	memset(edits, 0, sizeof *edits);
}
