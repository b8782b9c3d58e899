/*
 * lib/mime over the email test messages of Python's test suite (Debian
 * package libpython3.11-testsuite). Every message parses, renders and
 * serves every section. For a few, the expected BODYSTRUCTURE strings
 * were worked out by hand from RFC 3501 section 7.4.2 and RFC 2046
 * section 5.1.1.
 */
#include <check.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime.h"

#define CORPUS_DIR "/usr/lib/python3.11/test/test_email/data"

/*
 * A checker for the RFC 9051 section 9 grammar of body and envelope
 * (RFC 3501 plus media-message "GLOBAL"), independent of lib/mime's
 * renderer. Each function consumes its production at *P or returns 0.
 */
struct grammar {
	const char *p;
	const char *end;
};

static int
accept_char(struct grammar *g, char c)
{
	if (g->p < g->end && *g->p == c) {
		g->p++;
		return 1;
	}
	return 0;
}

static int
accept_text(struct grammar *g, const char *text)
{
	size_t len = strlen(text);

	if ((size_t)(g->end - g->p) >= len && strncasecmp(g->p, text, len) == 0) {
		g->p += len;
		return 1;
	}
	return 0;
}

static int
read_number(struct grammar *g, unsigned long *value)
{
	const char *start = g->p;

	*value = 0;
	while (g->p < g->end && *g->p >= '0' && *g->p <= '9')
		*value = *value * 10 + (unsigned long)(*g->p++ - '0');
	return g->p > start;
}

/* string = quoted / literal. The text goes to OUT (up to 63 bytes). */
static int
read_string(struct grammar *g, char *out)
{
	size_t n = 0;
	unsigned long len;

	if (accept_char(g, '"')) {
		while (g->p < g->end && *g->p != '"') {
			unsigned char c = (unsigned char)*g->p;

			if (c == '\\') {
				g->p++;
				if (g->p >= g->end || (*g->p != '"' && *g->p != '\\'))
					return 0;
				c = (unsigned char)*g->p;
			} else if (c == 0 || c >= 0x80 || c == '\r' || c == '\n') {
				return 0;
			}
			if (out != NULL && n < 63)
				out[n++] = (char)c;
			g->p++;
		}
		if (out != NULL)
			out[n] = '\0';
		return accept_char(g, '"');
	}

	if (!accept_char(g, '{') || !read_number(g, &len) || !accept_text(g, "}\r\n") ||
	    (unsigned long)(g->end - g->p) < len || memchr(g->p, '\0', len) != NULL)
		return 0;
	if (out != NULL) {
		n = len < 63 ? len : 63;
		memcpy(out, g->p, n);
		out[n] = '\0';
	}
	g->p += len;
	return 1;
}

static int
read_nstring(struct grammar *g)
{
	return accept_text(g, "NIL") || read_string(g, NULL);
}

static int
read_address_list(struct grammar *g)
{
	if (accept_text(g, "NIL"))
		return 1;
	if (!accept_char(g, '('))
		return 0;
	do {
		if (!accept_char(g, '(') || !read_nstring(g) || !accept_char(g, ' ') ||
		    !read_nstring(g) || !accept_char(g, ' ') || !read_nstring(g) ||
		    !accept_char(g, ' ') || !read_nstring(g) || !accept_char(g, ')'))
			return 0;
	} while (g->p < g->end && *g->p == '(');
	return accept_char(g, ')');
}

static int
read_envelope(struct grammar *g)
{
	if (!accept_char(g, '(') || !read_nstring(g) || !accept_char(g, ' ') || !read_nstring(g))
		return 0;
	for (int i = 0; i < 6; i++)
		if (!accept_char(g, ' ') || !read_address_list(g))
			return 0;
	return accept_char(g, ' ') && read_nstring(g) && accept_char(g, ' ') && read_nstring(g) &&
	    accept_char(g, ')');
}

static int
read_params(struct grammar *g)
{
	if (accept_text(g, "NIL"))
		return 1;
	if (!accept_char(g, '('))
		return 0;
	do {
		if (!read_string(g, NULL) || !accept_char(g, ' ') || !read_string(g, NULL))
			return 0;
	} while (accept_char(g, ' '));
	return accept_char(g, ')');
}

