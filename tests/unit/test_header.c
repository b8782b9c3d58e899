/* Unit tests for lib/header.c: header sections and address lists. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "header.h"

static int
field_name_is(const struct header_field *field, const char *name)
{
	return field->namelen == strlen(name) && memcmp(field->name, name, field->namelen) == 0;
}

START_TEST(parse_lf_message)
{
	const char *msg = "From: a@example.org\nSubject: hi\n\nbody\n";
	struct header_list list;

	ck_assert_int_eq(header_parse(msg, strlen(msg), &list), 0);
	ck_assert_uint_eq(list.count, 2);
	ck_assert(field_name_is(&list.fields[0], "From"));
	ck_assert(field_name_is(&list.fields[1], "Subject"));
	ck_assert_uint_eq(list.header_len, strlen("From: a@example.org\nSubject: hi\n"));
	ck_assert_str_eq(msg + list.body_offset, "body\n");
	ck_assert_uint_eq(list.fields[1].len, strlen("Subject: hi\n"));
	header_list_free(&list);
}
END_TEST

START_TEST(parse_crlf_message)
{
	const char *msg = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
	struct header_list list;
	char *value;

	ck_assert_int_eq(header_parse(msg, strlen(msg), &list), 0);
	ck_assert_uint_eq(list.count, 2);
	ck_assert_str_eq(msg + list.body_offset, "body\r\n");
	ck_assert_uint_eq(list.fields[0].len, strlen("From: a@example.org\r\n"));
	value = header_unfold(&list.fields[1]);
	ck_assert_str_eq(value, "hi");
	free(value);
	header_list_free(&list);
}
END_TEST

START_TEST(parse_folded_field)
{
	const char *msg = "Subject: one\r\n two\r\n\tthree\r\nTo: b@example.org\r\n\r\n";
	struct header_list list;
	const struct header_field *subject;
	char *value;

	ck_assert_int_eq(header_parse(msg, strlen(msg), &list), 0);
	ck_assert_uint_eq(list.count, 2);
	subject = header_find(&list, "SUBJECT");
	ck_assert_ptr_nonnull(subject);
	ck_assert_uint_eq(subject->len, strlen("Subject: one\r\n two\r\n\tthree\r\n"));
	ck_assert_uint_eq(subject->valuelen, strlen(" one\r\n two\r\n\tthree"));
	value = header_unfold(subject);
	ck_assert_str_eq(value, "one two\tthree");
	free(value);
	header_list_free(&list);
}
END_TEST

START_TEST(parse_without_blank_line)
{
	const char *msg = "Subject: hi\nthis line is not a field\nmore\n";
	struct header_list list;

	ck_assert_int_eq(header_parse(msg, strlen(msg), &list), 0);
	ck_assert_uint_eq(list.count, 1);
	ck_assert_uint_eq(list.header_len, strlen("Subject: hi\n"));
	ck_assert_uint_eq(list.body_offset, list.header_len);
	ck_assert_str_eq(msg + list.body_offset, "this line is not a field\nmore\n");
	header_list_free(&list);
}
END_TEST

START_TEST(parse_header_only)
{
	const char *msg = "Subject: hi\nX-Last: no line end";
	struct header_list list;

	ck_assert_int_eq(header_parse(msg, strlen(msg), &list), 0);
	ck_assert_uint_eq(list.count, 2);
	ck_assert_uint_eq(list.body_offset, strlen(msg));
	ck_assert_uint_eq(list.fields[1].valuelen, strlen(" no line end"));
	header_list_free(&list);
}
END_TEST

START_TEST(parse_mbox_from_line_is_body)
{
	const char *msg = "From sender@example.org Thu Jan  1 00:00:00 2026\nSubject: x\n\n";
	struct header_list list;

	ck_assert_int_eq(header_parse(msg, strlen(msg), &list), 0);
	ck_assert_uint_eq(list.count, 0);
	ck_assert_uint_eq(list.body_offset, 0);
	header_list_free(&list);
}
END_TEST

START_TEST(parse_space_before_colon)
{
	const char *msg = "Subject : obsolete\n\n";
	struct header_list list;

	ck_assert_int_eq(header_parse(msg, strlen(msg), &list), 0);
	ck_assert_uint_eq(list.count, 1);
	ck_assert(field_name_is(&list.fields[0], "Subject"));
	ck_assert_ptr_nonnull(header_find(&list, "subject"));
	header_list_free(&list);
}
END_TEST

START_TEST(find_returns_first)
{
	const char *msg = "Delivered-To: a@example.org\nDelivered-To: b@example.org\n\n";
	struct header_list list;
	char *value;

	ck_assert_int_eq(header_parse(msg, strlen(msg), &list), 0);
	value = header_unfold(header_find(&list, "delivered-to"));
	ck_assert_str_eq(value, "a@example.org");
	free(value);
	ck_assert_ptr_null(header_find(&list, "Delivered"));
	header_list_free(&list);
}
END_TEST

/* Run header_addresses on VALUE and compare with the expected list. */
static void
check_addresses(const char *value, const char *const *expected, size_t count)
{
	char *found[16];
	size_t n = header_addresses(value, found, 16);

	ck_assert_uint_eq(n, count);
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(found[i], expected[i]);
		free(found[i]);
	}
}

