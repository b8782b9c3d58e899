/* Unit tests for lib/auth_proto.c: fields of Dovecot auth protocol replies. */
#include <check.h>
#include <string.h>

#include "auth_proto.h"

START_TEST(field_values)
{
	char first[] = "user=alice@example.test\treason=Bad password\ttemp";
	char middle[] = "user=alice@example.test\treason=Bad password\ttemp";
	char absent[] = "user=alice@example.test\ttemp";

	ck_assert_str_eq(auth_proto_field(first, "user"), "alice@example.test");
	ck_assert_str_eq(auth_proto_field(middle, "reason"), "Bad password");
	ck_assert_str_eq(auth_proto_field(absent, "reason"), "");
}
END_TEST

START_TEST(field_name_prefix)
{
	char fields[] = "username=bob\tuser=alice";
	char empty[] = "";

	/* "user" must not match "username=". */
	ck_assert_str_eq(auth_proto_field(fields, "user"), "alice");
	ck_assert_str_eq(auth_proto_field(empty, "user"), "");
}
END_TEST

START_TEST(bare_fields)
{
	ck_assert_int_eq(auth_proto_has_field("temp", "temp"), 1);
	ck_assert_int_eq(auth_proto_has_field("reason=x\ttemp", "temp"), 1);
	ck_assert_int_eq(auth_proto_has_field("temp\treason=x", "temp"), 1);
	ck_assert_int_eq(auth_proto_has_field("reason=temp", "temp"), 0);
	ck_assert_int_eq(auth_proto_has_field("temporary", "temp"), 0);
	ck_assert_int_eq(auth_proto_has_field("temp=1", "temp"), 0);
	ck_assert_int_eq(auth_proto_has_field("", "temp"), 0);
}
END_TEST

Suite *
auth_proto_suite(void)
{
	Suite *s = suite_create("auth_proto");
	TCase *tc = tcase_create("auth_proto");

	tcase_add_test(tc, field_values);
	tcase_add_test(tc, field_name_prefix);
	tcase_add_test(tc, bare_fields);
	suite_add_tcase(s, tc);
	return s;
}
