/* 8-bit body parts to quoted-printable, for servers without 8BITMIME. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "outbound_mime7.h"
#include "util.h"

#define QP_LINE_MAX 76	/* encoded octets per line (RFC 2045 section 6.7, rule 5) */

struct output {
	char *bytes;
	size_t len;
	size_t size;
};

static void
put(struct output *out, const void *bytes, size_t len)
{
	if (len == 0)
		return;
	if (out->len + len > out->size) {
		out->size = (out->len + len) * 2 + 256;
		out->bytes = xrealloc(out->bytes, out->size);
	}
	memcpy(out->bytes + out->len, bytes, len);
	out->len += len;
}

static int
has_8bit(const char *bytes, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)bytes[i] > 127)
			return 1;
	return 0;
}

/* Encode one line (without its line end) as quoted-printable, with soft
 * line breaks so no output line is longer than QP_LINE_MAX. */
static void
put_qp_line(struct output *out, const unsigned char *line, size_t len)
{
	size_t column = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = line[i];
		int last = i + 1 == len;
		char encoded[4];
		size_t width;

		/* Space and tab stay, except at the end of the line (rule 3). */
		if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
			encoded[0] = (char)c;
			width = 1;
		} else {
			snprintf(encoded, sizeof encoded, "=%02X", c);
			width = 3;
		}
		/* Leave room for the "=" of a soft line break unless this is
		 * the last octet of the line. */
		if (column + width > QP_LINE_MAX - (last ? 0 : 1)) {
			put(out, "=\r\n", 3);
			column = 0;
		}
		put(out, encoded, width);
		column += width;
	}
}

/* Encode BODY (LEN bytes, CRLF line ends) as quoted-printable. */
static void
put_qp_body(struct output *out, const char *body, size_t len)
{
	size_t start = 0;

	while (start < len) {
		const char *crlf = memmem(body + start, len - start, "\r\n", 2);
		size_t line = crlf != NULL ? (size_t)(crlf - (body + start)) : len - start;

		put_qp_line(out, (const unsigned char *)body + start, line);
		if (crlf == NULL)
			break;
		put(out, "\r\n", 2);
		start += line + 2;
	}
}

/* Copy the header HEADER (LEN bytes, with its empty line if it has
 * one) without its Content-Transfer-Encoding fields, then add FIELDS
 * before the empty line. */
static void
put_header_with(struct output *out, const char *header, size_t len, const char *fields)
{
	size_t pos = 0, end = len;
	int skipping = 0;

	if (len >= 2 && memcmp(header + len - 2, "\r\n", 2) == 0 &&
	    (len == 2 || (len >= 4 && memcmp(header + len - 4, "\r\n", 2) == 0)))
		end = len - 2;	/* the empty line */

	while (pos < end) {
		const char *crlf = memmem(header + pos, end - pos, "\r\n", 2);
		size_t line = crlf != NULL ? (size_t)(crlf - (header + pos)) + 2 : end - pos;
		const char *text = header + pos;

		/* A line that starts with white space continues the field before it. */
		if (text[0] != ' ' && text[0] != '\t')
			skipping = line >= 26 && strncasecmp(text, "Content-Transfer-Encoding:", 26) == 0;
		if (!skipping)
			put(out, text, line);
		pos += line;
	}
	put(out, fields, strlen(fields));
	put(out, header + end, len - end);
}

static int
header_has_field(const char *header, size_t len, const char *name)
{
	size_t name_len = strlen(name);

	for (size_t pos = 0; pos + name_len < len;) {
		const char *crlf = memmem(header + pos, len - pos, "\r\n", 2);

		if (strncasecmp(header + pos, name, name_len) == 0)
			return 1;
		if (crlf == NULL)
			break;
		pos = (size_t)(crlf - header) + 2;
	}
	return 0;
}

/* Write PART, converting its 8-bit leaves. *POS is how far the message
 * has been copied; bytes before the part (boundaries, preamble) are
 * copied verbatim. Returns 0, or -1 with ERR set. */
static int
put_part(struct output *out, const struct mime_message *msg, const struct mime_part *part,
    size_t *pos, char *err, size_t errsize)
{
	const char *header = msg->data + part->offset;
	size_t body_end = part->body_offset + part->body_len;

	put(out, msg->data + *pos, part->offset - *pos);
	if (has_8bit(header, part->header_len)) {
		snprintf(err, errsize, "message has 8-bit header content, but the host does not offer 8BITMIME");
		return -1;
	}

	if (part->child_count > 0 || part->message != NULL) {
		put(out, header, part->header_len);
		*pos = part->body_offset;
		for (size_t i = 0; i < part->child_count; i++)
			if (put_part(out, msg, &part->children[i], pos, err, errsize) < 0)
				return -1;
		if (part->message != NULL && put_part(out, msg, part->message, pos, err, errsize) < 0)
			return -1;
		put(out, msg->data + *pos, body_end - *pos);
		*pos = body_end;
		return 0;
	}

	if (!has_8bit(msg->data + part->body_offset, part->body_len)) {
		put(out, header, body_end - part->offset);
		*pos = body_end;
		return 0;
	}

	/* The root of a message without MIME-Version becomes MIME too. */
	if (part == &msg->root && !header_has_field(header, part->header_len, "MIME-Version:"))
		put_header_with(out, header, part->header_len,
		    "MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n");
	else
		put_header_with(out, header, part->header_len,
		    "Content-Transfer-Encoding: quoted-printable\r\n");
	put_qp_body(out, msg->data + part->body_offset, part->body_len);
	*pos = body_end;
	return 0;
}

char *
outbound_mime7_convert(const char *data, size_t len, size_t *out_len, char *err, size_t errsize)
{
	struct mime_message *msg = mime_parse(data, len);
	struct output out = { NULL, 0, 0 };
	size_t pos = 0;

	if (msg == NULL) {
		snprintf(err, errsize, "out of memory while converting the message to 7 bit");
		return NULL;
	}
	if (put_part(&out, msg, &msg->root, &pos, err, errsize) < 0) {
		free(out.bytes);
		mime_free(msg);
		return NULL;
	}
	put(&out, msg->data + pos, msg->len - pos);
	mime_free(msg);
	if (out.bytes == NULL)
		out.bytes = xstrdup("");

	/* A preamble or epilogue is copied as it is. */
	if (has_8bit(out.bytes, out.len)) {
		snprintf(err, errsize, "message has 8-bit content outside its body parts, but the host does not offer 8BITMIME");
		free(out.bytes);
		return NULL;
	}
	*out_len = out.len;
	return out.bytes;
}
