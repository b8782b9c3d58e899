/* RFC 5322 header section parsing and address-list extraction. */
#include <stdlib.h>
#include <string.h>

#include "header.h"
#include "util.h"

/* RFC 5322 section 2.2: a field name is printable US-ASCII except the colon. */
static int
is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Length of the line at P, line end included (LF, CRLF or end of input). */
static size_t
line_length(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));

	return lf != NULL ? (size_t)(lf - p) + 1 : (size_t)(end - p);
}

/* Whether the line of LEN bytes at P contains nothing but its line end. */
static int
line_is_empty(const char *p, size_t len)
{
	return len == 0 || (len == 1 && p[0] == '\n') ||
	    (len == 2 && p[0] == '\r' && p[1] == '\n');
}

/* Length of a field name that starts the line at P, or 0 if the line is
 * not a field. Whitespace before the colon is obsolete syntax
 * (RFC 5322 section 4.5) and accepted. */
static size_t
field_name_length(const char *p, size_t len, size_t *colon)
{
	size_t i = 0, name_len;

	while (i < len && is_ftext((unsigned char)p[i]))
		i++;
	name_len = i;
	if (name_len == 0)
		return 0;
	while (i < len && is_wsp(p[i]))
		i++;
	if (i >= len || p[i] != ':')
		return 0;
	*colon = i;
	return name_len;
}

static int
header_list_append(struct header_list *list, const struct header_field *field)
{
	if (list->count == list->capacity) {
		size_t capacity = list->capacity ? list->capacity * 2 : 16;
		struct header_field *fields = realloc(list->fields, capacity * sizeof *fields);

		if (fields == NULL)
			return -1;
		list->fields = fields;
		list->capacity = capacity;
	}
	list->fields[list->count++] = *field;
	return 0;
}

/* Length of the line end at the end of the field text P..P+LEN. */
static size_t
trailing_line_end(const char *p, size_t len)
{
	if (len >= 2 && p[len - 2] == '\r' && p[len - 1] == '\n')
		return 2;
	if (len >= 1 && p[len - 1] == '\n')
		return 1;
	return 0;
}

int
header_parse(const char *msg, size_t len, struct header_list *out)
{
	const char *p = msg, *end = msg + len;

	memset(out, 0, sizeof *out);

	while (p < end) {
		struct header_field field;
		size_t line_len = line_length(p, end), colon = 0, name_len;

		if (line_is_empty(p, line_len)) {
			out->header_len = (size_t)(p - msg);
			out->body_offset = (size_t)(p - msg) + line_len;
			return 0;
		}

		name_len = field_name_length(p, line_len, &colon);
		if (name_len == 0)
			break;

		/* The field continues over every following line that starts
		 * with whitespace (folding, RFC 5322 section 2.2.3). */
		field.start = p;
		field.name = p;
		field.namelen = name_len;
		p += line_len;
		while (p < end && is_wsp(*p)) {
			size_t next_len = line_length(p, end);

			p += next_len;
		}
		field.len = (size_t)(p - field.start);
		field.value = field.start + colon + 1;
		field.valuelen = field.len - (colon + 1) - trailing_line_end(field.start, field.len);

		if (header_list_append(out, &field) < 0) {
			header_list_free(out);
			return -1;
		}
	}

	/* No empty line: the header ends at the end of the message or at the
	 * first line that is not a field, which then starts the body. */
	out->header_len = (size_t)(p - msg);
	out->body_offset = (size_t)(p - msg);
	return 0;
}

void
header_list_free(struct header_list *list)
{
	free(list->fields);
	memset(list, 0, sizeof *list);
}

const struct header_field *
header_find(const struct header_list *list, const char *name)
{
	size_t name_len = strlen(name);

	for (size_t i = 0; i < list->count; i++) {
		const struct header_field *field = &list->fields[i];

		if (field->namelen == name_len && ascii_ncasecmp(field->name, name, name_len) == 0)
			return field;
	}
	return NULL;
}

char *
header_unfold(const struct header_field *field)
{
	char *out = xmalloc(field->valuelen + 1);
	const char *p = field->value, *end = field->value + field->valuelen;
	size_t n = 0, lead = 0;

	while (p < end) {
		if (*p == '\r' && p + 1 < end && p[1] == '\n') {
			p += 2;
			continue;
		}
		if (*p == '\n') {
			p++;
			continue;
		}
		out[n++] = *p++;
	}

	while (n > 0 && is_wsp(out[n - 1]))
		n--;
	out[n] = '\0';

	while (is_wsp(out[lead]))
		lead++;
	memmove(out, out + lead, n - lead + 1);
	return out;
}

