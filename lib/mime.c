/*
 * Parsing a message into a tree of MIME parts (RFC 2045, RFC 2046):
 * content fields of each part, multipart boundaries and enclosed
 * message/rfc822 messages.
 */
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

/* Parts in one message beyond this are not split out: the rest of a
 * multipart body after the last part counted is ignored. */
#define MAX_PARTS 10000

/*
 * The parse is one pass over the message. Every open multipart pushes
 * its boundary, and a line that is a delimiter for any open boundary
 * ends the entity being read. The innermost boundary is matched first,
 * so a nested multipart that reuses its parent's boundary still gets
 * its own parts.
 */
struct parser {
	struct mime_message *msg;
	size_t part_count;
	const char *boundaries[MIME_MAX_DEPTH + 1];
	size_t boundary_count;
};

/* A delimiter line: "--" boundary, then "--" for the close delimiter,
 * then optional whitespace (RFC 2046 section 5.1.1). */
struct delimiter {
	size_t line_start;
	size_t next_line;	/* after the delimiter's line end */
	size_t boundary;	/* index into parser.boundaries */
	int close;
};

static size_t parse_entity(struct parser *ps, struct mime_part *part, size_t start, size_t limit,
    size_t depth, int digest_child, struct delimiter *stop);

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

/* Lines as IMAP servers count them: the number of line ends, so a last
 * line without one is not counted (Dovecot 2.3 counts the same way). */
