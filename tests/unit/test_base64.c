/* Unit tests for lib/base64.c: strict decoding of padded base64. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

static int
decode(const char *text, unsigned char **out, size_t *outlen)
{
	return base64_decode(text, strlen(text), out, outlen);
}

START_TEST(decode_padding)
{
	static const struct {
		const char *text, *expected;
	} cases[] = {
		{ "YQ==", "a" },
		{ "YWI=", "ab" },
		{ "YWJj", "abc" },
		{ "cGVuY2ls", "pencil" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unsigned char *out = NULL;
		size_t len = 0;

		ck_assert_int_eq(decode(cases[i].text, &out, &len), 0);
		ck_assert_uint_eq(len, strlen(cases[i].expected));
		ck_assert_mem_eq(out, cases[i].expected, len);
		free(out);
	}
}
END_TEST

START_TEST(decode_binary)
{
	static const unsigned char expected[] = { 0x00, 0xff, 0x10 };
	unsigned char *out = NULL;
	size_t len = 0;

	ck_assert_int_eq(decode("AP8Q", &out, &len), 0);
	ck_assert_uint_eq(len, sizeof expected);
	ck_assert_mem_eq(out, expected, len);
	free(out);
}
END_TEST

START_TEST(decode_invalid)
{
	static const char *const bad[] = { "", "YQ", "YQ=", "YWJjZ", "Y!==", "YW Jj" };

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		unsigned char *out = NULL;
		size_t len = 0;

		ck_assert_msg(decode(bad[i], &out, &len) == -1, "accepted \"%s\"", bad[i]);
		ck_assert_ptr_null(out);
	}
}
END_TEST

START_TEST(decode_length_bound)
{
	unsigned char *out = NULL;
	size_t len = 0;

	/* Only the first LEN bytes count, so a field inside a longer message decodes. */
	ck_assert_int_eq(base64_decode("YWJj,p=x", 4, &out, &len), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_mem_eq(out, "abc", 3);
	free(out);
}
END_TEST

Suite *
base64_suite(void)
{
	Suite *s = suite_create("base64");
	TCase *tc = tcase_create("base64");

	tcase_add_test(tc, decode_padding);
	tcase_add_test(tc, decode_binary);
	tcase_add_test(tc, decode_invalid);
	tcase_add_test(tc, decode_length_bound);
	suite_add_tcase(s, tc);
	return s;
}