/* SP body-fld-dsp SP body-fld-lang SP body-fld-loc, all required here
 * because lib/mime always sends them in BODYSTRUCTURE. */
static int
read_extension_tail(struct grammar *g)
{
	if (!accept_char(g, ' '))
		return 0;
	if (!accept_text(g, "NIL") && !(accept_char(g, '(') && read_string(g, NULL) &&
	    accept_char(g, ' ') && read_params(g) && accept_char(g, ')')))
		return 0;
	if (!accept_char(g, ' '))
		return 0;
	if (accept_char(g, '(')) {
		do {
			if (!read_string(g, NULL))
				return 0;
		} while (accept_char(g, ' '));
		if (!accept_char(g, ')'))
			return 0;
	} else if (!read_nstring(g)) {
		return 0;
	}
	return accept_char(g, ' ') && read_nstring(g);
}

static int
read_body(struct grammar *g, int extended, int depth)
{
	char type[64], subtype[64];
	unsigned long number;

	if (depth > 200 || !accept_char(g, '('))
		return 0;

	if (g->p < g->end && *g->p == '(') {
		while (g->p < g->end && *g->p == '(')
			if (!read_body(g, extended, depth + 1))
				return 0;
		if (!accept_char(g, ' ') || !read_string(g, NULL))
			return 0;
		if (extended && !(accept_char(g, ' ') && read_params(g) && read_extension_tail(g)))
			return 0;
		return accept_char(g, ')');
	}

	if (!read_string(g, type) || !accept_char(g, ' ') || !read_string(g, subtype) ||
	    !accept_char(g, ' ') || !read_params(g) || !accept_char(g, ' ') || !read_nstring(g) ||
	    !accept_char(g, ' ') || !read_nstring(g) || !accept_char(g, ' ') ||
	    !read_string(g, NULL) || !accept_char(g, ' ') || !read_number(g, &number))
		return 0;
	if (strcasecmp(type, "MESSAGE") == 0 &&
	    (strcasecmp(subtype, "RFC822") == 0 || strcasecmp(subtype, "GLOBAL") == 0)) {
		if (!accept_char(g, ' ') || !read_envelope(g) || !accept_char(g, ' ') ||
		    !read_body(g, extended, depth + 1) || !accept_char(g, ' ') || !read_number(g, &number))
			return 0;
	} else if (strcasecmp(type, "TEXT") == 0) {
		if (!accept_char(g, ' ') || !read_number(g, &number))
			return 0;
	}
	if (extended && !(accept_char(g, ' ') && read_nstring(g) && read_extension_tail(g)))
		return 0;
	return accept_char(g, ')');
}

static void
assert_valid_structure(const struct mime_message *msg)
{
	for (int extended = 0; extended <= 1; extended++) {
		size_t len;
		char *text = mime_bodystructure(msg, &msg->root, extended, &len);
		struct grammar g = { text, text + len };

		ck_assert_msg(read_body(&g, extended, 0) && g.p == g.end,
		    "invalid %s at offset %zu: %.1000s", extended ? "BODYSTRUCTURE" : "BODY",
		    (size_t)(g.p - text), text);
		free(text);
	}
	{
		size_t len;
		char *text = mime_envelope(msg, &msg->root, &len);
		struct grammar g = { text, text + len };

		ck_assert_msg(read_envelope(&g) && g.p == g.end, "invalid ENVELOPE: %.1000s", text);
		free(text);
	}
}

static char *
read_corpus_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data;
	long size;

	ck_assert_msg(f != NULL, "cannot open %s (install libpython3.11-testsuite)", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	ck_assert_int_ge(size, 0);
	rewind(f);
	data = malloc((size_t)size + 1);
	ck_assert_uint_eq(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*len = (size_t)size;
	return data;
}

static struct mime_message *
parse_corpus_message(const char *name)
{
	char path[256];
	size_t len;
	char *data;
	struct mime_message *msg;

	snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, name);
	data = read_corpus_file(path, &len);
	msg = mime_parse(data, len);
	free(data);
	ck_assert_ptr_nonnull(msg);
	return msg;
}

