/* Unit tests for lib/aliases.c: syntax, target splitting, compilation. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aliases.h"
#include "cdbmap.h"

static char work_dir[64];
static char source_path[128];
static char cdb_path[160];

static void
write_source(const char *text)
{
	FILE *fp;

	strcpy(work_dir, "/tmp/estafeta-aliases-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(work_dir));
	snprintf(source_path, sizeof source_path, "%s/aliases", work_dir);
	snprintf(cdb_path, sizeof cdb_path, "%s.cdb", source_path);
	fp = fopen(source_path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

static void
remove_work_dir(void)
{
	unlink(source_path);
	unlink(cdb_path);
	rmdir(work_dir);
}

/* The value of KEY in the compiled map, or NULL; the caller frees it. */
static char *
compiled_value(const char *key)
{
	struct cdbmap *map = cdbmap_open(cdb_path);
	char *value = NULL;

	ck_assert_ptr_nonnull(map);
	if (cdbmap_lookup(map, key, &value) != 1)
		value = NULL;
	cdbmap_close(map);
	return value;
}

START_TEST(compile_basic_file)
{
	char err[512];
	char *value;

	write_source(
	    "# Debian's default aliases\n"
	    "\n"
	    "MAILER-DAEMON: postmaster\n"
	    "postmaster:    root\n"
	    "root: alice, bob@example.org,\n"
	    "   carol\n"
	    "  # a comment between continuation lines\n"
	    "\tdave\n"
	    "team@example.test: alice@example.test\r\n"
	    "\"quoted name\": alice\n");
	ck_assert_int_eq(aliases_compile(source_path, cdb_path, err, sizeof err), 0);

	value = compiled_value("mailer-daemon");
	ck_assert_str_eq(value, "postmaster");
	free(value);
	value = compiled_value("root");
	ck_assert_str_eq(value, "alice, bob@example.org, carol dave");
	free(value);
	value = compiled_value("team@example.test");
	ck_assert_str_eq(value, "alice@example.test");
	free(value);
	value = compiled_value("quoted name");
	ck_assert_str_eq(value, "alice");
	free(value);
	ck_assert_ptr_null(compiled_value("MAILER-DAEMON"));
	remove_work_dir();
}
END_TEST

START_TEST(compile_duplicate_keeps_first)
{
	char err[512];
	char *value;

	write_source("root: alice\nRoot: bob\n");
	ck_assert_int_eq(aliases_compile(source_path, cdb_path, err, sizeof err), 0);
	value = compiled_value("root");
	ck_assert_str_eq(value, "alice");
	free(value);
	remove_work_dir();
}
END_TEST

