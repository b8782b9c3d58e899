/*
 * Unit tests for lib/mime: parsing, ENVELOPE, BODYSTRUCTURE and BODY.
 * The expected strings were worked out by hand from RFC 3501 section
 * 7.4.2 with the conventions of lib/mime.h: sizes of the CRLF form,
 * line counts that count line ends, and CHARSET US-ASCII added to text
 * parts that have no charset.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"

static struct mime_message *
parse(const char *text)
{
	struct mime_message *msg = mime_parse(text, strlen(text));

	ck_assert_ptr_nonnull(msg);
	return msg;
}

static void
assert_bodystructure(const char *text, const char *expected)
{
	struct mime_message *msg = parse(text);
	char *got = mime_bodystructure(msg, &msg->root, 1, NULL);

	ck_assert_str_eq(got, expected);
	free(got);
	mime_free(msg);
}

static const char simple_lf[] =
    "From: Alice <alice@example.org>\n"
    "To: bob@example.org\n"
    "Subject: Hi\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\n"
    "Message-ID: <1@example.org>\n"
    "\n"
    "Hello\n"
    "World\n";

static const char simple_crlf[] =
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.org\r\n"
    "Subject: Hi\r\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    "Message-ID: <1@example.org>\r\n"
    "\r\n"
    "Hello\r\n"
    "World\r\n";

START_TEST(parse_lf_as_crlf)
{
	struct mime_message *msg = parse(simple_lf);

	ck_assert_uint_eq(msg->len, strlen(simple_crlf));
	ck_assert_mem_eq(msg->data, simple_crlf, msg->len);
	ck_assert_uint_eq(msg->root.body_len, 14);
	ck_assert_uint_eq(msg->root.body_lines, 2);
	ck_assert_str_eq(msg->root.type, "TEXT");
	ck_assert_str_eq(msg->root.subtype, "PLAIN");
	ck_assert_str_eq(msg->root.encoding, "7BIT");
	mime_free(msg);
}
END_TEST

START_TEST(simple_bodystructure)
{
	const char *expected = "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2"
	    " NIL NIL NIL NIL)";

	assert_bodystructure(simple_lf, expected);
	assert_bodystructure(simple_crlf, expected);
}
END_TEST

START_TEST(simple_body)
{
	struct mime_message *msg = parse(simple_lf);
	char *got = mime_bodystructure(msg, &msg->root, 0, NULL);

	ck_assert_str_eq(got, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2)");
	free(got);
	mime_free(msg);
}
END_TEST

START_TEST(simple_envelope)
{
	struct mime_message *msg = parse(simple_lf);
	char *got = mime_envelope(msg, &msg->root, NULL);

	ck_assert_str_eq(got, "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"Hi\""
	    " ((\"Alice\" NIL \"alice\" \"example.org\"))"
	    " ((\"Alice\" NIL \"alice\" \"example.org\"))"
	    " ((\"Alice\" NIL \"alice\" \"example.org\"))"
	    " ((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL \"<1@example.org>\")");
	free(got);
	mime_free(msg);
}
END_TEST

static const char multipart_message[] =
    "From: a@example.org\n"
    "Subject: multi\n"
    "MIME-Version: 1.0\n"
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
    "caf=C3=A9\n"
    "--inner\n"
    "Content-Type: text/html; charset=utf-8\n"
    "\n"
    "<p>cafe</p>\n"
    "--inner--\n"
    "--outer\n"
    "Content-Type: application/octet-stream; name*0=\"long\"; name*1=\"name.bin\"\n"
    "Content-Transfer-Encoding: base64\n"
    "Content-Disposition: attachment; filename*=utf-8'en'%E2%82%AC.bin\n"
    "Content-Language: en, de\n"
    "Content-Location: http://example.org/x\n"
    "Content-ID: <part2@example.org>\n"
    "Content-Description: a file\n"
    "\n"
    "AAECAw==\n"
    "--outer--\n"
    "epilogue\n";

START_TEST(multipart_bodystructure)
{
	assert_bodystructure(multipart_message,
	    "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 9 0 NIL NIL NIL NIL)"
	    "(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 11 0 NIL NIL NIL NIL)"
	    " \"ALTERNATIVE\" (\"BOUNDARY\" \"inner\") NIL NIL NIL)"
	    "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"longname.bin\") \"<part2@example.org>\""
	    " \"a file\" \"BASE64\" 8 NIL"
	    " (\"ATTACHMENT\" (\"FILENAME*\" \"utf-8'en'%E2%82%AC.bin\")) (\"en\" \"de\")"
	    " \"http://example.org/x\")"
	    " \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)");
}
END_TEST

START_TEST(multipart_body)
{
	struct mime_message *msg = parse(multipart_message);
	char *got = mime_bodystructure(msg, &msg->root, 0, NULL);

	ck_assert_str_eq(got,
	    "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 9 0)"
	    "(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 11 0) \"ALTERNATIVE\")"
	    "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"longname.bin\") \"<part2@example.org>\""
	    " \"a file\" \"BASE64\" 8) \"MIXED\")");
	free(got);
	mime_free(msg);
}
END_TEST

START_TEST(rfc2231_parameters)
{
	struct mime_message *msg = parse(multipart_message);
	const struct mime_part *attachment = &msg->root.children[1];
	const struct mime_param *name, *filename;

	name = mime_param_find(attachment->params, attachment->param_count, "name");
	ck_assert_ptr_nonnull(name);
	ck_assert_str_eq(name->value, "longname.bin");
	ck_assert_ptr_null(name->charset);

	filename = mime_param_find(attachment->disposition_params,
	    attachment->disposition_param_count, "FILENAME");
	ck_assert_ptr_nonnull(filename);
	ck_assert_str_eq(filename->value, "\xe2\x82\xac.bin");
	ck_assert_str_eq(filename->charset, "utf-8");
	ck_assert_str_eq(filename->language, "en");
	mime_free(msg);
}
END_TEST

START_TEST(rfc2231_extended_continuations)
{
	assert_bodystructure("Content-Type: text/plain; title*0*=us-ascii'en'This%20is;"
	    " title*1=\" fun\"; title*2*=%2A\n\nx\n",
	    "(\"TEXT\" \"PLAIN\" (\"TITLE*\" \"us-ascii'en'This%20is%20fun%2A\" \"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 1"
	    " NIL NIL NIL NIL)");
}
END_TEST

static const char enclosed_message[] =
    "From: outer@example.org\n"
    "Subject: fwd\n"
    "Content-Type: multipart/mixed; boundary=b\n"
    "\n"
    "--b\n"
    "Content-Type: text/plain\n"
    "\n"
    "see attached\n"
    "--b\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: inner@example.org\n"
    "Subject: =?utf-8?q?caf=C3=A9?=\n"
    "Sender:\n"
    "To: undisclosed-recipients:;\n"
    "\n"
    "inner body\n"
    "--b--\n";

START_TEST(message_rfc822_bodystructure)
{
	const char *inner_envelope = "(NIL \"=?utf-8?q?caf=C3=A9?=\""
	    " ((NIL NIL \"inner\" \"example.org\"))"
	    " ((NIL NIL \"inner\" \"example.org\"))"
	    " ((NIL NIL \"inner\" \"example.org\"))"
	    " ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)";
	char expected[1024];

	snprintf(expected, sizeof expected,
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 12 0 NIL NIL NIL NIL)"
	    "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 108 %s"
	    " (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 0 NIL NIL NIL NIL)"
	    " 5 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL)", inner_envelope);
	assert_bodystructure(enclosed_message, expected);
}
END_TEST

START_TEST(envelope_groups_and_routes)
{
	struct mime_message *msg = parse(
	    "From: \"Doe, John\" <john@example.org> (comment)\n"
	    "Sender: John Q. Public <@relay.example,@hub.example:jqp@example.org>\n"
	    "Reply-To:\n"
	    "To: team: ann@example.org, \"Bob B\" <bob@[192.0.2.1]>;, carol@example.org\n"
	    "Cc: root\n"
	    "Bcc: \"odd local\"@example.org\n"
	    "In-Reply-To: <0@example.org>\n"
	    "\n");
	char *got = mime_envelope(msg, &msg->root, NULL);

	ck_assert_str_eq(got, "(NIL NIL"
	    " ((\"Doe, John\" NIL \"john\" \"example.org\"))"
	    " ((\"John Q. Public\" \"@relay.example,@hub.example\" \"jqp\" \"example.org\"))"
	    " ((\"Doe, John\" NIL \"john\" \"example.org\"))"
	    " ((NIL NIL \"team\" NIL)(NIL NIL \"ann\" \"example.org\")"
	    "(\"Bob B\" NIL \"bob\" \"[192.0.2.1]\")(NIL NIL NIL NIL)"
	    "(NIL NIL \"carol\" \"example.org\"))"
	    " ((NIL NIL \"root\" \"\"))"
	    " ((NIL NIL \"\\\"odd local\\\"\" \"example.org\"))"
	    " \"<0@example.org>\" NIL)");
	free(got);
	mime_free(msg);
}
END_TEST

START_TEST(envelope_8bit_subject_literal)
{
	struct mime_message *msg = parse("Subject: caf\xc3\xa9\n\nx\n");
	char *got = mime_envelope(msg, &msg->root, NULL);

	ck_assert_str_eq(got, "(NIL {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)");
	free(got);
	mime_free(msg);
}
END_TEST

START_TEST(envelope_quoted_escapes)
{
	struct mime_message *msg = parse("Subject: say \"hi\" \\o/\n\n");
	char *got = mime_envelope(msg, &msg->root, NULL);

	ck_assert_str_eq(got, "(NIL \"say \\\"hi\\\" \\\\o/\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	free(got);
	mime_free(msg);
}
END_TEST

/* IMAP strings cannot carry NUL, so it is dropped from the name. */
START_TEST(envelope_nul_in_name)
{
	static const char text[] = "From: \"A\0B\" <a@example.org>\n\n";
	struct mime_message *msg = mime_parse(text, sizeof text - 1);
	char *got = mime_envelope(msg, &msg->root, NULL);

	ck_assert_str_eq(got, "(NIL NIL ((\"AB\" NIL \"a\" \"example.org\"))"
	    " ((\"AB\" NIL \"a\" \"example.org\")) ((\"AB\" NIL \"a\" \"example.org\"))"
	    " NIL NIL NIL NIL NIL)");
	free(got);
	mime_free(msg);
}
END_TEST