/* Fetch every section kind of the part at PATH and of the parts below
 * it, checking that each part number leads back to its part. */
static void
walk_parts(const struct mime_message *msg, const struct mime_part *part, char *path, size_t path_len)
{
	static const char *suffixes[] = { "", ".MIME", ".HEADER", ".TEXT", ".HEADER.FIELDS (From)" };
	struct mime_section spec;
	const struct mime_part *inner = part->message != NULL ? part->message : part;
	char *decoded, *text;
	size_t len;

	ck_assert_int_eq(mime_section_parse(path, path_len, &spec), 0);
	ck_assert_ptr_eq(mime_section_part(msg, &spec), part);
	mime_section_free(&spec);

	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		char section[128];
		struct mime_section_data data;

		snprintf(section, sizeof section, "%.*s%s", (int)path_len, path, suffixes[i]);
		ck_assert_int_eq(mime_section_parse(section, strlen(section), &spec), 0);
		ck_assert_int_eq(mime_section_fetch(msg, &spec, &data), 0);
		ck_assert(data.data + data.len <= msg->data + msg->len || data.owned != NULL);
		free(data.owned);
		mime_section_free(&spec);
	}

	if (mime_binary_decode(msg, part, &decoded, &len) == 0)
		free(decoded);
	text = mime_part_text(msg, part, &len);
	free(text);

	for (size_t i = 0; i < inner->child_count && path_len + 8 < 100; i++) {
		size_t n = (size_t)snprintf(path + path_len, 12, ".%zu", i + 1);

		walk_parts(msg, &inner->children[i], path, path_len + n);
	}
	if (inner->child_count == 0 && part->message != NULL && path_len + 8 < 100) {
		size_t n = (size_t)snprintf(path + path_len, 12, ".1");

		walk_parts(msg, part->message, path, path_len + n);
	}
}

/* Render and fetch everything the library offers for MSG, checking the
 * grammar of what is rendered. */
static void
exercise_message(const struct mime_message *msg)
{
	char path[128];

	assert_valid_structure(msg);
	(void)mime_search_text(msg, "python");
	(void)mime_search_header(msg, "Subject", "test");

	for (size_t c = 0; c < msg->root.child_count; c++) {
		int n = snprintf(path, sizeof path, "%zu", c + 1);

		walk_parts(msg, &msg->root.children[c], path, (size_t)n);
	}
}

START_TEST(corpus_parses)
{
	glob_t files;
	size_t count;

	ck_assert_int_eq(glob(CORPUS_DIR "/msg_*.txt", 0, NULL, &files), 0);
	count = files.gl_pathc;
	ck_assert_uint_ge(count, 40);

	for (size_t i = 0; i < count; i++) {
		size_t len;
		char *data = read_corpus_file(files.gl_pathv[i], &len);
		struct mime_message *msg = mime_parse(data, len);

		ck_assert_ptr_nonnull(msg);
		exercise_message(msg);
		mime_free(msg);
		free(data);
	}
	globfree(&files);
}
END_TEST

/* Bytes that change MIME syntax when they land in the wrong place. */
static const char syntax_bytes[] = "-\n\r:;\"=?()<>@,\\ \t\0\xff*'%[]";

/*
 * Damage each corpus message in 200 deterministic ways
 * (syntax bytes written over others, cuts, repeated lines) and check
 * that parsing and rendering never fail. Run under the sanitizer build,
 * this also finds reads past the end of a buffer.
 */
