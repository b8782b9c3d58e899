/*
 * Content-Type, Content-Disposition and Content-Language values
 * (RFC 2045 section 5.1, RFC 2183, RFC 3282), with RFC 2231 parameter
 * continuations, charsets and languages.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

/* Bounds against hostile input: parameters per field, and the highest
 * RFC 2231 section number that is joined. */
#define MAX_PARAMS 64
#define MAX_SECTION 999

struct lexer {
	const char *p;
	const char *end;
};

/* One name=value pair as written, before continuations are joined. */
struct raw_param {
	char *name;		/* upper case, '*' suffixes removed */
	int section;		/* -1 without a "*N" section number */
	int extended;		/* the name ended in '*' */
	char *value;
};

/* RFC 2045 tspecials, which end a token. */
static int
is_tspecial(char c)
{
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static int
is_token_char(unsigned char c)
{
	return c > 32 && c != 127 && !is_tspecial((char)c);
}

/* Skip whitespace, line ends and RFC 5322 comments, which may nest. */
static void
skip_cfws(struct lexer *lx)
{
	int depth = 0;

	while (lx->p < lx->end) {
		char c = *lx->p;

		if (depth > 0 && c == '\\' && lx->p + 1 < lx->end) {
			lx->p += 2;
			continue;
		}
		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n')
			return;
		lx->p++;
	}
}

static char *
read_token(struct lexer *lx)
{
	const char *start = lx->p;

	while (lx->p < lx->end && is_token_char((unsigned char)*lx->p))
		lx->p++;
	if (lx->p == start)
		return NULL;
	return xstrndup(start, (size_t)(lx->p - start));
}

/* A quoted string with its backslash escapes removed; an unterminated
 * one runs to the end of the value. */
static char *
read_quoted(struct lexer *lx)
{
	struct mime_buf buf = { 0 };

	lx->p++;
	while (lx->p < lx->end && *lx->p != '"') {
		if (*lx->p == '\\' && lx->p + 1 < lx->end)
			lx->p++;
		if (*lx->p != '\r' && *lx->p != '\n')
			mime_buf_add_char(&buf, *lx->p);
		lx->p++;
	}
	if (lx->p < lx->end)
		lx->p++;
	return mime_buf_take(&buf, NULL);
}

/* A parameter value that is neither a token nor a quoted string (such
 * as an unquoted file name with spaces): everything up to the next ';',
 * with surrounding whitespace trimmed. */
static char *
read_loose_value(struct lexer *lx)
{
	const char *start = lx->p, *stop;

	while (lx->p < lx->end && *lx->p != ';')
		lx->p++;
	stop = lx->p;
	while (stop > start && isspace((unsigned char)stop[-1]))
		stop--;
	return xstrndup(start, (size_t)(stop - start));
}

static char *
read_value(struct lexer *lx)
{
	const char *start = lx->p;
	char *value;

	if (lx->p < lx->end && *lx->p == '"')
		return read_quoted(lx);

	value = read_token(lx);
	skip_cfws(lx);
	if (lx->p < lx->end && *lx->p != ';') {
		free(value);
		lx->p = start;
		return read_loose_value(lx);
	}
	return value != NULL ? value : xstrdup("");
}

static void
upper(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)toupper((unsigned char)*s);
}

/* Split "name*2*" into the name, its section number and the extended
 * flag (RFC 2231 sections 3 and 4). */