START_TEST(multipart_without_boundary)
{
	assert_bodystructure("Content-Type: multipart/mixed\n\n--x\n\nbody\n--x--\n",
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 20 4 NIL NIL NIL NIL)");
}
END_TEST

START_TEST(multipart_without_delimiters)
{
	assert_bodystructure("Content-Type: multipart/mixed; boundary=zz\n\nno parts here\n",
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"zz\") NIL NIL NIL)");
}
END_TEST

START_TEST(multipart_missing_close_delimiter)
{
	assert_bodystructure("Content-Type: multipart/mixed; boundary=zz\n\n--zz\n\none\n--zz\n\ntwo\n",
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL)"
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"zz\") NIL NIL NIL)");
}
END_TEST

/* The inner boundary starts with the outer one, so matching by prefix
 * alone would end the outer part at the inner delimiter. */
START_TEST(multipart_boundary_prefix)
{
	assert_bodystructure("Content-Type: multipart/mixed; boundary=abc\n\n"
	    "--abc\n"
	    "Content-Type: multipart/mixed; boundary=abcd\n\n"
	    "--abcd\n\nin\n--abcd--\n"
	    "--abc--\n",
	    "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 2 0 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"abcd\") NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"abc\") NIL NIL NIL)");
}
END_TEST

/* RFC 2046 forbids it, but mail does reuse a boundary in a nested
 * multipart: the innermost multipart takes the delimiters until its
 * close delimiter, then the outer one continues. */
