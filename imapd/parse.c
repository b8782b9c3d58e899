/* Tokenizer for IMAP command arguments (see parse.h). */
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "util.h"

void
imap_parser_init(struct imap_parser *parser, const char *data, size_t len)
{
	parser->p = data;
	parser->end = data + len;
}

int
imap_parse_at_end(const struct imap_parser *parser)
{
	return parser->p == parser->end;
}

int
imap_parse_peek(const struct imap_parser *parser, char c)
{
	return parser->p < parser->end && *parser->p == c;
}

int
imap_parse_char(struct imap_parser *parser, char c)
{
	if (!imap_parse_peek(parser, c))
		return -1;
	parser->p++;
	return 0;
}

int
imap_parse_sp(struct imap_parser *parser)
{
	return imap_parse_char(parser, ' ');
}

/* ATOM-CHAR: any CHAR except atom-specials: ( ) { SP CTL % * " \ ] */
int
imap_is_atom_char(unsigned char c)
{
	if (c <= 0x1f || c >= 0x7f)
		return 0;
	return strchr("(){ %*\"\\]", c) == NULL;
}

static int
parse_chars(struct imap_parser *parser, char *out, size_t outsize, int (*accept)(unsigned char))
{
	const char *start = parser->p;
	size_t len;

	while (parser->p < parser->end && accept((unsigned char)*parser->p))
		parser->p++;
	len = (size_t)(parser->p - start);
	if (len == 0 || len >= outsize) {
		parser->p = start;
		return -1;
	}
	memcpy(out, start, len);
	out[len] = '\0';
	return 0;
}

int
imap_parse_atom(struct imap_parser *parser, char *out, size_t outsize)
{
	return parse_chars(parser, out, outsize, imap_is_atom_char);
}

static int
is_tag_char(unsigned char c)
{
	return (imap_is_atom_char(c) || c == ']') && c != '+';
}

int
imap_parse_tag(struct imap_parser *parser, char *out, size_t outsize)
{
	return parse_chars(parser, out, outsize, is_tag_char);
}

static int
is_astring_char(unsigned char c)
{
	return imap_is_atom_char(c) || c == ']';
}

static int
parse_quoted(struct imap_parser *parser, struct imap_string *out)
{
	const char *p = parser->p + 1;
	char *copy;
	size_t n = 0;

	copy = xmalloc((size_t)(parser->end - parser->p) + 1);
	for (;; p++) {
		if (p >= parser->end || *p == '\r' || *p == '\n' || *p == '\0')
			goto invalid;
		if (*p == '"')
			break;
		if (*p == '\\') {
			p++;
			if (p >= parser->end || (*p != '"' && *p != '\\'))
				goto invalid;
		}
		copy[n++] = *p;
	}
	copy[n] = '\0';
	out->owned = copy;
	out->data = copy;
	out->len = n;
	parser->p = p + 1;
	return 0;

invalid:
	free(copy);
	return -1;
}

/* {n}CRLF or {n+}CRLF followed by n bytes (imap_io put them inline). */
static int
parse_literal(struct imap_parser *parser, struct imap_string *out)
{
	const char *p = parser->p + 1;
	unsigned long long n = 0;
	int digits = 0;

	while (p < parser->end && *p >= '0' && *p <= '9' && digits < 11) {
		n = n * 10 + (unsigned long long)(*p - '0');
		p++;
		digits++;
	}
	if (digits == 0 || digits > 10)
		return -1;
	if (p < parser->end && *p == '+')
		p++;
	if (parser->end - p < 3 || memcmp(p, "}\r\n", 3) != 0)
		return -1;
	p += 3;
	if ((unsigned long long)(parser->end - p) < n)
		return -1;
	out->owned = NULL;
	out->data = p;
	out->len = (size_t)n;
	parser->p = p + n;
	return 0;
}

int
imap_parse_string(struct imap_parser *parser, struct imap_string *out)
{
	memset(out, 0, sizeof *out);
	if (imap_parse_peek(parser, '"'))
		return parse_quoted(parser, out);
	if (imap_parse_peek(parser, '{'))
		return parse_literal(parser, out);
	return -1;
}

int
imap_parse_astring(struct imap_parser *parser, struct imap_string *out)
{
	const char *start = parser->p;

	if (imap_parse_string(parser, out) == 0)
		return 0;
	while (parser->p < parser->end && is_astring_char((unsigned char)*parser->p))
		parser->p++;
	if (parser->p == start)
		return -1;
	out->owned = NULL;
	out->data = start;
	out->len = (size_t)(parser->p - start);
	return 0;
}

