/* FETCH BODY[section] and BINARY[section] (RFC 3501 section 6.4.5,
 * RFC 3516). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

/* Field names in one HEADER.FIELDS list. */
#define MAX_FIELDS 256

struct cursor {
	const char *p;
	const char *end;
};

/* Consume KEYWORD if it comes next, case-insensitive. */
static int
accept_keyword(struct cursor *c, const char *keyword)
{
	size_t len = strlen(keyword);

	if ((size_t)(c->end - c->p) < len || ascii_ncasecmp(c->p, keyword, len) != 0)
		return 0;
	c->p += len;
	return 1;
}

/* section-part: nz-number *("." nz-number), each followed by '.' or
 * the end. Stops before a '.' that is followed by a keyword. */
static int
parse_part_path(struct cursor *c, struct mime_section *out)
{
	while (c->p < c->end && isdigit((unsigned char)*c->p)) {
		unsigned long number = 0;

		if (*c->p == '0' || out->path_len == MIME_MAX_DEPTH)
			return -1;
		while (c->p < c->end && isdigit((unsigned char)*c->p)) {
			number = number * 10 + (unsigned long)(*c->p - '0');
			if (number > 0xffffffffUL)
				return -1;
			c->p++;
		}
		out->path[out->path_len++] = (unsigned int)number;

		if (c->p == c->end)
			return 0;
		if (*c->p != '.')
			return -1;
		if (c->p + 1 < c->end && isdigit((unsigned char)c->p[1]))
			c->p++;
		else
			break;
	}
	if (out->path_len > 0) {
		if (c->p == c->end || *c->p != '.')
			return -1;
		c->p++;
		if (c->p == c->end)
			return -1;
	}
	return 0;
}

/* One header-fld-name: an atom or a quoted string. */
static char *
parse_field_name(struct cursor *c)
{
	const char *start;

	if (c->p < c->end && *c->p == '"') {
		struct mime_buf buf = { 0 };

		for (c->p++; c->p < c->end && *c->p != '"'; c->p++) {
			if (*c->p == '\\' && c->p + 1 < c->end)
				c->p++;
			mime_buf_add_char(&buf, *c->p);
		}
		if (c->p == c->end) {
			free(buf.data);
			return NULL;
		}
		c->p++;
		return mime_buf_take(&buf, NULL);
	}

	start = c->p;
	while (c->p < c->end && (unsigned char)*c->p > ' ' && *c->p != '(' && *c->p != ')' &&
	    *c->p != '"' && (unsigned char)*c->p < 127)
		c->p++;
	if (c->p == start)
		return NULL;
	return xstrndup(start, (size_t)(c->p - start));
}

/* SP "(" header-fld-name *(SP header-fld-name) ")" */
static int
parse_field_list(struct cursor *c, struct mime_section *out)
{
	if (!accept_keyword(c, " ("))
		return -1;
	for (;;) {
		char *name = parse_field_name(c);

		if (name == NULL || out->field_count == MAX_FIELDS) {
			free(name);
			return -1;
		}
		out->fields = xrealloc(out->fields, (out->field_count + 1) * sizeof *out->fields);
		out->fields[out->field_count++] = name;
		if (accept_keyword(c, ")"))
			return 0;
		if (!accept_keyword(c, " "))
			return -1;
	}
}

static int
parse_section_text(struct cursor *c, struct mime_section *out)
{
	if (c->p == c->end) {
		out->kind = MIME_SECTION_ALL;
		return 0;
	}
	if (accept_keyword(c, "HEADER.FIELDS.NOT")) {
		out->kind = MIME_SECTION_HEADER_FIELDS_NOT;
		return parse_field_list(c, out);
	}
	if (accept_keyword(c, "HEADER.FIELDS")) {
		out->kind = MIME_SECTION_HEADER_FIELDS;
		return parse_field_list(c, out);
	}
	if (accept_keyword(c, "HEADER")) {
		out->kind = MIME_SECTION_HEADER;
		return 0;
	}
	if (accept_keyword(c, "TEXT")) {
		out->kind = MIME_SECTION_TEXT;
		return 0;
	}
	if (out->path_len > 0 && accept_keyword(c, "MIME")) {
		out->kind = MIME_SECTION_MIME;
		return 0;
	}
	return -1;
}

int
mime_section_parse(const char *text, size_t len, struct mime_section *out)
{
	struct cursor c = { text, text + len };

	memset(out, 0, sizeof *out);
	if (parse_part_path(&c, out) < 0 || parse_section_text(&c, out) < 0 || c.p != c.end) {
		mime_section_free(out);
		return -1;
	}
	return 0;
}

void
mime_section_free(struct mime_section *section)
{
	for (size_t i = 0; i < section->field_count; i++)
		free(section->fields[i]);
	free(section->fields);
	memset(section, 0, sizeof *section);
}

/*
 * Part numbers count the parts of a multipart. A message/rfc822 part is
 * entered first, so 2.1 is the first part of the message in part 2. An
 * entity that is not multipart has one part, itself, numbered 1, but
 * only right after the message that contains it was entered (1 of a
 * plain text message, or 2.1 when part 2 encloses a plain message).
 */