START_TEST(multipart_reused_boundary)
{
	assert_bodystructure("Content-Type: multipart/mixed; boundary=same\n\n"
	    "--same\n"
	    "Content-Type: multipart/alternative; boundary=same\n\n"
	    "--same\n\none\n"
	    "--same\n\ntwo\n"
	    "--same--\n"
	    "--same\n\nthree\n"
	    "--same--\n",
	    "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL)"
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL)"
	    " \"ALTERNATIVE\" (\"BOUNDARY\" \"same\") NIL NIL NIL)"
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"same\") NIL NIL NIL)");
}
END_TEST

/* An inner multipart without its close delimiter ends at the outer
 * delimiter, and the outer multipart goes on. */
START_TEST(multipart_inner_unclosed)
{
	assert_bodystructure("Content-Type: multipart/mixed; boundary=out\n\n"
	    "--out\n"
	    "Content-Type: multipart/mixed; boundary=in\n\n"
	    "--in\n\none\n"
	    "--out\n\ntwo\n"
	    "--out--\n",
	    "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"in\") NIL NIL NIL)"
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL)"
	    " \"MIXED\" (\"BOUNDARY\" \"out\") NIL NIL NIL)");
}
END_TEST

START_TEST(envelope_comment_names_and_repeats)
{
	struct mime_message *msg = parse(
	    "From: bbb@example.org (John X. Doe)\n"
	    "To: (Lead) lead@example.org\n"
	    "Cc: c1@example.org\n"
	    "Cc: c2@example.org, \"Named\" <c3@example.org> (ignored)\n"
	    "\n");
	char *got = mime_envelope(msg, &msg->root, NULL);

	ck_assert_str_eq(got, "(NIL NIL"
	    " ((\"John X. Doe\" NIL \"bbb\" \"example.org\"))"
	    " ((\"John X. Doe\" NIL \"bbb\" \"example.org\"))"
	    " ((\"John X. Doe\" NIL \"bbb\" \"example.org\"))"
	    " ((\"Lead\" NIL \"lead\" \"example.org\"))"
	    " ((NIL NIL \"c1\" \"example.org\")(NIL NIL \"c2\" \"example.org\")"
	    "(\"Named\" NIL \"c3\" \"example.org\"))"
	    " NIL NIL NIL)");
	free(got);
	mime_free(msg);
}
END_TEST