START_TEST(compile_errors_name_line)
{
	static const struct {
		const char *text;
		const char *expected;
	} cases[] = {
		{ "root alice\n", "aliases:1: missing ':'" },
		{ "ok: a\n\nempty:\n", "aliases:3: alias empty has no target" },
		{ "  leading: continuation\n", "aliases:1: continuation line without an alias" },
		{ "x: \"|unclosed\n", "aliases:1: alias x: unclosed quote" },
		{ "x: :include:relative\n", "aliases:1: alias x: :include: needs an absolute path" },
		{ "two words: a\n", "aliases:1: alias name \"two words\" contains whitespace" },
		{ "x: a, |\n", "aliases:1: alias x: empty command" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[512];

		write_source(cases[i].text);
		ck_assert_int_eq(aliases_compile(source_path, cdb_path, err, sizeof err), -1);
		ck_assert_msg(strstr(err, cases[i].expected) != NULL, "case %zu: \"%s\" lacks \"%s\"",
		    i, err, cases[i].expected);
		ck_assert_int_eq(access(cdb_path, F_OK), -1);
		remove_work_dir();
	}
}
END_TEST

START_TEST(compile_failure_keeps_old_map)
{
	char err[512];
	char *value;
	FILE *fp;

	write_source("root: alice\n");
	ck_assert_int_eq(aliases_compile(source_path, cdb_path, err, sizeof err), 0);
	fp = fopen(source_path, "w");
	fputs("root alice\n", fp);
	fclose(fp);
	ck_assert_int_eq(aliases_compile(source_path, cdb_path, err, sizeof err), -1);
	value = compiled_value("root");
	ck_assert_str_eq(value, "alice");
	free(value);
	remove_work_dir();
}
END_TEST

START_TEST(compile_missing_source)
{
	char err[512];

	ck_assert_int_eq(aliases_compile("/nonexistent/aliases", "/nonexistent/aliases.cdb",
	    err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/aliases: cannot open"));
}
END_TEST

START_TEST(split_target_types)
{
	struct alias_target_list list = { 0 };
	char err[256];

	ck_assert_int_eq(aliases_split(
	    "alice, bob@example.org, |/usr/bin/vacation alice, \"|/bin/filter -a, -b\", "
	    "/var/log/mail-copy, /home/x/Maildir/, :include:/etc/mail/staff, \\carol, "
	    ":INCLUDE: /etc/other, \"john doe\"@example.org",
	    &list, err, sizeof err), 0);
	ck_assert_uint_eq(list.count, 10);

	ck_assert_int_eq(list.targets[0].type, ALIAS_TARGET_ADDRESS);
	ck_assert_str_eq(list.targets[0].text, "alice");
	ck_assert_int_eq(list.targets[1].type, ALIAS_TARGET_ADDRESS);
	ck_assert_str_eq(list.targets[1].text, "bob@example.org");
	ck_assert_int_eq(list.targets[2].type, ALIAS_TARGET_COMMAND);
	ck_assert_str_eq(list.targets[2].text, "/usr/bin/vacation alice");
	ck_assert_int_eq(list.targets[3].type, ALIAS_TARGET_COMMAND);
	ck_assert_str_eq(list.targets[3].text, "/bin/filter -a, -b");
	ck_assert_int_eq(list.targets[4].type, ALIAS_TARGET_FILE);
	ck_assert_str_eq(list.targets[4].text, "/var/log/mail-copy");
	ck_assert_int_eq(list.targets[5].type, ALIAS_TARGET_FILE);
	ck_assert_str_eq(list.targets[5].text, "/home/x/Maildir/");
	ck_assert_int_eq(list.targets[6].type, ALIAS_TARGET_INCLUDE);
	ck_assert_str_eq(list.targets[6].text, "/etc/mail/staff");
	ck_assert_int_eq(list.targets[7].type, ALIAS_TARGET_LOCAL);
	ck_assert_str_eq(list.targets[7].text, "carol");
	ck_assert_int_eq(list.targets[8].type, ALIAS_TARGET_INCLUDE);
	ck_assert_str_eq(list.targets[8].text, "/etc/other");
	ck_assert_int_eq(list.targets[9].type, ALIAS_TARGET_ADDRESS);
	ck_assert_str_eq(list.targets[9].text, "\"john doe\"@example.org");
	alias_target_list_free(&list);
}
END_TEST

START_TEST(split_skips_empty_items)
{
	struct alias_target_list list = { 0 };
	char err[256];

	ck_assert_int_eq(aliases_split(" a ,, b ,", &list, err, sizeof err), 0);
	ck_assert_uint_eq(list.count, 2);
	ck_assert_str_eq(list.targets[0].text, "a");
	ck_assert_str_eq(list.targets[1].text, "b");
	alias_target_list_free(&list);
}
END_TEST

START_TEST(split_include_text)
{
	struct alias_target_list list = { 0 };
	char err[256];

	ck_assert_int_eq(aliases_split_include(
	    "# staff list, \"quotes\" here do not count\n"
	    "alice\n"
	    "bob@example.org, carol\n"
	    "\n"
	    "  # indented comment\n"
	    "|/usr/bin/logger\n",
	    &list, err, sizeof err), 0);
	ck_assert_uint_eq(list.count, 4);
	ck_assert_str_eq(list.targets[0].text, "alice");
	ck_assert_str_eq(list.targets[1].text, "bob@example.org");
	ck_assert_str_eq(list.targets[2].text, "carol");
	ck_assert_int_eq(list.targets[3].type, ALIAS_TARGET_COMMAND);
	ck_assert_str_eq(list.targets[3].text, "/usr/bin/logger");
	alias_target_list_free(&list);
}
END_TEST

static int
count_entry(const char *name, const char *value, unsigned lineno, void *arg)
{
	unsigned *lines = arg;

	lines[0]++;
	if (strcmp(name, "second") == 0)
		lines[1] = lineno;
	return 0;
}

START_TEST(parse_reports_line_numbers)
{
	unsigned counts[2] = { 0, 0 };
	char err[256];

	write_source("# header\nfirst: a,\n  b\n\nsecond: c\n");
	ck_assert_int_eq(aliases_parse(source_path, count_entry, counts, err, sizeof err), 0);
	ck_assert_uint_eq(counts[0], 2);
	ck_assert_uint_eq(counts[1], 5);
	remove_work_dir();
}
END_TEST

Suite *
aliases_suite(void)
{
	Suite *suite = suite_create("aliases");
	TCase *compile = tcase_create("compile");
	TCase *split = tcase_create("split");

	tcase_add_test(compile, compile_basic_file);
	tcase_add_test(compile, compile_duplicate_keeps_first);
	tcase_add_test(compile, compile_errors_name_line);
	tcase_add_test(compile, compile_failure_keeps_old_map);
	tcase_add_test(compile, compile_missing_source);
	tcase_add_test(compile, parse_reports_line_numbers);
	suite_add_tcase(suite, compile);

	tcase_add_test(split, split_target_types);
	tcase_add_test(split, split_skips_empty_items);
	tcase_add_test(split, split_include_text);
	suite_add_tcase(suite, split);
	return suite;
}
