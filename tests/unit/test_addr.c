/* Unit tests for RFC 5321 path parsing in lib/addr.c. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

static int
parse(const char *text, int flags, struct mailaddr *out)
{
	const char *end, *why;

	return addr_parse_path(text, flags, out, &end, &why);
}

START_TEST(path_simple)
{
	struct mailaddr a;
	const char *end, *why;

	ck_assert_int_eq(addr_parse_path("<User@Example.COM> SIZE=1", 0, &a, &end, &why), 0);
	ck_assert_str_eq(a.local, "User");
	ck_assert_str_eq(a.domain, "example.com");
	ck_assert_str_eq(end, " SIZE=1");
}
END_TEST

START_TEST(path_null)
{
	struct mailaddr a;

	ck_assert_int_eq(parse("<>", ADDR_ALLOW_EMPTY, &a), 0);
	ck_assert_int_eq(addr_is_null(&a), 1);
	ck_assert_int_eq(parse("<>", 0, &a), -1);
}
END_TEST

START_TEST(path_source_route)
{
	struct mailaddr a;

	ck_assert_int_eq(parse("<@a.example,@b.example:x@y.example>", 0, &a), 0);
	ck_assert_str_eq(a.local, "x");
	ck_assert_str_eq(a.domain, "y.example");
	ck_assert_int_eq(parse("<@a.example:x@y.example>", 0, &a), 0);
	ck_assert_int_eq(parse("<@a.example,x@y.example>", 0, &a), -1);
	ck_assert_int_eq(parse("<@:x@y.example>", 0, &a), -1);
}
END_TEST

START_TEST(path_quoted_local)
{
	struct mailaddr a;
	char out[ADDR_MAX * 4 + 8];

	ck_assert_int_eq(parse("<\"john doe\"@example.com>", 0, &a), 0);
	ck_assert_str_eq(a.local, "john doe");
	ck_assert_str_eq(addr_format(&a, out, sizeof out), "\"john doe\"@example.com");

	ck_assert_int_eq(parse("<\"a\\\"b\\\\c\"@example.com>", 0, &a), 0);
	ck_assert_str_eq(a.local, "a\"b\\c");
	ck_assert_str_eq(addr_format(&a, out, sizeof out), "\"a\\\"b\\\\c\"@example.com");

	/* A quoted string that is a valid dot-string is written without quotes. */
	ck_assert_int_eq(parse("<\"john\"@example.com>", 0, &a), 0);
	ck_assert_str_eq(addr_format(&a, out, sizeof out), "john@example.com");

	ck_assert_int_eq(parse("<\"\"@example.com>", 0, &a), -1);
	ck_assert_int_eq(parse("<\"open@example.com>", 0, &a), -1);
	ck_assert_int_eq(parse("<\"tab\there\"@example.com>", 0, &a), -1);
}
END_TEST

START_TEST(path_address_literals)
{
	struct mailaddr a;

	ck_assert_int_eq(parse("<x@[192.0.2.1]>", 0, &a), 0);
	ck_assert_str_eq(a.domain, "[192.0.2.1]");
	ck_assert_int_eq(parse("<x@[IPv6:2001:db8::1]>", 0, &a), 0);
	ck_assert_int_eq(parse("<x@[IPv6:::ffff:192.0.2.1]>", 0, &a), 0);
	ck_assert_int_eq(parse("<x@[192.0.2.256]>", 0, &a), -1);
	ck_assert_int_eq(parse("<x@[2001:db8::1]>", 0, &a), -1);
	ck_assert_int_eq(parse("<x@[IPv6:zz]>", 0, &a), -1);
	ck_assert_int_eq(parse("<x@[]>", 0, &a), -1);
	ck_assert_int_eq(parse("<x@[x-tag:content]>", 0, &a), -1);
}
END_TEST

