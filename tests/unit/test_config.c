/* Unit tests for lib/config.c: value parsing, file errors, lookups. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char *
write_temp_config(const char *text)
{
	static char path[64];
	FILE *fp;
	int fd;

	strcpy(path, "/tmp/estafeta-config-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	fputs(text, fp);
	fclose(fp);
	return path;
}

START_TEST(size_suffixes)
{
	long long value;

	ck_assert_int_eq(config_parse_size("10240000", &value), 0);
	ck_assert_int_eq(value, 10240000);
	ck_assert_int_eq(config_parse_size("10k", &value), 0);
	ck_assert_int_eq(value, 10240);
	ck_assert_int_eq(config_parse_size("2M", &value), 0);
	ck_assert_int_eq(value, 2 * 1024 * 1024);
	ck_assert_int_eq(config_parse_size("1g", &value), 0);
	ck_assert_int_eq(value, 1024LL * 1024 * 1024);
	ck_assert_int_eq(config_parse_size("", &value), -1);
	ck_assert_int_eq(config_parse_size("12q", &value), -1);
	ck_assert_int_eq(config_parse_size("-1", &value), -1);
	ck_assert_int_eq(config_parse_size("1kk", &value), -1);
	ck_assert_int_eq(config_parse_size("99999999999999999999", &value), -1);
}
END_TEST

START_TEST(time_suffixes)
{
	long long value;

	ck_assert_int_eq(config_parse_time("300", &value), 0);
	ck_assert_int_eq(value, 300);
	ck_assert_int_eq(config_parse_time("5m", &value), 0);
	ck_assert_int_eq(value, 300);
	ck_assert_int_eq(config_parse_time("5d", &value), 0);
	ck_assert_int_eq(value, 5 * 86400);
	ck_assert_int_eq(config_parse_time("1w", &value), 0);
	ck_assert_int_eq(value, 7 * 86400);
	ck_assert_int_eq(config_parse_time("m", &value), -1);
}
END_TEST

START_TEST(bool_words)
{
	int value;

	ck_assert_int_eq(config_parse_bool("yes", &value), 0);
	ck_assert_int_eq(value, 1);
	ck_assert_int_eq(config_parse_bool("Off", &value), 0);
	ck_assert_int_eq(value, 0);
	ck_assert_int_eq(config_parse_bool("maybe", &value), -1);
}
END_TEST

START_TEST(load_values_and_lists)
{
	char err[512];
	char *path = write_temp_config(
	    "# comment\n"
	    "myhostname = mx.example.test\n"
	    "\n"
	    "virtual_domains = example.test,\n"
	    "    example.net  other.test\n"
	    "syslog = no\n");
	char *const *list;

	ck_assert_int_eq(config_load(path, err, sizeof err), 0);
	ck_assert_str_eq(config_string("myhostname"), "mx.example.test");
	ck_assert_int_eq(config_bool("syslog"), 0);
	list = config_list("virtual_domains");
	ck_assert_str_eq(list[0], "example.test");
	ck_assert_str_eq(list[1], "example.net");
	ck_assert_str_eq(list[2], "other.test");
	ck_assert_ptr_null(list[3]);
	unlink(path);
}
END_TEST

START_TEST(load_reports_file_and_line)
{
	char err[512];
	char *path = write_temp_config("myhostname = a\nno_such_parameter = 1\n");

	ck_assert_int_eq(config_load(path, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, ":2: "));
	ck_assert_ptr_nonnull(strstr(err, "unknown parameter \"no_such_parameter\""));
	unlink(path);

	path = write_temp_config("\nsyslog = perhaps\n");
	ck_assert_int_eq(config_load(path, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, ":2: invalid value \"perhaps\" for syslog"));
	unlink(path);

	path = write_temp_config("just some words\n");
	ck_assert_int_eq(config_load(path, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, ":1: missing '='"));
	unlink(path);
}
END_TEST

START_TEST(load_missing_file)
{
	char err[512];

	ck_assert_int_eq(config_load("/nonexistent/estafeta.conf", err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "cannot open"));
}
END_TEST

START_TEST(set_checks_type)
{
	char err[512];

	ck_assert_int_eq(config_set("debug", "yes", err, sizeof err), 0);
	ck_assert_int_eq(config_bool("debug"), 1);
	ck_assert_int_eq(config_set("debug", "sometimes", err, sizeof err), -1);
	ck_assert_int_eq(config_bool("debug"), 1);
	ck_assert_int_eq(config_set("nonexistent", "1", err, sizeof err), -1);
}
END_TEST

START_TEST(meaning_checked_on_set)
{
	static const struct {
		const char *name;
		const char *value;
		const char *reason;
	} bad[] = {
		{ "mynetworks", "300.0.0.0/8", "invalid value \"300.0.0.0/8\" for mynetworks" },
		{ "mynetworks", "10.0.0.0/33", "for mynetworks" },
		{ "mynetworks", "garbage", "for mynetworks" },
		{ "smtpd_listen", "127.0.0.1:99999", "is not a listen address" },
		{ "smtpd_bare_lf", "maybe", "expected one of: reject normalize" },
		{ "queue_sync_method", "sometimes", "expected one of: syncfs fsync" },
		{ "lmtp_socket_mode", "999", "expected octal permissions" },
		{ "myhostname", "a b", "expected a host name" },
		{ "myhostname", "-bad.example", "expected a host name" },
	};
	static const struct {
		const char *name;
		const char *value;
	} good[] = {
		{ "mynetworks", "127.0.0.0/8 [::1]/128 192.0.2.1" },
		{ "smtpd_listen", "127.0.0.1:2525 [::1]:2525 25" },
		{ "smtpd_bare_lf", "normalize" },
		{ "lmtp_socket_mode", "0660" },
		{ "myhostname", "mail.example.org" },
		{ "myhostname", "" },
	};
	char err[512];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(config_set(bad[i].name, bad[i].value, err, sizeof err) == -1,
		    "%s = %s accepted", bad[i].name, bad[i].value);
		ck_assert_msg(strstr(err, bad[i].reason) != NULL, "%s = %s: \"%s\"",
		    bad[i].name, bad[i].value, err);
	}
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_msg(config_set(good[i].name, good[i].value, err, sizeof err) == 0,
		    "%s = %s rejected: %s", good[i].name, good[i].value, err);
}
END_TEST

START_TEST(load_rejects_directory)
{
	char err[512];

	ck_assert_int_eq(config_load("/tmp", err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
}
END_TEST

Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, size_suffixes);
	tcase_add_test(tc, time_suffixes);
	tcase_add_test(tc, bool_words);
	tcase_add_test(tc, load_values_and_lists);
	tcase_add_test(tc, load_reports_file_and_line);
	tcase_add_test(tc, load_missing_file);
	tcase_add_test(tc, set_checks_type);
	tcase_add_test(tc, meaning_checked_on_set);
	tcase_add_test(tc, load_rejects_directory);
	suite_add_tcase(s, tc);
	return s;
}