char *
imap_parse_astring_dup(struct imap_parser *parser, size_t max)
{
	const char *start = parser->p;
	struct imap_string string;
	char *copy;

	if (imap_parse_astring(parser, &string) < 0)
		return NULL;
	if (string.len > max || memchr(string.data, '\0', string.len) != NULL) {
		imap_string_free(&string);
		parser->p = start;
		return NULL;
	}
	copy = xstrndup(string.data, string.len);
	imap_string_free(&string);
	return copy;
}

void
imap_string_free(struct imap_string *string)
{
	free(string->owned);
	string->owned = NULL;
}

int
imap_parse_number64(struct imap_parser *parser, uint64_t *out)
{
	const char *p = parser->p;
	uint64_t n = 0;

	if (p >= parser->end || *p < '0' || *p > '9')
		return -1;
	while (p < parser->end && *p >= '0' && *p <= '9') {
		if (n > (UINT64_MAX >> 1) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
		p++;
	}
	parser->p = p;
	*out = n;
	return 0;
}

int
imap_parse_number(struct imap_parser *parser, uint32_t *out)
{
	const char *start = parser->p;
	uint64_t n;

	if (imap_parse_number64(parser, &n) < 0)
		return -1;
	if (n > UINT32_MAX) {
		parser->p = start;
		return -1;
	}
	*out = (uint32_t)n;
	return 0;
}

/* seq-number: nz-number, or '*' (STAR set). 4294967295 is a number,
 * not '*'. */
static int
parse_seq_number(struct imap_parser *parser, uint32_t *out, int *star)
{
	*star = imap_parse_char(parser, '*') == 0;
	if (*star) {
		*out = 0;
		return 0;
	}
	if (imap_parse_number(parser, out) < 0 || *out == 0)
		return -1;
	return 0;
}

int
imap_parse_seqset(struct imap_parser *parser, struct imap_seqset *out)
{
	const char *start = parser->p;
	size_t cap = 0;

	memset(out, 0, sizeof *out);
	do {
		struct imap_range range;

		if (parse_seq_number(parser, &range.first, &range.first_star) < 0)
			goto invalid;
		range.last = range.first;
		range.last_star = range.first_star;
		if (imap_parse_char(parser, ':') == 0 &&
		    parse_seq_number(parser, &range.last, &range.last_star) < 0)
			goto invalid;
		if (!range.first_star && !range.last_star && range.first > range.last) {
			uint32_t swap = range.first;

			range.first = range.last;
			range.last = swap;
		}
		if (out->count == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			out->ranges = xrealloc(out->ranges, cap * sizeof *out->ranges);
		}
		out->ranges[out->count++] = range;
	} while (imap_parse_char(parser, ',') == 0);
	return 0;

invalid:
	imap_seqset_free(out);
	parser->p = start;
	return -1;
}

void
imap_seqset_free(struct imap_seqset *set)
{
	free(set->ranges);
	set->ranges = NULL;
	set->count = 0;
}

int
imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t star)
{
	for (size_t i = 0; i < set->count; i++) {
		uint32_t first = set->ranges[i].first_star ? star : set->ranges[i].first;
		uint32_t last = set->ranges[i].last_star ? star : set->ranges[i].last;

		if (first > last) {
			uint32_t swap = first;

			first = last;
			last = swap;
		}
		if (n >= first && n <= last)
			return 1;
	}
	return 0;
}

int
imap_parse_command_start(struct imap_parser *parser, char *tag, size_t tagsize,
    char *name, size_t namesize)
{
	tag[0] = '\0';
	name[0] = '\0';
	if (imap_parse_tag(parser, tag, tagsize) < 0)
		return -1;
	if (imap_parse_sp(parser) < 0 || imap_parse_atom(parser, name, namesize) < 0)
		return -2;
	for (char *p = name; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	return 0;
}

static int
parse_nil(struct imap_parser *parser)
{
	if (parser->end - parser->p >= 3 && ascii_ncasecmp(parser->p, "NIL", 3) == 0) {
		parser->p += 3;
		return 0;
	}
	return -1;
}

int
imap_parse_id_params(struct imap_parser *parser)
{
	if (parse_nil(parser) == 0)
		return imap_parse_at_end(parser) ? 0 : -1;
	if (imap_parse_char(parser, '(') < 0)
		return -1;
	for (int pairs = 0; !imap_parse_peek(parser, ')'); pairs++) {
		struct imap_string field, value;

		if (pairs == 30 || (pairs > 0 && imap_parse_sp(parser) < 0))
			return -1;
		if (imap_parse_string(parser, &field) < 0)
			return -1;
		imap_string_free(&field);
		if (imap_parse_sp(parser) < 0)
			return -1;
		if (parse_nil(parser) < 0) {
			if (imap_parse_string(parser, &value) < 0)
				return -1;
			imap_string_free(&value);
		}
	}
	parser->p++;
	return imap_parse_at_end(parser) ? 0 : -1;
}
