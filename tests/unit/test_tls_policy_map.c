/*
 * Unit tests for lib/tls_policy_map.c: the smtp_tls_policy_maps file
 * format, lookups by domain, parent domain and [host], and match lists.
 */
#include <check.h>
#include <string.h>

#include "tls_policy_map.h"

static const char map_text[] =
    "# per-destination TLS\n"
    "example.test          verify\n"
    "  .example.test       encrypt\r\n"
    "\n"
    "secure.test           secure\n"
    "named.test            verify match=hostname:mx.Other.test:.dot.test\n"
    "[relay.test]          none\n"
    "[relay.test]:2525     dane\n";

static void
load(struct tls_policy_map *map)
{
	char err[256];

	ck_assert_msg(tls_policy_map_parse(map_text, "policy", map, err, sizeof err) == 0, "%s", err);
	ck_assert_uint_eq(map->count, 6);
}

START_TEST(find_exact_and_parent)
{
	struct tls_policy_map map;

	load(&map);
	ck_assert_int_eq(tls_policy_map_find(&map, "example.test")->level, TLS_LEVEL_VERIFY);
	ck_assert_int_eq(tls_policy_map_find(&map, "EXAMPLE.test")->level, TLS_LEVEL_VERIFY);
	ck_assert_int_eq(tls_policy_map_find(&map, "a.example.test")->level, TLS_LEVEL_ENCRYPT);
	ck_assert_int_eq(tls_policy_map_find(&map, "a.b.example.test")->level, TLS_LEVEL_ENCRYPT);
	ck_assert_ptr_null(tls_policy_map_find(&map, "xexample.test"));
	ck_assert_ptr_null(tls_policy_map_find(&map, "other.test"));
	tls_policy_map_free(&map);
}
END_TEST

START_TEST(find_bracketed_host)
{
	struct tls_policy_map map;

	load(&map);
	ck_assert_int_eq(tls_policy_map_find(&map, "[relay.test]")->level, TLS_LEVEL_NONE);
	ck_assert_int_eq(tls_policy_map_find(&map, "[relay.test]:2525")->level, TLS_LEVEL_DANE);
	ck_assert_int_eq(tls_policy_map_find(&map, "[relay.test]:587")->level, TLS_LEVEL_NONE);
	ck_assert_ptr_null(tls_policy_map_find(&map, "relay.test"));
	tls_policy_map_free(&map);
}
END_TEST

START_TEST(match_names_expanded)
{
	struct tls_policy_map map;
	const char *names[8];
	char buffer[512];

	load(&map);
	ck_assert_uint_eq(tls_policy_match_names(tls_policy_map_find(&map, "secure.test"), "secure.test",
	    "mx.secure.test", names, 8, buffer, sizeof buffer), 2);
	ck_assert_str_eq(names[0], "secure.test");
	ck_assert_str_eq(names[1], ".secure.test");
	ck_assert_ptr_null(names[2]);

	ck_assert_uint_eq(tls_policy_match_names(tls_policy_map_find(&map, "named.test"), "named.test",
	    "mx1.named.test", names, 8, buffer, sizeof buffer), 3);
	ck_assert_str_eq(names[0], "mx1.named.test");
	ck_assert_str_eq(names[1], "mx.other.test");
	ck_assert_str_eq(names[2], ".dot.test");

	ck_assert_uint_eq(tls_policy_match_names(tls_policy_map_find(&map, "example.test"), "example.test",
	    "mx.example.test", names, 8, buffer, sizeof buffer), 0);
	ck_assert_ptr_null(names[0]);
	tls_policy_map_free(&map);
}
END_TEST

START_TEST(invalid_lines)
{
	static const struct {
		const char *text;
		const char *error;
	} cases[] = {
		{ "example.test\n", "policy:1: expected" },
		{ "# comment\nexample.test dane-only\n", "policy:2: invalid level" },
		{ "example.test verify mtach=x\n", "policy:1: invalid attribute" },
		{ "example.test verify match=\n", "policy:1: invalid attribute" },
	};
	struct tls_policy_map map;
	char err[256];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ck_assert_int_eq(tls_policy_map_parse(cases[i].text, "policy", &map, err, sizeof err), -1);
		ck_assert_msg(strstr(err, cases[i].error) != NULL, "case %zu: %s", i, err);
		ck_assert_uint_eq(map.count, 0);
	}
}
END_TEST

START_TEST(missing_file)
{
	struct tls_policy_map map;
	char err[256];

	ck_assert_int_eq(tls_policy_map_load("/nonexistent/tls_policy", &map, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/tls_policy"));
}
END_TEST

Suite *
tls_policy_map_suite(void)
{
	Suite *s = suite_create("tls_policy_map");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, find_exact_and_parent);
	tcase_add_test(tc, find_bracketed_host);
	tcase_add_test(tc, match_names_expanded);
	tcase_add_test(tc, invalid_lines);
	tcase_add_test(tc, missing_file);
	suite_add_tcase(s, tc);
	return s;
}
