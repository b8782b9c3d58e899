/* Unit tests for lib/mime sections, BINARY decoding, encoded words and
 * SEARCH matching. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"

static const char multipart_message[] =
    "From: a@example.org\n"
    "Subject: multi\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\n"
    "\n"
    "preamble\n"
    "--outer\n"
    "Content-Type: multipart/alternative; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "caf=C3=A9 =\n"
    "au lait\n"
    "--inner\n"
    "Content-Type: text/html; charset=iso-8859-1\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "<p>Cr\xe8me br\xfbl\xe9\x65</p>\n"
    "--inner--\n"
    "--outer\n"
    "Content-Type: application/octet-stream\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "AAEC\n"
    "Aw==\n"
    "--outer\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: inner@example.org\n"
    "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= =?utf-8?B?w7xiZXI=?=\n"
    "To: x@example.org\n"
    "\n"
    "inner body\n"
    "--outer\n"
    "Content-Type: application/x-thing\n"
    "Content-Transfer-Encoding: x-uuencode\n"
    "\n"
    "begin 644 x\n"
    "--outer--\n";

static struct mime_message *
parse(const char *text)
{
	struct mime_message *msg = mime_parse(text, strlen(text));

	ck_assert_ptr_nonnull(msg);
	return msg;
}

/* Fetch SECTION and compare with EXPECTED. A NULL EXPECTED means the
 * section must not exist. */
static void
assert_section(const struct mime_message *msg, const char *section, const char *expected)
{
	struct mime_section spec;
	struct mime_section_data data;
	int rc;

	ck_assert_msg(mime_section_parse(section, strlen(section), &spec) == 0,
	    "section %s did not parse", section);
	rc = mime_section_fetch(msg, &spec, &data);
	if (expected == NULL) {
		ck_assert_msg(rc == -1, "section %s exists", section);
	} else {
		ck_assert_msg(rc == 0, "section %s not found", section);
		ck_assert_uint_eq(data.len, strlen(expected));
		ck_assert_mem_eq(data.data, expected, data.len);
	}
	free(data.owned);
	mime_section_free(&spec);
}