START_TEST(digest_default_type)
{
	assert_bodystructure("Content-Type: multipart/digest; boundary=d\n\n"
	    "--d\n\nSubject: s\n\nb\n--d--\n",
	    "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 15"
	    " (NIL \"s\" NIL NIL NIL NIL NIL NIL NIL NIL)"
	    " (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0 NIL NIL NIL NIL)"
	    " 2 NIL NIL NIL NIL)"
	    " \"DIGEST\" (\"BOUNDARY\" \"d\") NIL NIL NIL)");
}
END_TEST

START_TEST(digest_without_delimiters)
{
	assert_bodystructure("Content-Type: multipart/digest; boundary=d\n\nnothing\n",
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
	    " \"DIGEST\" (\"BOUNDARY\" \"d\") NIL NIL NIL)");
}
END_TEST

START_TEST(invalid_content_type_default)
{
	assert_bodystructure("Content-Type: garbage\nContent-Transfer-Encoding: (c) Base64\n\nx",
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"BASE64\" 1 0 NIL NIL NIL NIL)");
}
END_TEST

START_TEST(parameter_syntax_variants)
{
	assert_bodystructure("Content-Type: Text/Plain (comment) ; charset = \"a\\\"b\" ;"
	    " name=two words; ;\n\nx\n",
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"a\\\"b\" \"NAME\" \"two words\") NIL NIL \"7BIT\" 3 1"
	    " NIL NIL NIL NIL)");
}
END_TEST

START_TEST(deep_nesting_capped)
{
	char *text = malloc(200 * 64 + 64);
	size_t len = 0;
	struct mime_message *msg;
	const struct mime_part *part;
	size_t depth = 0;
	char *structure;

	for (int i = 0; i < 200; i++)
		len += (size_t)sprintf(text + len, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n",
		    i, i);
	len += (size_t)sprintf(text + len, "\nleaf\n");

	msg = mime_parse(text, len);
	ck_assert_ptr_nonnull(msg);
	for (part = &msg->root; part->child_count > 0; part = &part->children[0])
		depth++;
	ck_assert_uint_eq(depth, MIME_MAX_DEPTH);
	ck_assert_str_eq(part->type, "APPLICATION");
	structure = mime_bodystructure(msg, &msg->root, 1, NULL);
	ck_assert_ptr_nonnull(strstr(structure, "\"APPLICATION\" \"OCTET-STREAM\""));
	free(structure);
	mime_free(msg);
	free(text);
}
END_TEST

START_TEST(deep_message_nesting_capped)
{
	char *text = malloc(200 * 32 + 64);
	size_t len = 0;
	struct mime_message *msg;
	char *structure;

	for (int i = 0; i < 200; i++)
		len += (size_t)sprintf(text + len, "Content-Type: message/rfc822\n\n");
	len += (size_t)sprintf(text + len, "leaf\n");

	msg = mime_parse(text, len);
	ck_assert_ptr_nonnull(msg);
	structure = mime_bodystructure(msg, &msg->root, 1, NULL);
	ck_assert_ptr_nonnull(strstr(structure, "\"APPLICATION\" \"OCTET-STREAM\""));
	free(structure);
	mime_free(msg);
	free(text);
}
END_TEST

