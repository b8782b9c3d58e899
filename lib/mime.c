/*
 * Parsing a message into a tree of MIME parts (RFC 2045, RFC 2046):
 * content fields of each part, multipart boundaries and enclosed
 * message/rfc822 messages.
 */
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

/* Parts in one message beyond this are not split out: the last part
 * found runs to the end of its multipart. */
#define MAX_PARTS 10000

struct parser {
	struct mime_message *msg;
	size_t part_count;
};

static void parse_entity(struct parser *ps, struct mime_part *part, size_t start, size_t end,
    size_t depth, int digest_child);

/* Copy DATA with every LF that lacks a CR before it turned into CRLF. */
static char *
to_crlf(const char *data, size_t len, size_t *out_len)
{
	size_t bare = 0, n = 0;
	char *out;

	for (size_t i = 0; i < len; i++)
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			bare++;

	out = malloc(len + bare + 1);
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			out[n++] = '\r';
		out[n++] = data[i];
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

static size_t
count_lines(const char *p, size_t len)
{
	size_t lines = 0;

	for (size_t i = 0; i < len; i++)
		if (p[i] == '\n')
			lines++;
	if (len > 0 && p[len - 1] != '\n')
		lines++;
	return lines;
}

static char *
unfold_field(const struct mime_part *part, const char *name)
{
	const struct header_field *field = header_find(&part->headers, name);

	return field != NULL ? header_unfold(field) : NULL;
}

static void
set_type(struct mime_part *part, const char *type, const char *subtype)
{
	free(part->type);
	free(part->subtype);
	part->type = xstrdup(type);
	part->subtype = xstrdup(subtype);
}

/* RFC 2045 section 5.2: no Content-Type, or one that cannot be parsed,
 * means text/plain; charset=us-ascii. In a multipart/digest the default
 * is message/rfc822 (RFC 2046 section 5.1.5). */
static void
set_default_type(struct mime_part *part, int digest_child)
{
	mime_params_free(part->params, part->param_count);
	part->params = NULL;
	part->param_count = 0;

	if (digest_child) {
		set_type(part, "MESSAGE", "RFC822");
		return;
	}
	set_type(part, "TEXT", "PLAIN");
	part->params = xcalloc(1, sizeof *part->params);
	part->params[0].name = xstrdup("CHARSET");
	part->params[0].value = xstrdup("US-ASCII");
	part->param_count = 1;
}

static void
parse_content_type(struct mime_part *part, int digest_child)
{
	const struct header_field *field = header_find(&part->headers, "Content-Type");

	if (field == NULL || mime_parse_content_field(field->value, field->valuelen, 1,
	    &part->type, &part->subtype, &part->params, &part->param_count) < 0)
		set_default_type(part, digest_child);
}

static void
parse_encoding(struct mime_part *part)
{
	const struct header_field *field = header_find(&part->headers, "Content-Transfer-Encoding");
	char *subtype_unused = NULL;
	struct mime_param *params = NULL;
	size_t count = 0;

	if (field != NULL && mime_parse_content_field(field->value, field->valuelen, 0,
	    &part->encoding, &subtype_unused, &params, &count) == 0) {
		mime_params_free(params, count);
		return;
	}
	part->encoding = xstrdup("7BIT");
}

static void
parse_disposition(struct mime_part *part)
{
	const struct header_field *field = header_find(&part->headers, "Content-Disposition");

	if (field == NULL)
		return;
	(void)mime_parse_content_field(field->value, field->valuelen, 0, &part->disposition, NULL,
	    &part->disposition_params, &part->disposition_param_count);
}

static void
parse_content_fields(struct mime_part *part, int digest_child)
{
	const struct header_field *language = header_find(&part->headers, "Content-Language");

	parse_content_type(part, digest_child);
	parse_encoding(part);
	parse_disposition(part);
	part->id = unfold_field(part, "Content-ID");
	part->description = unfold_field(part, "Content-Description");
	part->md5 = unfold_field(part, "Content-MD5");
	part->location = unfold_field(part, "Content-Location");
	if (language != NULL)
		part->language_count = mime_parse_languages(language->value, language->valuelen,
		    &part->languages);
}

/*
 * Multipart bodies (RFC 2046 section 5.1.1). A delimiter line is "--"
 * boundary, optionally "--" for the last one, then optional whitespace.
 * The CRLF before a delimiter belongs to the delimiter, not the part.
 */
struct delimiter {
	size_t line_start;	/* the "--" */
	size_t next_line;	/* after the delimiter's line end */
	int close;
};

static int
match_delimiter(const char *line, size_t line_len, const char *boundary, size_t boundary_len,
    int *close)
{
	size_t i;

	if (line_len < boundary_len + 2 || line[0] != '-' || line[1] != '-' ||
	    memcmp(line + 2, boundary, boundary_len) != 0)
		return 0;

	i = boundary_len + 2;
	*close = 0;
	if (i + 1 < line_len && line[i] == '-' && line[i + 1] == '-') {
		*close = 1;
		i += 2;
	}
	while (i < line_len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
		i++;
	return i == line_len;
}

/* Find the next delimiter line at or after POS, before END. */
static int
find_delimiter(const char *data, size_t pos, size_t end, const char *boundary,
    struct delimiter *out)
{
	size_t boundary_len = strlen(boundary);

	while (pos < end) {
		const char *lf = memchr(data + pos, '\n', end - pos);
		size_t next = lf != NULL ? (size_t)(lf - data) + 1 : end;

		if (match_delimiter(data + pos, next - pos, boundary, boundary_len, &out->close)) {
			out->line_start = pos;
			out->next_line = next;
			return 1;
		}
		pos = next;
	}
	return 0;
}

/* Where a part that ends at the delimiter line starting at LINE_START
 * ends: before the CRLF that precedes the delimiter. */
static size_t
part_end(const char *data, size_t part_start, size_t line_start)
{
	if (line_start >= part_start + 2 && data[line_start - 2] == '\r' && data[line_start - 1] == '\n')
		return line_start - 2;
	if (line_start >= part_start + 1 && data[line_start - 1] == '\n')
		return line_start - 1;
	return line_start;
}

struct range {
	size_t start;
	size_t end;
};

/* Split the body of PART at its delimiters into RANGES (allocated). */
static size_t
split_multipart(struct parser *ps, const struct mime_part *part, const char *boundary,
    struct range **ranges)
{
	const char *data = ps->msg->data;
	size_t end = part->body_offset + part->body_len, count = 0, capacity = 0;
	struct delimiter delim;

	*ranges = NULL;
	if (!find_delimiter(data, part->body_offset, end, boundary, &delim))
		return 0;

	while (!delim.close) {
		size_t start = delim.next_line;
		struct range range = { start, end };
		int more = ps->part_count + count + 1 < MAX_PARTS &&
		    find_delimiter(data, start, end, boundary, &delim);

		if (more)
			range.end = part_end(data, start, delim.line_start);
		if (count == capacity) {
			capacity = capacity ? capacity * 2 : 8;
			*ranges = xrealloc(*ranges, capacity * sizeof **ranges);
		}
		(*ranges)[count++] = range;
		if (!more)
			break;
	}
	return count;
}

static void
parse_multipart(struct parser *ps, struct mime_part *part, size_t depth)
{
	const struct mime_param *boundary = mime_param_find(part->params, part->param_count,
	    "BOUNDARY");
	int digest = strcmp(part->subtype, "DIGEST") == 0;
	struct range *ranges = NULL;
	size_t count = 0;

	if (boundary == NULL || boundary->value[0] == '\0') {
		set_default_type(part, 0);
		return;
	}

	count = split_multipart(ps, part, boundary->value, &ranges);
	if (count == 0) {
		/* No delimiter at all: the body is all preamble. One empty
		 * part keeps the structure valid for IMAP, which requires at
		 * least one part in a multipart. */
		ranges = xmalloc(sizeof *ranges);
		ranges[0].start = ranges[0].end = part->body_offset + part->body_len;
		count = 1;
	}

	part->children = xcalloc(count, sizeof *part->children);
	part->child_count = count;
	ps->part_count += count;
	for (size_t i = 0; i < count; i++) {
		part->children[i].parent = part;
		parse_entity(ps, &part->children[i], ranges[i].start, ranges[i].end, depth + 1, digest);
	}
	free(ranges);
}

static void
parse_enclosed_message(struct parser *ps, struct mime_part *part, size_t depth)
{
	part->message = xcalloc(1, sizeof *part->message);
	part->message->parent = part;
	ps->part_count++;
	parse_entity(ps, part->message, part->body_offset, part->body_offset + part->body_len,
	    depth + 1, 0);
}

static int
is_message_type(const struct mime_part *part)
{
	return strcmp(part->type, "MESSAGE") == 0 &&
	    (strcmp(part->subtype, "RFC822") == 0 || strcmp(part->subtype, "GLOBAL") == 0);
}

static void
parse_entity(struct parser *ps, struct mime_part *part, size_t start, size_t end, size_t depth,
    int digest_child)
{
	const char *data = ps->msg->data;
	int multipart, message;

	part->offset = start;
	if (header_parse(data + start, end - start, &part->headers) < 0)
		abort();
	part->header_len = part->headers.body_offset;
	part->body_offset = start + part->headers.body_offset;
	part->body_len = end - part->body_offset;
	part->body_lines = count_lines(data + part->body_offset, part->body_len);

	parse_content_fields(part, digest_child);
	multipart = strcmp(part->type, "MULTIPART") == 0;
	message = is_message_type(part);
	if ((multipart || message) && (depth >= MIME_MAX_DEPTH || ps->part_count >= MAX_PARTS)) {
		mime_params_free(part->params, part->param_count);
		part->params = NULL;
		part->param_count = 0;
		set_type(part, "APPLICATION", "OCTET-STREAM");
		return;
	}

	if (multipart)
		parse_multipart(ps, part, depth);
	else if (message)
		parse_enclosed_message(ps, part, depth);
}

struct mime_message *
mime_parse(const char *data, size_t len)
{
	struct mime_message *msg = calloc(1, sizeof *msg);
	struct parser ps = { msg, 1 };

	if (msg == NULL)
		return NULL;
	msg->data = to_crlf(data, len, &msg->len);
	if (msg->data == NULL) {
		free(msg);
		return NULL;
	}

	parse_entity(&ps, &msg->root, 0, msg->len, 0, 0);
	return msg;
}

static void
free_part(struct mime_part *part)
{
	for (size_t i = 0; i < part->child_count; i++)
		free_part(&part->children[i]);
	free(part->children);
	if (part->message != NULL) {
		free_part(part->message);
		free(part->message);
	}

	header_list_free(&part->headers);
	free(part->type);
	free(part->subtype);
	mime_params_free(part->params, part->param_count);
	free(part->encoding);
	free(part->id);
	free(part->description);
	free(part->md5);
	free(part->disposition);
	mime_params_free(part->disposition_params, part->disposition_param_count);
	for (size_t i = 0; i < part->language_count; i++)
		free(part->languages[i]);
	free(part->languages);
	free(part->location);
}

void
mime_free(struct mime_message *msg)
{
	if (msg == NULL)
		return;
	free_part(&msg->root);
	free(msg->data);
	free(msg);
}

const struct mime_param *
mime_param_find(const struct mime_param *params, size_t count, const char *name)
{
	for (size_t i = 0; i < count; i++)
		if (ascii_casecmp(params[i].name, name) == 0)
			return &params[i];
	return NULL;
}