START_TEST(addresses_plain_and_named)
{
	static const char *const expected[] = {
		"a@example.org", "b@example.org", "c@example.org",
	};

	check_addresses("a@example.org, Bee <b@example.org>,\r\n \"Cee, the third\" <c@example.org>",
	    expected, 3);
}
END_TEST

START_TEST(addresses_with_comments)
{
	static const char *const expected[] = { "a@example.org", "b@example.org" };

	check_addresses("a@example.org (Ann (nested), x@y), (lead) b@example.org", expected, 2);
}
END_TEST

START_TEST(addresses_in_groups)
{
	static const char *const expected[] = { "a@example.org", "b@example.org", "c@example.org" };

	check_addresses("Team: a@example.org, Bee <b@example.org>;, c@example.org", expected, 3);
}
END_TEST

START_TEST(addresses_empty_group)
{
	char *found[4];

	ck_assert_uint_eq(header_addresses("undisclosed-recipients:;", found, 4), 0);
	ck_assert_uint_eq(header_addresses("", found, 4), 0);
}
END_TEST

START_TEST(addresses_quoted_local_part)
{
	static const char *const expected[] = {
		"\"john doe\"@example.org", "\"a,b\"@example.org", "x@[IPv6:2001:db8::1]",
	};

	check_addresses("\"john doe\"@example.org, <\"a,b\"@example.org>, x@[IPv6:2001:db8::1]",
	    expected, 3);
}
END_TEST

START_TEST(addresses_source_route)
{
	static const char *const expected[] = { "x@example.org" };

	check_addresses("Someone <@relay1.example,@relay2.example:x@example.org>", expected, 1);
}
END_TEST

START_TEST(addresses_beyond_max_are_counted)
{
	char *found[1];

	ck_assert_uint_eq(header_addresses("a@x, b@x, c@x", found, 1), 3);
	ck_assert_str_eq(found[0], "a@x");
	free(found[0]);
}
END_TEST

Suite *
header_suite(void)
{
	Suite *suite = suite_create("header");
	TCase *parse = tcase_create("parse");
	TCase *addresses = tcase_create("addresses");

	tcase_add_test(parse, parse_lf_message);
	tcase_add_test(parse, parse_crlf_message);
	tcase_add_test(parse, parse_folded_field);
	tcase_add_test(parse, parse_without_blank_line);
	tcase_add_test(parse, parse_header_only);
	tcase_add_test(parse, parse_mbox_from_line_is_body);
	tcase_add_test(parse, parse_space_before_colon);
	tcase_add_test(parse, find_returns_first);
	suite_add_tcase(suite, parse);

	tcase_add_test(addresses, addresses_plain_and_named);
	tcase_add_test(addresses, addresses_with_comments);
	tcase_add_test(addresses, addresses_in_groups);
	tcase_add_test(addresses, addresses_empty_group);
	tcase_add_test(addresses, addresses_quoted_local_part);
	tcase_add_test(addresses, addresses_source_route);
	tcase_add_test(addresses, addresses_beyond_max_are_counted);
	suite_add_tcase(suite, addresses);
	return suite;
}
