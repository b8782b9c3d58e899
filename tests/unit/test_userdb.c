/* Unit tests for lib/userdb.c: tab-escaping and USER reply parsing. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "userdb.h"

START_TEST(tab_escape_specials)
{
	char *escaped = userdb_tab_escape("a\tb\nc\rd\001e");

	ck_assert_str_eq(escaped, "a\001tb\001nc\001rd\0011e");
	free(escaped);
}
END_TEST

START_TEST(tab_escape_plain_unchanged)
{
	char *escaped = userdb_tab_escape("maildir:~/Maildir");

	ck_assert_str_eq(escaped, "maildir:~/Maildir");
	free(escaped);
}
END_TEST

START_TEST(tab_unescape_round_trip)
{
	const char *original = "x\ty\nz\r\001 end";
	char *escaped = userdb_tab_escape(original);

	userdb_tab_unescape(escaped);
	ck_assert_str_eq(escaped, original);
	free(escaped);
}
END_TEST

START_TEST(tab_unescape_unknown_code)
{
	char text[] = "a\001qb\001";

	userdb_tab_unescape(text);
	ck_assert_str_eq(text, "aqb");
}
END_TEST

START_TEST(entry_parse_full)
{
	char fields[] = "alice@example.test\tuid=1001\tgid=1002\thome=/home/alice\t"
	    "mail=maildir:~/Maildir\tquota_rule=*:storage=1G";
	struct userdb_entry entry;

	ck_assert_int_eq(userdb_entry_parse(fields, &entry), 0);
	ck_assert_str_eq(entry.user, "alice@example.test");
	ck_assert_uint_eq(entry.uid, 1001);
	ck_assert_uint_eq(entry.gid, 1002);
	ck_assert_str_eq(entry.home, "/home/alice");
	ck_assert_str_eq(entry.mail, "maildir:~/Maildir");
}
END_TEST

START_TEST(entry_parse_missing_ids)
{
	char fields[] = "bob\thome=/srv/mail/bob";
	struct userdb_entry entry;

	ck_assert_int_eq(userdb_entry_parse(fields, &entry), 0);
	ck_assert_str_eq(entry.user, "bob");
	ck_assert_uint_eq(entry.uid, (uid_t)-1);
	ck_assert_uint_eq(entry.gid, (gid_t)-1);
	ck_assert_str_eq(entry.mail, "");
}
END_TEST

START_TEST(entry_parse_escaped_home)
{
	char fields[] = "carol\tuid=5\tgid=5\thome=/srv/a\001tb";
	struct userdb_entry entry;

	ck_assert_int_eq(userdb_entry_parse(fields, &entry), 0);
	ck_assert_str_eq(entry.home, "/srv/a\tb");
}
END_TEST

START_TEST(entry_parse_rejects_bad_uid)
{
	char negative[] = "dave\tuid=-1\tgid=5";
	char text[] = "dave\tuid=abc\tgid=5";
	char huge[] = "dave\tuid=99999999999\tgid=5";
	char empty_name[] = "\tuid=5";
	struct userdb_entry entry;

	ck_assert_int_eq(userdb_entry_parse(negative, &entry), -1);
	ck_assert_int_eq(userdb_entry_parse(text, &entry), -1);
	ck_assert_int_eq(userdb_entry_parse(huge, &entry), -1);
	ck_assert_int_eq(userdb_entry_parse(empty_name, &entry), -1);
}
END_TEST

START_TEST(lookup_without_server_fails)
{
	struct userdb_client *client = userdb_client_new("/nonexistent/estafeta-userdb");
	struct userdb_entry entry;
	char err[256] = "";

	ck_assert_int_eq(userdb_lookup(client, "alice", "smtp", 500, &entry, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "connect to /nonexistent/estafeta-userdb failed"));
	userdb_client_free(client);
}
END_TEST

START_TEST(lookup_separator_in_name_not_found)
{
	struct userdb_client *client = userdb_client_new("/nonexistent/estafeta-userdb");
	struct userdb_entry entry;
	char err[256] = "";

	ck_assert_int_eq(userdb_lookup(client, "a\tb", "smtp", 500, &entry, err, sizeof err), 0);
	ck_assert_int_eq(userdb_lookup(client, "a\nUSER\t9\troot", "smtp", 500, &entry, err,
	    sizeof err), 0);
	userdb_client_free(client);
}
END_TEST

Suite *
userdb_suite(void)
{
	Suite *suite = suite_create("userdb");
	TCase *tcase = tcase_create("core");

	tcase_add_test(tcase, tab_escape_specials);
	tcase_add_test(tcase, tab_escape_plain_unchanged);
	tcase_add_test(tcase, tab_unescape_round_trip);
	tcase_add_test(tcase, tab_unescape_unknown_code);
	tcase_add_test(tcase, entry_parse_full);
	tcase_add_test(tcase, entry_parse_missing_ids);
	tcase_add_test(tcase, entry_parse_escaped_home);
	tcase_add_test(tcase, entry_parse_rejects_bad_uid);
	tcase_add_test(tcase, lookup_without_server_fails);
	tcase_add_test(tcase, lookup_separator_in_name_not_found);
	suite_add_tcase(suite, tcase);
	return suite;
}