START_TEST(corpus_mutations_parse)
{
	glob_t files;
	unsigned int seed = 12345;

	ck_assert_int_eq(glob(CORPUS_DIR "/msg_*.txt", 0, NULL, &files), 0);
	for (size_t i = 0; i < files.gl_pathc; i++) {
		size_t len;
		char *original = read_corpus_file(files.gl_pathv[i], &len);

		for (int round = 0; round < 200 && len > 0; round++) {
			char *data = malloc(len * 2 + 1);
			size_t data_len = len;
			struct mime_message *msg;

			memcpy(data, original, len);
			for (int edit = 0; edit < 1 + round % 8; edit++) {
				size_t at;

				seed = seed * 1103515245 + 12345;
				at = (seed >> 8) % data_len;
				switch (round % 3) {
				case 0:
					data[at] = syntax_bytes[(seed >> 4) % (sizeof syntax_bytes - 1)];
					break;
				case 1:
					data_len = at + 1;
					break;
				default: {
					size_t copy = (seed >> 16) % 200;

					if (copy > data_len - at)
						copy = data_len - at;
					if (data_len + copy <= len * 2) {
						memmove(data + at + copy, data + at, data_len - at);
						data_len += copy;
					}
					break;
				}
				}
			}

			msg = mime_parse(data, data_len);
			ck_assert_ptr_nonnull(msg);
			exercise_message(msg);
			mime_free(msg);
			free(data);
		}
		free(original);
	}
	globfree(&files);
}
END_TEST

static void
assert_corpus_bodystructure(const char *name, const char *expected)
{
	struct mime_message *msg = parse_corpus_message(name);
	char *got = mime_bodystructure(msg, &msg->root, 1, NULL);

	ck_assert_msg(strcmp(got, expected) == 0, "%s:\n got %s\nwant %s", name, got, expected);
	free(got);
	mime_free(msg);
}

/* A top-level message/rfc822 body that contains a plain message. */
START_TEST(corpus_enclosed_message)
{
	assert_corpus_bodystructure("msg_11.txt",
	    "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 66"
	    " (NIL \"An enclosed message\" NIL NIL NIL NIL NIL NIL NIL NIL)"
	    " (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 34 1 NIL NIL NIL NIL)"
	    " 3 NIL NIL NIL NIL)");
}
END_TEST

START_TEST(corpus_one_part)
{
	assert_corpus_bodystructure("msg_23.txt",
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 0 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"BOUNDARY\") NIL NIL NIL)");
}
END_TEST

/* The only part is an empty line: no header, and an empty body. */
START_TEST(corpus_empty_part)
{
	assert_corpus_bodystructure("msg_24.txt",
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"BOUNDARY\") NIL NIL NIL)");
}
END_TEST

/* Consecutive delimiters give empty parts between them. */
START_TEST(corpus_consecutive_delimiters)
{
	const char *empty = "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0"
	    " NIL NIL NIL NIL)";
	char expected[2048];

	snprintf(expected, sizeof expected,
	    "((\"TEXT\" \"X-ONE\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1 NIL NIL NIL NIL)%s"
	    "(\"TEXT\" \"X-TWO\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1 NIL NIL NIL NIL)%s%s%s"
	    "(\"TEXT\" \"X-TWO\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"ABCDE\") NIL NIL NIL)", empty, empty, empty, empty);
	assert_corpus_bodystructure("msg_37.txt", expected);
}
END_TEST

/* The boundary parameter "BOUNDARY_" matches no delimiter line. */
START_TEST(corpus_unmatched_boundary)
{
	assert_corpus_bodystructure("msg_31.txt",
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"BOUNDARY_\") NIL NIL NIL)");
}
END_TEST

/* A boundary parameter on a text type is only a parameter. */
START_TEST(corpus_text_with_boundary)
{
	assert_corpus_bodystructure("msg_40.txt",
	    "(\"TEXT\" \"HTML\" (\"BOUNDARY\" \"--961284236552522269\" \"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 128 7"
	    " NIL NIL NIL NIL)");
}
END_TEST

Suite *
mime_corpus_suite(void)
{
	Suite *s = suite_create("mime_corpus");
	TCase *tc = tcase_create("corpus");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, corpus_parses);
	tcase_add_test(tc, corpus_mutations_parse);
	tcase_add_test(tc, corpus_enclosed_message);
	tcase_add_test(tc, corpus_one_part);
	tcase_add_test(tc, corpus_empty_part);
	tcase_add_test(tc, corpus_consecutive_delimiters);
	tcase_add_test(tc, corpus_unmatched_boundary);
	tcase_add_test(tc, corpus_text_with_boundary);
	suite_add_tcase(s, tc);
	return s;
}