const struct mime_part *
mime_section_part(const struct mime_message *msg, const struct mime_section *section)
{
	const struct mime_part *part = &msg->root;
	int entered = 1;

	for (size_t i = 0; i < section->path_len; i++) {
		unsigned int number = section->path[i];

		if (!entered && part->message != NULL) {
			part = part->message;
			entered = 1;
		}
		if (part->child_count > 0) {
			if (number > part->child_count)
				return NULL;
			part = &part->children[number - 1];
		} else if (number != 1 || !entered) {
			return NULL;
		}
		entered = 0;
	}
	return part;
}

static int
field_listed(const struct header_field *field, const struct mime_section *section)
{
	for (size_t i = 0; i < section->field_count; i++) {
		const char *name = section->fields[i];

		if (strlen(name) == field->namelen && ascii_ncasecmp(field->name, name, field->namelen) == 0)
			return 1;
	}
	return 0;
}

/* HEADER.FIELDS and HEADER.FIELDS.NOT: the chosen fields in message
 * order, then the empty line that ends a header. */
static char *
render_fields(const struct mime_part *part, const struct mime_section *section, size_t *len)
{
	struct mime_buf buf = { 0 };
	int want = section->kind == MIME_SECTION_HEADER_FIELDS;

	for (size_t i = 0; i < part->headers.count; i++) {
		const struct header_field *field = &part->headers.fields[i];

		if (field_listed(field, section) != want)
			continue;
		mime_buf_add(&buf, field->start, field->len);
		if (field->len == 0 || field->start[field->len - 1] != '\n')
			mime_buf_add_str(&buf, "\r\n");
	}
	mime_buf_add_str(&buf, "\r\n");
	return mime_buf_take(&buf, len);
}

static void
set_range(const struct mime_message *msg, size_t offset, size_t len, struct mime_section_data *out)
{
	out->data = msg->data + offset;
	out->len = len;
}

int
mime_section_fetch(const struct mime_message *msg, const struct mime_section *section,
    struct mime_section_data *out)
{
	const struct mime_part *part = mime_section_part(msg, section);
	const struct mime_part *target;

	memset(out, 0, sizeof *out);
	out->data = "";
	if (part == NULL)
		return -1;

	if (section->kind == MIME_SECTION_ALL) {
		if (section->path_len == 0)
			set_range(msg, 0, msg->len, out);
		else
			set_range(msg, part->body_offset, part->body_len, out);
		return 0;
	}
	if (section->kind == MIME_SECTION_MIME) {
		set_range(msg, part->offset, part->header_len, out);
		return 0;
	}

	/* HEADER, HEADER.FIELDS and TEXT of a part number apply to the
	 * message that a message/rfc822 part encloses; other parts have
	 * none, which gives empty data. */
	target = section->path_len == 0 ? part : part->message;
	if (target == NULL)
		return 0;

	switch (section->kind) {
	case MIME_SECTION_HEADER:
		set_range(msg, target->offset, target->header_len, out);
		break;
	case MIME_SECTION_TEXT:
		set_range(msg, target->body_offset, target->body_len, out);
		break;
	case MIME_SECTION_HEADER_FIELDS:
	case MIME_SECTION_HEADER_FIELDS_NOT:
		out->owned = render_fields(target, section, &out->len);
		out->data = out->owned;
		break;
	default:
		break;
	}
	return 0;
}

static int
is_identity_encoding(const char *encoding)
{
	return strcmp(encoding, "7BIT") == 0 || strcmp(encoding, "8BIT") == 0 ||
	    strcmp(encoding, "BINARY") == 0;
}

int
mime_binary_decode(const struct mime_message *msg, const struct mime_part *part, char **out,
    size_t *out_len)
{
	const char *body = msg->data + part->body_offset;

	*out = NULL;
	*out_len = 0;
	if (part->child_count > 0 || part->message != NULL || is_identity_encoding(part->encoding)) {
		*out = xmalloc(part->body_len + 1);
		memcpy(*out, body, part->body_len);
		(*out)[part->body_len] = '\0';
		*out_len = part->body_len;
		return 0;
	}
	if (strcmp(part->encoding, "BASE64") == 0) {
		*out = mime_base64_decode(body, part->body_len, out_len);
		return 0;
	}
	if (strcmp(part->encoding, "QUOTED-PRINTABLE") == 0) {
		*out = mime_qp_decode(body, part->body_len, out_len);
		return 0;
	}
	return MIME_UNKNOWN_CTE;
}

int
mime_binary_fetch(const struct mime_message *msg, const struct mime_section *section, char **out,
    size_t *out_len)
{
	const struct mime_part *part = mime_section_part(msg, section);

	*out = NULL;
	*out_len = 0;
	if (part == NULL)
		return -1;
	if (section->path_len == 0) {
		*out = xmalloc(msg->len + 1);
		memcpy(*out, msg->data, msg->len + 1);
		*out_len = msg->len;
		return 0;
	}
	return mime_binary_decode(msg, part, out, out_len);
}