static void
split_param_name(char *name, struct raw_param *raw)
{
	char *star = strchr(name, '*');
	long section;

	raw->section = -1;
	raw->extended = 0;
	if (star == NULL) {
		raw->name = name;
		return;
	}

	*star = '\0';
	raw->name = name;
	star++;
	if (!isdigit((unsigned char)*star)) {
		raw->extended = 1;	/* "name*" */
		return;
	}
	section = strtol(star, &star, 10);
	raw->section = section > MAX_SECTION ? MAX_SECTION + 1 : (int)section;
	raw->extended = *star == '*';	/* "name*N*" */
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 2231 %XX decoding into BUF; a '%' without two hex digits stays. */
static void
percent_decode(struct mime_buf *buf, const char *s)
{
	while (*s != '\0') {
		int hi, lo;

		if (s[0] == '%' && (hi = hex_value(s[1])) >= 0 && (lo = hex_value(s[2])) >= 0) {
			mime_buf_add_char(buf, (char)(hi * 16 + lo));
			s += 3;
			continue;
		}
		mime_buf_add_char(buf, *s++);
	}
}

/* The first extended segment starts with "charset'language'". */
static const char *
split_charset(const char *value, struct mime_param *param)
{
	const char *q1 = strchr(value, '\''), *q2;

	if (q1 == NULL || (q2 = strchr(q1 + 1, '\'')) == NULL) {
		param->charset = xstrdup("");
		return value;
	}
	param->charset = xstrndup(value, (size_t)(q1 - value));
	if (q2 > q1 + 1)
		param->language = xstrndup(q1 + 1, (size_t)(q2 - q1 - 1));
	return q2 + 1;
}

static const struct raw_param *
find_section(const struct raw_param *raw, size_t count, const char *name, int section)
{
	for (size_t i = 0; i < count; i++)
		if (raw[i].section == section && strcmp(raw[i].name, name) == 0)
			return &raw[i];
	return NULL;
}

/*
 * Join the segments named NAME into PARAM. A plain "name*" or "name"
 * value wins over continuations, and continuations are joined from
 * section 0 up to the first missing number.
 */
static void
join_param(const struct raw_param *raw, size_t count, const char *name, struct mime_param *param)
{
	struct mime_buf buf = { 0 };
	const struct raw_param *first = find_section(raw, count, name, -1);

	memset(param, 0, sizeof *param);
	param->name = xstrdup(name);

	if (first == NULL)
		first = find_section(raw, count, name, 0);
	if (first == NULL) {
		param->value = xstrdup("");
		return;
	}

	if (first->extended)
		percent_decode(&buf, split_charset(first->value, param));
	else
		mime_buf_add_str(&buf, first->value);

	for (int section = 1; first->section == 0 && section <= MAX_SECTION; section++) {
		const struct raw_param *next = find_section(raw, count, name, section);

		if (next == NULL)
			break;
		if (next->extended)
			percent_decode(&buf, next->value);
		else
			mime_buf_add_str(&buf, next->value);
	}
	param->value = mime_buf_take(&buf, NULL);
}

static int
seen_name(const struct raw_param *raw, size_t index)
{
	for (size_t i = 0; i < index; i++)
		if (strcmp(raw[i].name, raw[index].name) == 0)
			return 1;
	return 0;
}

static void
join_params(struct raw_param *raw, size_t raw_count, struct mime_param **params,
    size_t *param_count)
{
	*params = NULL;
	*param_count = 0;
	if (raw_count == 0)
		return;

	*params = xcalloc(raw_count, sizeof **params);
	for (size_t i = 0; i < raw_count; i++) {
		if (seen_name(raw, i))
			continue;
		join_param(raw, raw_count, raw[i].name, &(*params)[(*param_count)++]);
	}
}

/* Read "; name=value" pairs until the end of the value. Junk between
 * parameters is skipped up to the next ';'. */
static size_t
read_raw_params(struct lexer *lx, struct raw_param *raw)
{
	size_t count = 0;

	while (lx->p < lx->end && count < MAX_PARAMS) {
		char *name, *value;

		skip_cfws(lx);
		if (lx->p < lx->end && *lx->p != ';') {
			while (lx->p < lx->end && *lx->p != ';')
				lx->p++;
		}
		if (lx->p >= lx->end)
			break;
		lx->p++;
		skip_cfws(lx);

		name = read_token(lx);
		if (name == NULL)
			continue;
		skip_cfws(lx);
		if (lx->p >= lx->end || *lx->p != '=') {
			free(name);
			continue;
		}
		lx->p++;
		skip_cfws(lx);
		value = read_value(lx);

		upper(name);
		split_param_name(name, &raw[count]);
		raw[count].value = value;
		count++;
	}
	return count;
}

int
mime_parse_content_field(const char *value, size_t len, int with_subtype, char **type,
    char **subtype, struct mime_param **params, size_t *param_count)
{
	struct lexer lx = { value, value + len };
	struct raw_param raw[MAX_PARAMS];
	size_t raw_count;

	*type = NULL;
	*params = NULL;
	*param_count = 0;
	if (subtype != NULL)
		*subtype = NULL;

	skip_cfws(&lx);
	*type = read_token(&lx);
	if (*type == NULL)
		return -1;
	upper(*type);

	if (with_subtype) {
		skip_cfws(&lx);
		if (lx.p < lx.end && *lx.p == '/') {
			lx.p++;
			skip_cfws(&lx);
			*subtype = read_token(&lx);
		}
		if (*subtype == NULL) {
			free(*type);
			*type = NULL;
			return -1;
		}
		upper(*subtype);
	}

	raw_count = read_raw_params(&lx, raw);
	join_params(raw, raw_count, params, param_count);
	for (size_t i = 0; i < raw_count; i++) {
		free(raw[i].name);
		free(raw[i].value);
	}
	return 0;
}

void
mime_params_free(struct mime_param *params, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(params[i].name);
		free(params[i].value);
		free(params[i].charset);
		free(params[i].language);
	}
	free(params);
}

size_t
mime_parse_languages(const char *value, size_t len, char ***out)
{
	struct lexer lx = { value, value + len };
	char **tags = NULL;
	size_t count = 0;

	while (lx.p < lx.end && count < MAX_PARAMS) {
		char *tag;

		skip_cfws(&lx);
		tag = read_token(&lx);
		if (tag != NULL) {
			tags = xrealloc(tags, (count + 1) * sizeof *tags);
			tags[count++] = tag;
		}
		skip_cfws(&lx);
		while (lx.p < lx.end && *lx.p != ',')
			lx.p++;
		if (lx.p < lx.end)
			lx.p++;
	}
	*out = tags;
	return count;
}