static size_t
count_lines(const char *p, size_t len)
{
	size_t lines = 0;

	for (size_t i = 0; i < len; i++)
		if (p[i] == '\n')
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

static void
clear_params(struct mime_part *part)
{
	mime_params_free(part->params, part->param_count);
	part->params = NULL;
	part->param_count = 0;
}

static void
add_param(struct mime_part *part, const char *name, const char *value)
{
	part->params = xrealloc(part->params, (part->param_count + 1) * sizeof *part->params);
	memset(&part->params[part->param_count], 0, sizeof *part->params);
	part->params[part->param_count].name = xstrdup(name);
	part->params[part->param_count].value = xstrdup(value);
	part->param_count++;
}

/* RFC 2045 section 5.2: no Content-Type, or one that cannot be parsed,
 * means text/plain; charset=us-ascii. In a multipart/digest the default
 * is message/rfc822 (RFC 2046 section 5.1.5). */
static void
set_default_type(struct mime_part *part, int digest_child)
{
	clear_params(part);
	if (digest_child)
		set_type(part, "MESSAGE", "RFC822");
	else
		set_type(part, "TEXT", "PLAIN");
}

/* Text without a charset parameter is US-ASCII (RFC 2046 section
 * 4.1.2), and the parameter is added so that clients see it, as
 * Dovecot does. */
static void
add_default_charset(struct mime_part *part)
{
	if (strcmp(part->type, "TEXT") == 0 &&
	    mime_param_find(part->params, part->param_count, "CHARSET") == NULL &&
	    mime_param_find(part->params, part->param_count, "CHARSET*") == NULL)
		add_param(part, "CHARSET", "US-ASCII");
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
	struct mime_param *params = NULL;
	size_t count = 0;

	if (field != NULL && mime_parse_content_field(field->value, field->valuelen, 0,
	    &part->encoding, NULL, &params, &count) == 0) {
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

static int
match_boundary(const char *line, size_t line_len, const char *boundary, int *close)
{
	size_t boundary_len = strlen(boundary), i;

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

/* Find the first delimiter line of an open boundary at or after POS.
 * Returns 0 and sets OUT->line_start to LIMIT if there is none. */
static int
find_delimiter(const struct parser *ps, size_t pos, size_t limit, struct delimiter *out)
{
	const char *data = ps->msg->data;

	while (pos < limit && ps->boundary_count > 0) {
		const char *lf = memchr(data + pos, '\n', limit - pos);
		size_t next = lf != NULL ? (size_t)(lf - data) + 1 : limit;

		if (data[pos] == '-') {
			for (size_t i = ps->boundary_count; i-- > 0;) {
				if (match_boundary(data + pos, next - pos, ps->boundaries[i], &out->close)) {
					out->line_start = pos;
					out->next_line = next;
					out->boundary = i;
					return 1;
				}
			}
		}
		pos = next;
	}
	memset(out, 0, sizeof *out);
	out->line_start = limit;
	out->next_line = limit;
	return 0;
}

/* Where an entity that starts at START ends when the delimiter line at
 * LINE_START follows: before the line end that precedes the delimiter,
 * which belongs to the delimiter. */
static size_t
entity_end(const char *data, size_t start, size_t line_start)
{
	if (line_start >= start + 2 && data[line_start - 2] == '\r' && data[line_start - 1] == '\n')
		return line_start - 2;
	if (line_start >= start + 1 && data[line_start - 1] == '\n')
		return line_start - 1;
	return line_start;
}

/* Moving the children array leaves their own children and enclosed
 * messages pointing at the old place. */
static void
relink_children(struct mime_part *part)
{
	for (size_t i = 0; i < part->child_count; i++) {
		struct mime_part *child = &part->children[i];

		child->parent = part;
		for (size_t j = 0; j < child->child_count; j++)
			child->children[j].parent = child;
		if (child->message != NULL)
			child->message->parent = child;
	}
}

static struct mime_part *
add_child(struct mime_part *part, size_t *capacity)
{
	struct mime_part *child;

	if (part->child_count == *capacity) {
		*capacity = *capacity ? *capacity * 2 : 4;
		part->children = xrealloc(part->children, *capacity * sizeof *part->children);
		relink_children(part);
	}
	child = &part->children[part->child_count++];
	memset(child, 0, sizeof *child);
	child->parent = part;
	return child;
}

/*
 * Read the parts of a multipart body. Returns where the body ends: at
 * LIMIT, or before the delimiter of an enclosing multipart, which is
 * stored in STOP. Preamble and epilogue belong to no part.
 */
static size_t
parse_multipart(struct parser *ps, struct mime_part *part, const char *boundary, size_t limit,
    size_t depth, struct delimiter *stop)
{
	const char *data = ps->msg->data;
	size_t own = ps->boundary_count, capacity = 0, end;
	int digest = strcmp(part->subtype, "DIGEST") == 0;
	struct delimiter delim;

	ps->boundaries[ps->boundary_count++] = boundary;
	find_delimiter(ps, part->body_offset, limit, &delim);

	while (delim.line_start < limit && delim.boundary == own && !delim.close &&
	    ps->part_count < MAX_PARTS) {
		struct mime_part *child = add_child(part, &capacity);

		ps->part_count++;
		parse_entity(ps, child, delim.next_line, limit, depth + 1, digest, &delim);
	}

	/* After the close delimiter comes the epilogue, which runs to a
	 * delimiter of an enclosing multipart. Past the part limit, the
	 * rest of the body is treated the same way. */
	ps->boundary_count = own;
	if (delim.line_start < limit && delim.boundary == own)
		find_delimiter(ps, delim.next_line, limit, &delim);
	*stop = delim;
	end = delim.line_start < limit ? entity_end(data, part->body_offset, delim.line_start) : limit;

	if (part->child_count == 0) {
		/* No delimiter at all: the body is all preamble. One empty
		 * part keeps the structure valid for IMAP, which requires at
		 * least one part in a multipart. It is text/plain even in a
		 * digest, because an empty message/rfc822 has no envelope. */
		struct mime_part *child = add_child(part, &capacity);

		ps->part_count++;
		child->offset = child->body_offset = end;
		header_parse(data + end, 0, &child->headers);
		parse_content_fields(child, 0);
		add_default_charset(child);
	}
	return end;
}

static int
is_message_type(const struct mime_part *part)
{
	return strcmp(part->type, "MESSAGE") == 0 &&
	    (strcmp(part->subtype, "RFC822") == 0 || strcmp(part->subtype, "GLOBAL") == 0);
}

/* Structure beyond the depth or part limits is not parsed. */
static void
make_opaque(struct mime_part *part)
{
	clear_params(part);
	set_type(part, "APPLICATION", "OCTET-STREAM");
}

/*
 * Parse the entity (header and body) that starts at START. It ends at
 * LIMIT or before the next delimiter line of an open multipart, which
 * is stored in STOP. Returns the end of its body.
 */
static size_t
parse_entity(struct parser *ps, struct mime_part *part, size_t start, size_t limit, size_t depth,
    int digest_child, struct delimiter *stop)
{
	const char *data = ps->msg->data;
	const struct mime_param *boundary;
	size_t end;

	find_delimiter(ps, start, limit, stop);
	part->offset = start;
	if (header_parse(data + start, stop->line_start - start, &part->headers) < 0)
		abort();	/* only on allocation failure */
	part->header_len = part->headers.body_offset;
	part->body_offset = start + part->headers.body_offset;

	parse_content_fields(part, digest_child);
	if (strcmp(part->type, "MULTIPART") == 0) {
		boundary = mime_param_find(part->params, part->param_count, "BOUNDARY");
		if (boundary == NULL || boundary->value[0] == '\0')
			set_default_type(part, 0);
	}
	add_default_charset(part);

	if ((strcmp(part->type, "MULTIPART") == 0 || is_message_type(part)) &&
	    (depth >= MIME_MAX_DEPTH || ps->part_count >= MAX_PARTS))
		make_opaque(part);

	if (strcmp(part->type, "MULTIPART") == 0) {
		boundary = mime_param_find(part->params, part->param_count, "BOUNDARY");
		end = parse_multipart(ps, part, boundary->value, limit, depth, stop);
	} else if (is_message_type(part)) {
		/* NOTE: a base64 or quoted-printable enclosed message (valid
		 * for message/global, RFC 6532 section 3.5) is parsed as it
		 * is, not decoded, so its envelope and parts are garbled. */
		part->message = xcalloc(1, sizeof *part->message);
		part->message->parent = part;
		ps->part_count++;
		end = parse_entity(ps, part->message, part->body_offset, limit, depth + 1, 0, stop);
	} else if (stop->line_start < limit) {
		end = entity_end(data, part->body_offset, stop->line_start);
	} else {
		end = limit;
	}

	part->body_len = end - part->body_offset;
	part->body_lines = count_lines(data + part->body_offset, part->body_len);
	return end;
}

struct mime_message *
mime_parse(const char *data, size_t len)
{
	struct mime_message *msg = calloc(1, sizeof *msg);
	struct parser ps = { .msg = msg, .part_count = 1 };
	struct delimiter stop;

	if (msg == NULL)
		return NULL;
	msg->data = to_crlf(data, len, &msg->len);
	if (msg->data == NULL) {
		free(msg);
		return NULL;
	}

	parse_entity(&ps, &msg->root, 0, msg->len, 0, 0, &stop);
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