START_TEST(path_syntax_errors)
{
	static const char *const bad[] = {
		"", "x@y.example", "<x@y.example", "<x@@y.example>", "<x y@z.example>",
		"<.x@y.example>", "<x.@y.example>", "<x..y@z.example>", "<x@-y.example>",
		"<x@y-.example>", "<x@y.example.>", "<x@y..example>", "<x@.y.example>",
		"<x@>", "<@y.example>", "<x>", "<x@y@z.example>", "<x(comment)@y.example>",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct mailaddr a;

		ck_assert_msg(parse(bad[i], 0, &a) == -1, "accepted %s", bad[i]);
	}
}
END_TEST

START_TEST(path_lengths)
{
	struct mailaddr a;
	char text[600], label[80];

	/* Local part: 64 octets allowed, 65 not (RFC 5321 4.5.3.1.1). */
	snprintf(text, sizeof text, "<%.*s@example.com>", 64,
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	ck_assert_int_eq(parse(text, 0, &a), 0);
	snprintf(text, sizeof text, "<%.*s@example.com>", 65,
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	ck_assert_int_eq(parse(text, 0, &a), -1);

	/* Labels: 63 octets allowed, 64 not. */
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(text, sizeof text, "<x@%s.example>", label);
	ck_assert_int_eq(parse(text, 0, &a), 0);
	snprintf(text, sizeof text, "<x@a%s.example>", label);
	ck_assert_int_eq(parse(text, 0, &a), -1);

	/* Domain: 255 octets allowed, 256 not (RFC 5321 4.5.3.1.2). */
	snprintf(text, sizeof text, "<x@%s.%s.%s.%s>", label, label, label, label);
	ck_assert_int_eq(parse(text, 0, &a), 0);
	ck_assert_uint_eq(strlen(a.domain), 255);
	snprintf(text, sizeof text, "<x@%s.%s.%s.%.61s.ab>", label, label, label, label);
	ck_assert_int_eq(parse(text, 0, &a), -1);
}
END_TEST

/* A local part far longer than the buffer for it must be rejected
 * before anything is copied (it used to overflow the stack). */
START_TEST(path_huge_local_part)
{
	static char text[4000];
	struct mailaddr a;

	text[0] = '<';
	memset(text + 1, 'a', 3000);
	strcpy(text + 3001, "@b.test>");
	ck_assert_int_eq(parse(text, 0, &a), -1);
	ck_assert_int_eq(parse(text, ADDR_ALLOW_UTF8, &a), -1);
	ck_assert_int_eq(addr_parse_plain(text + 1, 0, &a, &(const char *){ NULL }), -1);
}
END_TEST

START_TEST(path_utf8)
{
	struct mailaddr a;

	ck_assert_int_eq(parse("<jos\xc3\xa9@ex\xc3\xa4mple.com>", 0, &a), -1);
	ck_assert_int_eq(parse("<jos\xc3\xa9@ex\xc3\xa4mple.com>", ADDR_ALLOW_UTF8, &a), 0);
	ck_assert_str_eq(a.local, "jos\xc3\xa9");
	ck_assert_str_eq(a.domain, "ex\xc3\xa4mple.com");
	ck_assert_int_eq(parse("<\"\xe2\x82\xac uro\"@example.com>", ADDR_ALLOW_UTF8, &a), 0);

	/* Malformed UTF-8: a lone continuation byte, an overlong form, a surrogate. */
	ck_assert_int_eq(parse("<a\x80@example.com>", ADDR_ALLOW_UTF8, &a), -1);
	ck_assert_int_eq(parse("<a\xc0\xaf@example.com>", ADDR_ALLOW_UTF8, &a), -1);
	ck_assert_int_eq(parse("<a\xed\xa0\x80@example.com>", ADDR_ALLOW_UTF8, &a), -1);
	ck_assert_int_eq(parse("<a\xf4\x90\x80\x80@example.com>", ADDR_ALLOW_UTF8, &a), -1);
	ck_assert_int_eq(parse("<a\xe2\x82@example.com>", ADDR_ALLOW_UTF8, &a), -1);
}
END_TEST

START_TEST(path_without_domain)
{
	struct mailaddr a;

	ck_assert_int_eq(parse("<postmaster>", 0, &a), -1);
	ck_assert_int_eq(parse("<Postmaster>", ADDR_ALLOW_NO_DOMAIN, &a), 0);
	ck_assert_str_eq(a.local, "Postmaster");
	ck_assert_str_eq(a.domain, "");
	ck_assert_int_eq(addr_is_null(&a), 0);
}
END_TEST

START_TEST(plain_addresses)
{
	struct mailaddr a;
	const char *why;

	ck_assert_int_eq(addr_parse_plain("user@Example.org", 0, &a, &why), 0);
	ck_assert_str_eq(a.domain, "example.org");
	ck_assert_int_eq(addr_parse_plain("root", 0, &a, &why), -1);
	ck_assert_int_eq(addr_parse_plain("root", ADDR_ALLOW_NO_DOMAIN, &a, &why), 0);
	ck_assert_str_eq(a.local, "root");
	ck_assert_int_eq(addr_parse_plain("", 0, &a, &why), -1);
	ck_assert_int_eq(addr_parse_plain("", ADDR_ALLOW_EMPTY, &a, &why), 0);
	ck_assert_int_eq(addr_is_null(&a), 1);
	ck_assert_int_eq(addr_parse_plain("<user@example.org>", 0, &a, &why), -1);
	ck_assert_int_eq(addr_parse_plain("user@example.org extra", 0, &a, &why), -1);
}
END_TEST

START_TEST(split_detail)
{
	char user[64], detail[64];

	addr_split_detail("user+tag+more", '+', user, sizeof user, detail, sizeof detail);
	ck_assert_str_eq(user, "user");
	ck_assert_str_eq(detail, "tag+more");

	addr_split_detail("user", '+', user, sizeof user, detail, sizeof detail);
	ck_assert_str_eq(user, "user");
	ck_assert_str_eq(detail, "");

	addr_split_detail("+tag", '+', user, sizeof user, detail, sizeof detail);
	ck_assert_str_eq(user, "+tag");
	ck_assert_str_eq(detail, "");

	addr_split_detail("user+tag", '\0', user, sizeof user, detail, sizeof detail);
	ck_assert_str_eq(user, "user+tag");
	ck_assert_str_eq(detail, "");
}
END_TEST

START_TEST(valid_domain)
{
	ck_assert_int_eq(addr_valid_domain("mail.example.org", 0), 1);
	ck_assert_int_eq(addr_valid_domain("[192.0.2.1]", 0), 1);
	ck_assert_int_eq(addr_valid_domain("", 0), 0);
	ck_assert_int_eq(addr_valid_domain("exa_mple.org", 0), 0);
	ck_assert_int_eq(addr_valid_domain("example.org.", 0), 0);
	ck_assert_int_eq(addr_valid_domain("b\xc3\xbc" "cher.example", 0), 0);
	ck_assert_int_eq(addr_valid_domain("b\xc3\xbc" "cher.example", ADDR_ALLOW_UTF8), 1);
}
END_TEST

START_TEST(format_small_buffer)
{
	struct mailaddr a;
	char out[8];

	ck_assert_int_eq(parse("<someone@example.com>", 0, &a), 0);
	ck_assert_str_eq(addr_format(&a, out, sizeof out), "someone");
	ck_assert_int_eq(parse("<\"a b c d e\"@example.com>", 0, &a), 0);
	addr_format(&a, out, sizeof out);
	ck_assert_uint_lt(strlen(out), sizeof out);
}
END_TEST

Suite *
addr_suite(void)
{
	Suite *s = suite_create("addr");
	TCase *tc = tcase_create("paths");

	tcase_add_test(tc, path_simple);
	tcase_add_test(tc, path_null);
	tcase_add_test(tc, path_source_route);
	tcase_add_test(tc, path_quoted_local);
	tcase_add_test(tc, path_address_literals);
	tcase_add_test(tc, path_syntax_errors);
	tcase_add_test(tc, path_lengths);
	tcase_add_test(tc, path_huge_local_part);
	tcase_add_test(tc, path_utf8);
	tcase_add_test(tc, path_without_domain);
	tcase_add_test(tc, plain_addresses);
	tcase_add_test(tc, split_detail);
	tcase_add_test(tc, valid_domain);
	tcase_add_test(tc, format_small_buffer);
	suite_add_tcase(s, tc);
	return s;
}