/*
 * Address-list scanning. One pass over the value splits it into
 * mailboxes at top-level commas, drops comments, display names and group
 * names, and keeps the text between angle brackets when there is any.
 */
struct addr_scan {
	char *plain;		/* text outside comments and angle brackets */
	size_t plain_len;
	char *angle;		/* text inside angle brackets, comments dropped */
	size_t angle_len;
	int has_angle;
	char **out;
	size_t max;
	size_t found;
};

/* Drop whitespace outside quoted strings and a leading source route
 * ("@a,@b:"), returning a new string or NULL when nothing is left. */
static char *
addr_spec_clean(const char *text, size_t len)
{
	char *spec = xmalloc(len + 1), *start;
	size_t n = 0;
	int quoted = 0;

	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (quoted && c == '\\' && i + 1 < len) {
			spec[n++] = c;
			spec[n++] = text[++i];
			continue;
		}
		if (c == '"')
			quoted = !quoted;
		if (!quoted && (is_wsp(c) || c == '\r' || c == '\n'))
			continue;
		spec[n++] = c;
	}
	spec[n] = '\0';

	start = spec;
	if (*start == '@') {
		char *colon = strchr(start, ':');

		if (colon != NULL)
			start = colon + 1;
	}
	if (*start == '\0') {
		free(spec);
		return NULL;
	}
	memmove(spec, start, strlen(start) + 1);
	return spec;
}

static void
addr_scan_finish(struct addr_scan *scan)
{
	char *spec;

	if (scan->has_angle)
		spec = addr_spec_clean(scan->angle, scan->angle_len);
	else
		spec = addr_spec_clean(scan->plain, scan->plain_len);

	if (spec != NULL) {
		if (scan->found < scan->max)
			scan->out[scan->found] = spec;
		else
			free(spec);
		scan->found++;
	}
	scan->plain_len = 0;
	scan->angle_len = 0;
	scan->has_angle = 0;
}

size_t
header_addresses(const char *value, char **out, size_t max)
{
	size_t len = strlen(value);
	struct addr_scan scan = {
		.plain = xmalloc(len + 1),
		.angle = xmalloc(len + 1),
		.out = out,
		.max = max,
	};
	int quoted = 0, in_angle = 0, in_literal = 0, comment_depth = 0;

	for (size_t i = 0; i < len; i++) {
		char c = value[i];

		if (comment_depth > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				comment_depth++;
			else if (c == ')')
				comment_depth--;
			continue;
		}

		/* Quoted strings and domain literals are copied as they are. */
		if (quoted || in_literal) {
			if (c == '\\' && i + 1 < len) {
				if (in_angle) {
					scan.angle[scan.angle_len++] = c;
					scan.angle[scan.angle_len++] = value[i + 1];
				} else {
					scan.plain[scan.plain_len++] = c;
					scan.plain[scan.plain_len++] = value[i + 1];
				}
				i++;
				continue;
			}
			if (quoted && c == '"')
				quoted = 0;
			if (in_literal && c == ']')
				in_literal = 0;
		} else if (c == '(') {
			comment_depth = 1;
			continue;
		} else if (c == '"') {
			quoted = 1;
		} else if (c == '[') {
			in_literal = 1;
		} else if (c == '<' && !in_angle) {
			in_angle = 1;
			scan.has_angle = 1;
			scan.angle_len = 0;
			continue;
		} else if (c == '>' && in_angle) {
			in_angle = 0;
			continue;
		} else if (!in_angle && c == ':') {
			/* A group name ("undisclosed-recipients:") is discarded. */
			scan.plain_len = 0;
			continue;
		} else if (!in_angle && (c == ',' || c == ';')) {
			addr_scan_finish(&scan);
			continue;
		}

		if (in_angle)
			scan.angle[scan.angle_len++] = c;
		else
			scan.plain[scan.plain_len++] = c;
	}
	addr_scan_finish(&scan);

	free(scan.plain);
	free(scan.angle);
	return scan.found;
}