START_TEST(section_parts)
{
	struct mime_message *msg = parse(multipart_message);

	assert_section(msg, "1.1", "caf=C3=A9 =\r\nau lait");
	assert_section(msg, "1.2.MIME",
	    "Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
	assert_section(msg, "2", "AAEC\r\nAw==");
	assert_section(msg, "3.1", "inner body");
	assert_section(msg, "3.TEXT", "inner body");
	assert_section(msg, "3.header.fields (subject)",
	    "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= =?utf-8?B?w7xiZXI=?=\r\n\r\n");
	assert_section(msg, "3.HEADER.FIELDS.NOT (Subject \"To\")",
	    "From: inner@example.org\r\n\r\n");
	assert_section(msg, "1.HEADER", "");
	assert_section(msg, "5", NULL);
	assert_section(msg, "1.3", NULL);
	assert_section(msg, "2.1", NULL);
	assert_section(msg, "3.2", NULL);
	mime_free(msg);
}
END_TEST

START_TEST(section_message_level)
{
	struct mime_message *msg = parse(multipart_message);

	assert_section(msg, "HEADER",
	    "From: a@example.org\r\nSubject: multi\r\n"
	    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n");
	assert_section(msg, "HEADER.FIELDS (SUBJECT FROM)",
	    "From: a@example.org\r\nSubject: multi\r\n\r\n");
	assert_section(msg, "HEADER.FIELDS (X-Absent)", "\r\n");
	mime_free(msg);

	msg = parse("Subject: s\n\nline\n");
	assert_section(msg, "", "Subject: s\r\n\r\nline\r\n");
	assert_section(msg, "TEXT", "line\r\n");
	assert_section(msg, "1", "line\r\n");
	assert_section(msg, "1.MIME", "Subject: s\r\n\r\n");
	assert_section(msg, "1.1", NULL);
	mime_free(msg);
}
END_TEST

START_TEST(section_syntax)
{
	static const char *valid[] = {
		"", "HEADER", "TEXT", "1", "1.2.3", "2.MIME", "header.fields (a b)",
		"1.HEADER.FIELDS.NOT (A)", "4.TEXT",
	};
	static const char *invalid[] = {
		"MIME", "0", "1.0", "01", "1.", ".1", "1..2", "HEADER.FIELDS", "HEADER.FIELDS ()",
		"HEADER.FIELDS (a", "TEXT ", "1.BODY", "HEADERX", "1 2", "4294967296",
	};
	struct mime_section spec;

	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
		ck_assert_msg(mime_section_parse(valid[i], strlen(valid[i]), &spec) == 0,
		    "rejected %s", valid[i]);
		mime_section_free(&spec);
	}
	for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
		ck_assert_msg(mime_section_parse(invalid[i], strlen(invalid[i]), &spec) == -1,
		    "accepted %s", invalid[i]);

	ck_assert_int_eq(mime_section_parse("1.2.HEADER.FIELDS (From \"To\")", 29, &spec), 0);
	ck_assert_uint_eq(spec.path_len, 2);
	ck_assert_uint_eq(spec.path[0], 1);
	ck_assert_uint_eq(spec.path[1], 2);
	ck_assert_int_eq(spec.kind, MIME_SECTION_HEADER_FIELDS);
	ck_assert_uint_eq(spec.field_count, 2);
	ck_assert_str_eq(spec.fields[0], "From");
	ck_assert_str_eq(spec.fields[1], "To");
	mime_section_free(&spec);
}
END_TEST

static const struct mime_part *
part_at(const struct mime_message *msg, const char *section)
{
	struct mime_section spec;
	const struct mime_part *part;

	ck_assert_int_eq(mime_section_parse(section, strlen(section), &spec), 0);
	part = mime_section_part(msg, &spec);
	mime_section_free(&spec);
	ck_assert_ptr_nonnull(part);
	return part;
}

START_TEST(binary_decoding)
{
	struct mime_message *msg = parse(multipart_message);
	char *out;
	size_t len;

	ck_assert_int_eq(mime_binary_decode(msg, part_at(msg, "1.1"), &out, &len), 0);
	ck_assert_str_eq(out, "caf\xc3\xa9 au lait");
	free(out);

	ck_assert_int_eq(mime_binary_decode(msg, part_at(msg, "2"), &out, &len), 0);
	ck_assert_uint_eq(len, 4);
	ck_assert_mem_eq(out, "\0\1\2\3", 4);
	free(out);

	ck_assert_int_eq(mime_binary_decode(msg, part_at(msg, "3"), &out, &len), 0);
	ck_assert_uint_eq(len, part_at(msg, "3")->body_len);
	free(out);

	ck_assert_int_eq(mime_binary_decode(msg, part_at(msg, "4"), &out, &len), MIME_UNKNOWN_CTE);
	ck_assert_ptr_null(out);
	mime_free(msg);
}
END_TEST

START_TEST(binary_fetch_sections)
{
	struct mime_message *msg = parse(multipart_message);
	static const struct {
		const char *section;
		int rc;
		size_t len;
	} cases[] = {
		{ "", 0, 0 },		/* the whole message, checked below */
		{ "1.1", 0, 13 },
		{ "2", 0, 4 },
		{ "4", MIME_UNKNOWN_CTE, 0 },
		{ "6", -1, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_section spec;
		char *out;
		size_t len;
		int rc;

		ck_assert_int_eq(mime_section_parse(cases[i].section, strlen(cases[i].section), &spec), 0);
		rc = mime_binary_fetch(msg, &spec, &out, &len);
		ck_assert_msg(rc == cases[i].rc, "BINARY[%s] returned %d", cases[i].section, rc);
		if (i == 0) {
			ck_assert_uint_eq(len, msg->len);
			ck_assert_mem_eq(out, msg->data, len);
		} else {
			ck_assert_uint_eq(len, cases[i].len);
		}
		free(out);
		mime_section_free(&spec);
	}
	mime_free(msg);
}
END_TEST

START_TEST(search_encoded_header)
{
	struct mime_message *msg = parse("Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus\n"
	    " =?utf-8?B?S8O2bG4=?=\nFrom: =?utf-8?q?Ren=C3=A9?= <r@example.org>\n\nbody\n");

	ck_assert(mime_search_header(msg, "Subject", "GR\xc3\x9c\xc3\x9f" "e aus k\xc3\xb6ln"));
	ck_assert(mime_search_header(msg, "FROM", "ren\xc3\xa9"));
	ck_assert(mime_search_header(msg, "from", "r@example.org"));
	ck_assert(!mime_search_header(msg, "Subject", "=?ISO"));
	ck_assert(mime_search_text(msg, "k\xc3\xb6ln"));
	ck_assert(!mime_search_body(msg, "k\xc3\xb6ln"));
	mime_free(msg);
}
END_TEST

START_TEST(base64_decoder)
{
	size_t len;
	char *out = mime_base64_decode("aGVs\r\nbG8g d29y*bGQ=", 20, &len);

	ck_assert_uint_eq(len, 11);
	ck_assert_str_eq(out, "hello world");
	free(out);

	out = mime_base64_decode("YQ", 2, &len);
	ck_assert_str_eq(out, "a");
	free(out);

	out = mime_base64_decode("", 0, &len);
	ck_assert_uint_eq(len, 0);
	free(out);
}
END_TEST

START_TEST(qp_decoder)
{
	static const char in[] = "a=3Db =\r\nc  \r\nd=4\r\n=ZZ=\n=e9";
	size_t len;
	char *out = mime_qp_decode(in, sizeof in - 1, &len);

	ck_assert_str_eq(out, "a=b c\r\nd=4\r\n=ZZ\xe9");
	ck_assert_uint_eq(len, strlen("a=b c\r\nd=4\r\n=ZZ\xe9"));
	free(out);
}
END_TEST

START_TEST(encoded_words)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "=?ISO-8859-1?Q?Gr=FC=DFe?=", "Gr\xc3\xbc\xc3\x9f" "e" },
		{ "=?utf-8?B?w7xiZXI=?=", "\xc3\xbc" "ber" },
		{ "a =?utf-8?q?b?=  =?utf-8?q?c?= d", "a bc d" },
		{ "=?utf-8?q?a_b?=\r\n =?us-ascii?q?c?=", "a bc" },
		/* One UTF-8 character split over two words. */
		{ "=?utf-8?B?ww==?= =?utf-8?B?pA==?=", "\xc3\xa4" },
		{ "=?utf-8*en?q?x?=", "x" },
		{ "=?x-unknown?q?a=E9?=", "a\xef\xbf\xbd" },
		{ "=?utf-8?x?abc?=", "=?utf-8?x?abc?=" },
		{ "=?utf-8?q?unterminated", "=?utf-8?q?unterminated" },
		{ "plain\r\n folded", "plain folded" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *out = mime_decode_header(cases[i].in, strlen(cases[i].in));

		ck_assert_msg(strcmp(out, cases[i].out) == 0, "%s decoded to %s", cases[i].in, out);
		free(out);
	}
}
END_TEST

