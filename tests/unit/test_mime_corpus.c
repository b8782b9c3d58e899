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

#include "mime.h"

#define CORPUS_DIR "/usr/lib/python3.11/test/test_email/data"

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
		char *rendered;
		char path[128];

		ck_assert_ptr_nonnull(msg);
		rendered = mime_bodystructure(msg, &msg->root, 1, NULL);
		ck_assert_msg(rendered[0] == '(', "%s: %s", files.gl_pathv[i], rendered);
		free(rendered);
		rendered = mime_bodystructure(msg, &msg->root, 0, NULL);
		free(rendered);
		rendered = mime_envelope(msg, &msg->root, NULL);
		free(rendered);
		(void)mime_search_text(msg, "python");

		for (size_t c = 0; c < msg->root.child_count; c++) {
			int n = snprintf(path, sizeof path, "%zu", c + 1);

			walk_parts(msg, &msg->root.children[c], path, (size_t)n);
		}
		mime_free(msg);
		free(data);
	}
	globfree(&files);
}
END_TEST

/* Render and fetch everything the library offers for MSG. */
static void
exercise_message(const struct mime_message *msg)
{
	char *rendered;
	char path[128];

	rendered = mime_bodystructure(msg, &msg->root, 1, NULL);
	ck_assert(rendered[0] == '(');
	free(rendered);
	rendered = mime_bodystructure(msg, &msg->root, 0, NULL);
	free(rendered);
	rendered = mime_envelope(msg, &msg->root, NULL);
	free(rendered);
	(void)mime_search_text(msg, "python");
	(void)mime_search_header(msg, "Subject", "test");

	for (size_t c = 0; c < msg->root.child_count; c++) {
		int n = snprintf(path, sizeof path, "%zu", c + 1);

		walk_parts(msg, &msg->root.children[c], path, (size_t)n);
	}
}

/* Bytes that change MIME syntax when they land in the wrong place. */
static const char syntax_bytes[] = "-\n\r:;\"=?()<>@,\\ \t\0\xff*'%[]";

/*
 * Damage each corpus message in a few hundred deterministic ways
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
