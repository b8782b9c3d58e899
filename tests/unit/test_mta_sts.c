/*
 * Unit tests for lib/mta_sts.c: the _mta-sts TXT record, the policy
 * file (valid forms and a table of invalid ones) and mx pattern matches.
 */
#include <check.h>
#include <string.h>

#include "mta_sts.h"

static int
parse_txt(const char *txt, char id[MTA_STS_ID_SIZE])
{
	char err[200];

	return mta_sts_txt_parse(txt, strlen(txt), id, err, sizeof err);
}

static int
parse_policy(const char *text, struct mta_sts_policy *policy, char *err, size_t errsize)
{
	return mta_sts_policy_parse(text, strlen(text), policy, err, errsize);
}

START_TEST(txt_valid_records)
{
	char id[MTA_STS_ID_SIZE];

	ck_assert_int_eq(parse_txt("v=STSv1; id=20160831085700Z;", id), 1);
	ck_assert_str_eq(id, "20160831085700Z");
	ck_assert_int_eq(parse_txt("v=STSv1;id=abc", id), 1);
	ck_assert_str_eq(id, "abc");
	ck_assert_int_eq(parse_txt("v=STSv1 ;  id=x1 ; ext-1=value", id), 1);
	ck_assert_str_eq(id, "x1");
}
END_TEST

START_TEST(txt_other_records_ignored)
{
	char id[MTA_STS_ID_SIZE];

	ck_assert_int_eq(parse_txt("v=spf1 -all", id), 0);
	ck_assert_int_eq(parse_txt("v=STSv10; id=1", id), 0);
	ck_assert_int_eq(parse_txt("", id), 0);
}
END_TEST

START_TEST(txt_invalid_records)
{
	static const char *const cases[] = {
		"v=STSv1",
		"v=STSv1;",
		"v=STSv1; id=",
		"v=STSv1; id=has-dash",
		"v=STSv1; id=123456789012345678901234567890123",
		"v=STSv1; id=1 junk",
		"v=STSv1; id=1; noequals",
		"v=STSv1; id=1; bad name=1",
		"v=STSv1; id=1; _x=1",
	};
	char id[MTA_STS_ID_SIZE];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ck_assert_msg(parse_txt(cases[i], id) == -1, "accepted \"%s\"", cases[i]);
}
END_TEST