START_TEST(charset_conversion)
{
	size_t len;
	char *out = mime_charset_to_utf8("iso-8859-1", "\xe9t\xe9", 3, &len);

	ck_assert_str_eq(out, "\xc3\xa9t\xc3\xa9");
	free(out);

	out = mime_charset_to_utf8("utf-8", "a\xff" "b", 3, &len);
	ck_assert_str_eq(out, "a\xef\xbf\xbd" "b");
	free(out);

	out = mime_charset_to_utf8("us-ascii", "a\x80", 2, &len);
	ck_assert_str_eq(out, "a\xef\xbf\xbd");
	free(out);
}
END_TEST

START_TEST(utf8_case_folding)
{
	ck_assert(mime_utf8_contains("Hello World", 11, "WORLD", 5));
	ck_assert(mime_utf8_contains("caf\xc3\xa9", 5, "CAF\xc3\x89", 5));
	ck_assert(mime_utf8_contains("\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", 12,
	    "\xd0\xbf\xd0\xa0\xd0\x98", 6));
	ck_assert(mime_utf8_contains("\xce\xa3\xce\x9f\xce\xa6", 6, "\xcf\x83\xce\xbf", 4));
	ck_assert(mime_utf8_contains("x", 1, "", 0));
	ck_assert(!mime_utf8_contains("abc", 3, "abcd", 4));
	ck_assert(!mime_utf8_contains("stra\xc3\x9f" "e", 7, "STRASSE", 7));
	ck_assert(!mime_utf8_contains("caf\xc3\xa9", 5, "cafe", 4));
}
END_TEST

START_TEST(search_helpers)
{
	struct mime_message *msg = parse(multipart_message);
	size_t len;
	char *text;

	ck_assert(mime_search_header(msg, "subject", "MULTI"));
	ck_assert(!mime_search_header(msg, "subject", "other"));
	ck_assert(mime_search_header(msg, "From", ""));
	ck_assert(!mime_search_header(msg, "Cc", ""));

	ck_assert(mime_search_body(msg, "CAF\xc3\x89 AU"));
	ck_assert(mime_search_body(msg, "cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"));
	ck_assert(mime_search_body(msg, "gr\xc3\xbc\xc3\x9f" "e\xc3\xbc" "ber"));
	ck_assert(mime_search_body(msg, "inner BODY"));
	ck_assert(!mime_search_body(msg, "preamble"));
	ck_assert(!mime_search_body(msg, "multi"));
	ck_assert(mime_search_text(msg, "multi"));
	ck_assert(!mime_search_text(msg, "absent words"));

	text = mime_part_text(msg, part_at(msg, "1.2"), &len);
	ck_assert_str_eq(text, "<p>Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e</p>");
	free(text);
	ck_assert_ptr_null(mime_part_text(msg, part_at(msg, "2"), &len));
	mime_free(msg);
}
END_TEST

Suite *
mime_section_suite(void)
{
	Suite *s = suite_create("mime_section");
	TCase *tc = tcase_create("section");

	tcase_add_test(tc, section_parts);
	tcase_add_test(tc, section_message_level);
	tcase_add_test(tc, section_syntax);
	tcase_add_test(tc, binary_decoding);
	tcase_add_test(tc, binary_fetch_sections);
	tcase_add_test(tc, search_encoded_header);
	tcase_add_test(tc, base64_decoder);
	tcase_add_test(tc, qp_decoder);
	tcase_add_test(tc, encoded_words);
	tcase_add_test(tc, charset_conversion);
	tcase_add_test(tc, utf8_case_folding);
	tcase_add_test(tc, search_helpers);
	suite_add_tcase(s, tc);
	return s;
}
