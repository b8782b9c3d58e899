/* Unit tests for the stored DSN ORCPT check in lib/dsn_orcpt.c. */
#include <check.h>
#include <string.h>

#include "dsn_orcpt.h"

START_TEST(valid_orcpt)
{
	const char *valid[] = {
		"rfc822;alice@example.test",
		"RFC822;Alice+x@example.test",
		"utf-8;j\\x{00F6}rg@example.test",
		"x-local;a b",
		"rfc822;!",
	};

	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
		ck_assert_msg(dsn_orcpt_valid(valid[i]), "rejected: %s", valid[i]);
}
END_TEST

START_TEST(invalid_orcpt)
{
	const char *invalid[] = {
		"",
		"rfc822",
		";alice@example.test",
		"rfc822;",
		"rf c822;alice@example.test",
		"r@fc822;alice@example.test",
		"rfc.822;alice@example.test",
		"x<y;alice@example.test",
		"rfc822;alice\x7f@example.test",
		"rfc822;j\xc3\xb6rg@example.test",
		"rfc822;a\tb",
	};

	for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
		ck_assert_msg(!dsn_orcpt_valid(invalid[i]), "accepted: %s", invalid[i]);
}
END_TEST

START_TEST(orcpt_length)
{
	char orcpt[DSN_ORCPT_STORED_MAX + 2];

	memcpy(orcpt, "rfc822;", 7);
	memset(orcpt + 7, 'a', sizeof orcpt - 7);
	orcpt[DSN_ORCPT_STORED_MAX] = '\0';
	ck_assert(dsn_orcpt_valid(orcpt));

	orcpt[DSN_ORCPT_STORED_MAX] = 'a';
	orcpt[DSN_ORCPT_STORED_MAX + 1] = '\0';
	ck_assert(!dsn_orcpt_valid(orcpt));
}
END_TEST

Suite *
dsn_orcpt_suite(void)
{
	Suite *s = suite_create("dsn_orcpt");
	TCase *tc = tcase_create("dsn_orcpt");

	tcase_add_test(tc, valid_orcpt);
	tcase_add_test(tc, invalid_orcpt);
	tcase_add_test(tc, orcpt_length);
	suite_add_tcase(s, tc);
	return s;
}