START_TEST(policy_enforce_crlf)
{
	struct mta_sts_policy policy;
	char err[200];
	const char *text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
	    "mx: *.Example.NET.\r\nmax_age: 604800\r\n";

	ck_assert_msg(parse_policy(text, &policy, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(policy.mode, MTA_STS_MODE_ENFORCE);
	ck_assert_int_eq(policy.max_age, 604800);
	ck_assert_uint_eq(policy.mx_count, 2);
	ck_assert_str_eq(policy.mx[0], "mail.example.com");
	ck_assert_str_eq(policy.mx[1], "*.example.net");
	mta_sts_policy_free(&policy);
}
END_TEST

START_TEST(policy_lf_extensions_repeats)
{
	struct mta_sts_policy policy;
	char err[200];
	const char *text = "version: STSv1\nmode: testing\nmode: enforce\nmax_age:86400\n"
	    "mx: mx1.example.org\nfuture_field: anything at all\n\n";

	ck_assert_msg(parse_policy(text, &policy, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(policy.mode, MTA_STS_MODE_TESTING);
	ck_assert_int_eq(policy.max_age, 86400);
	ck_assert_uint_eq(policy.mx_count, 1);
	mta_sts_policy_free(&policy);
}
END_TEST

START_TEST(policy_mode_none_without_mx)
{
	struct mta_sts_policy policy;
	char err[200];

	ck_assert_int_eq(parse_policy("version: STSv1\nmode: none\nmax_age: 60\n", &policy, err,
	    sizeof err), 0);
	ck_assert_int_eq(policy.mode, MTA_STS_MODE_NONE);
	ck_assert_uint_eq(policy.mx_count, 0);
	mta_sts_policy_free(&policy);
}
END_TEST

START_TEST(policy_max_age_capped)
{
	struct mta_sts_policy policy;
	char err[200];

	ck_assert_int_eq(parse_policy("version: STSv1\nmode: none\nmax_age: 9999999999\n", &policy,
	    err, sizeof err), 0);
	ck_assert_int_eq(policy.max_age, MTA_STS_MAX_AGE_MAX);
	mta_sts_policy_free(&policy);
}
END_TEST

START_TEST(policy_invalid_inputs)
{
	static const struct {
		const char *text;
		const char *error;
	} cases[] = {
		{ "", "missing version" },
		{ "mode: enforce\nmx: a.example\nmax_age: 1\n", "missing version" },
		{ "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "unsupported version" },
		{ "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "invalid mode" },
		{ "version: STSv1\nmx: a.example\nmax_age: 1\n", "missing mode" },
		{ "version: STSv1\nmode: enforce\nmx: a.example\n", "missing max_age" },
		{ "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "invalid max_age" },
		{ "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", "invalid max_age" },
		{ "version: STSv1\nmode: enforce\nmx: a.example\nmax_age:\n", "invalid max_age" },
		{ "version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx field" },
		{ "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "invalid mx" },
		{ "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", "invalid mx" },
		{ "version: STSv1\nmode: enforce\nmx: -a.example\nmax_age: 1\n", "invalid mx" },
		{ "version: STSv1\nmode: enforce\nmx: a_b.example\nmax_age: 1\n", "invalid mx" },
		{ "version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", "invalid mx" },
		{ "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage\n", "line 5" },
		{ "version: STSv1\nmode: enforce\n: value\nmx: a.example\nmax_age: 1\n", "line 3" },
		{ "<html>\n<body>Not found</body>\n", "line 1" },
		{ "version: STSv1\nmode: enforce\nbad key: 1\nmx: a.example\nmax_age: 1\n", "invalid field name" },
	};
	struct mta_sts_policy policy;
	char err[200];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ck_assert_msg(parse_policy(cases[i].text, &policy, err, sizeof err) == -1,
		    "case %zu accepted", i);
		ck_assert_msg(strstr(err, cases[i].error) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
		    err, cases[i].error);
		ck_assert_uint_eq(policy.mx_count, 0);
	}
}
END_TEST

START_TEST(policy_nul_and_size)
{
	static char big[MTA_STS_POLICY_MAX + 2];
	const char with_nul[] = "version: STSv1\nmode: none\0\nmax_age: 1\n";
	struct mta_sts_policy policy;
	char err[200];

	ck_assert_int_eq(mta_sts_policy_parse(with_nul, sizeof with_nul - 1, &policy, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "NUL"));
	memset(big, '\n', sizeof big);
	ck_assert_int_eq(mta_sts_policy_parse(big, sizeof big, &policy, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "larger than"));
}
END_TEST

START_TEST(mx_patterns)
{
	char *mx[] = { "mail.example.com", "*.example.net" };
	struct mta_sts_policy policy = { MTA_STS_MODE_ENFORCE, 60, mx, 2 };

	ck_assert_int_eq(mta_sts_mx_match(&policy, "mail.example.com"), 1);
	ck_assert_int_eq(mta_sts_mx_match(&policy, "MAIL.Example.COM."), 1);
	ck_assert_int_eq(mta_sts_mx_match(&policy, "mx1.example.net"), 1);
	ck_assert_int_eq(mta_sts_mx_match(&policy, "example.net"), 0);
	ck_assert_int_eq(mta_sts_mx_match(&policy, "a.b.example.net"), 0);
	ck_assert_int_eq(mta_sts_mx_match(&policy, "other.example.com"), 0);
	ck_assert_int_eq(mta_sts_mx_match(&policy, ".example.net"), 0);
	ck_assert_int_eq(mta_sts_mx_match(&policy, ""), 0);
}
END_TEST

Suite *
mta_sts_suite(void)
{
	Suite *s = suite_create("mta_sts");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, txt_valid_records);
	tcase_add_test(tc, txt_other_records_ignored);
	tcase_add_test(tc, txt_invalid_records);
	tcase_add_test(tc, policy_enforce_crlf);
	tcase_add_test(tc, policy_lf_extensions_repeats);
	tcase_add_test(tc, policy_mode_none_without_mx);
	tcase_add_test(tc, policy_max_age_capped);
	tcase_add_test(tc, policy_invalid_inputs);
	tcase_add_test(tc, policy_nul_and_size);
	tcase_add_test(tc, mx_patterns);
	suite_add_tcase(s, tc);
	return s;
}