START_TEST(part_count_capped)
{
	size_t count = 20000, len = 0;
	char *text = malloc(count * 8 + 64);
	struct mime_message *msg;
	char *structure;

	len += (size_t)sprintf(text, "Content-Type: multipart/mixed; boundary=b\n\n");
	for (size_t i = 0; i < count; i++)
		len += (size_t)sprintf(text + len, "--b\n\nx\n");
	len += (size_t)sprintf(text + len, "--b--\n");

	msg = mime_parse(text, len);
	ck_assert_ptr_nonnull(msg);
	ck_assert_uint_lt(msg->root.child_count, count);
	ck_assert_uint_gt(msg->root.child_count, 1000);
	ck_assert_uint_eq(msg->root.body_offset + msg->root.body_len, msg->len);
	structure = mime_bodystructure(msg, &msg->root, 1, NULL);
	ck_assert_ptr_nonnull(strstr(structure, " \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL)"));
	free(structure);
	mime_free(msg);
	free(text);
}
END_TEST

START_TEST(nul_and_8bit_bytes)
{
	static const char text[] = "Subj\xff" "ect: x\nFrom: a\0b@example.org\n"
	    "Content-Type: multipart/mixed; boundary=\"\0\"\n\n--\0\n\n\0\0\n";
	struct mime_message *msg = mime_parse(text, sizeof text - 1);
	char *structure, *envelope;

	ck_assert_ptr_nonnull(msg);
	ck_assert_uint_eq(msg->len, sizeof text - 1 + 7);
	structure = mime_bodystructure(msg, &msg->root, 1, NULL);
	envelope = mime_envelope(msg, &msg->root, NULL);
	ck_assert_ptr_nonnull(structure);
	ck_assert_ptr_nonnull(envelope);
	free(structure);
	free(envelope);
	mime_free(msg);
}
END_TEST

START_TEST(empty_and_headerless_input)
{
	struct mime_message *msg = mime_parse("", 0);
	char *structure;

	ck_assert_ptr_nonnull(msg);
	structure = mime_bodystructure(msg, &msg->root, 1, NULL);
	ck_assert_str_eq(structure,
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
	free(structure);
	mime_free(msg);

	msg = parse("no header here\nsecond line");
	ck_assert_uint_eq(msg->root.header_len, 0);
	ck_assert_uint_eq(msg->root.body_len, strlen("no header here\r\nsecond line"));
	ck_assert_uint_eq(msg->root.body_lines, 1);
	mime_free(msg);
}
END_TEST

START_TEST(content_language_single)
{
	assert_bodystructure("Content-Type: text/plain\nContent-Language: en\n"
	    "Content-Disposition: inline\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\nx\n",
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\""
	    " (\"INLINE\" NIL) \"en\" NIL)");
}
END_TEST

Suite *
mime_suite(void)
{
	Suite *s = suite_create("mime");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, parse_lf_as_crlf);
	tcase_add_test(tc, simple_bodystructure);
	tcase_add_test(tc, simple_body);
	tcase_add_test(tc, simple_envelope);
	tcase_add_test(tc, multipart_bodystructure);
	tcase_add_test(tc, multipart_body);
	tcase_add_test(tc, rfc2231_parameters);
	tcase_add_test(tc, rfc2231_extended_continuations);
	tcase_add_test(tc, message_rfc822_bodystructure);
	tcase_add_test(tc, envelope_groups_and_routes);
	tcase_add_test(tc, envelope_8bit_subject_literal);
	tcase_add_test(tc, envelope_quoted_escapes);
	tcase_add_test(tc, envelope_nul_in_name);
	tcase_add_test(tc, multipart_without_boundary);
	tcase_add_test(tc, multipart_without_delimiters);
	tcase_add_test(tc, multipart_missing_close_delimiter);
	tcase_add_test(tc, multipart_boundary_prefix);
	tcase_add_test(tc, multipart_reused_boundary);
	tcase_add_test(tc, multipart_inner_unclosed);
	tcase_add_test(tc, envelope_comment_names_and_repeats);
	tcase_add_test(tc, digest_default_type);
	tcase_add_test(tc, digest_without_delimiters);
	tcase_add_test(tc, invalid_content_type_default);
	tcase_add_test(tc, parameter_syntax_variants);
	tcase_add_test(tc, deep_nesting_capped);
	tcase_add_test(tc, deep_message_nesting_capped);
	tcase_add_test(tc, part_count_capped);
	tcase_add_test(tc, nul_and_8bit_bytes);
	tcase_add_test(tc, empty_and_headerless_input);
	tcase_add_test(tc, content_language_single);
	suite_add_tcase(s, tc);
	return s;
}
