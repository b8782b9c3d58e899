/*
 * Unit tests for imapd's argument tokenizer (imapd/parse.c), the
 * mailbox name checks (imapd/folders.c) and the dovecot-uidlist format
 * (imapd/uidlist.c, imapd/mailbox.c). Those modules belong to the
 * imapd program, not to libestafeta, so they are compiled in here.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../imapd/folders.c"
#include "../../imapd/mailbox.c"
#include "../../imapd/parse.c"
#include "../../imapd/uidlist.c"

static struct imap_parser
parser_for(const char *text)
{
	struct imap_parser parser;

	imap_parser_init(&parser, text, strlen(text));
	return parser;
}

START_TEST(imap_command_start)
{
	char tag[16], name[16];
	struct imap_parser parser = parser_for("a001 noop");

	ck_assert_int_eq(imap_parse_command_start(&parser, tag, sizeof tag, name, sizeof name), 0);
	ck_assert_str_eq(tag, "a001");
	ck_assert_str_eq(name, "NOOP");
	ck_assert(imap_parse_at_end(&parser));

	parser = parser_for("+x NOOP");
	ck_assert_int_eq(imap_parse_command_start(&parser, tag, sizeof tag, name, sizeof name), -1);
	parser = parser_for("a1");
	ck_assert_int_eq(imap_parse_command_start(&parser, tag, sizeof tag, name, sizeof name), -2);
	parser = parser_for("a1 (x)");
	ck_assert_int_eq(imap_parse_command_start(&parser, tag, sizeof tag, name, sizeof name), -2);
}
END_TEST

START_TEST(imap_astring_forms)
{
	struct imap_parser parser = parser_for("atom \"quo\\\"ted\" {3}\r\nlit {2+}\r\nab");
	char *text;

	text = imap_parse_astring_dup(&parser, 100);
	ck_assert_str_eq(text, "atom");
	free(text);
	ck_assert_int_eq(imap_parse_sp(&parser), 0);
	text = imap_parse_astring_dup(&parser, 100);
	ck_assert_str_eq(text, "quo\"ted");
	free(text);
	ck_assert_int_eq(imap_parse_sp(&parser), 0);
	text = imap_parse_astring_dup(&parser, 100);
	ck_assert_str_eq(text, "lit");
	free(text);
	ck_assert_int_eq(imap_parse_sp(&parser), 0);
	text = imap_parse_astring_dup(&parser, 100);
	ck_assert_str_eq(text, "ab");
	free(text);
	ck_assert(imap_parse_at_end(&parser));
}
END_TEST

START_TEST(imap_astring_invalid)
{
	static const char *const cases[] = {
		"\"unterminated", "\"bad\\escape\"", "{5}\r\nabc", "{}\r\n", "{3}abc",
		"{99999999999}\r\n", "(list)", "",
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct imap_parser parser = parser_for(cases[i]);
		char *text = imap_parse_astring_dup(&parser, 100);

		ck_assert_msg(text == NULL, "accepted \"%s\"", cases[i]);
	}
}
END_TEST

START_TEST(imap_astring_nul_and_length)
{
	static const char with_nul[] = "{3}\r\na\0b";
	struct imap_parser parser;

	imap_parser_init(&parser, with_nul, sizeof with_nul - 1);
	ck_assert_ptr_null(imap_parse_astring_dup(&parser, 100));
	parser = parser_for("abcdef");
	ck_assert_ptr_null(imap_parse_astring_dup(&parser, 5));
}
END_TEST

START_TEST(imap_seqset_ranges)
{
	struct imap_parser parser = parser_for("1,3:5,*,9:7");
	struct imap_seqset set;

	ck_assert_int_eq(imap_parse_seqset(&parser, &set), 0);
	ck_assert_uint_eq(set.count, 4);
	ck_assert(imap_seqset_contains(&set, 1, 20));
	ck_assert(!imap_seqset_contains(&set, 2, 20));
	ck_assert(imap_seqset_contains(&set, 4, 20));
	ck_assert(imap_seqset_contains(&set, 8, 20));
	ck_assert(imap_seqset_contains(&set, 20, 20));
	ck_assert(!imap_seqset_contains(&set, 19, 20));
	imap_seqset_free(&set);
}
END_TEST

START_TEST(imap_seqset_invalid)
{
	static const char *const cases[] = { "0", "1:0", "x", ",1", "1:", "4294967296" };

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct imap_parser parser = parser_for(cases[i]);
		struct imap_seqset set;

		ck_assert_msg(imap_parse_seqset(&parser, &set) < 0 || !imap_parse_at_end(&parser),
		    "accepted \"%s\"", cases[i]);
		imap_seqset_free(&set);
	}
}
END_TEST

START_TEST(imap_id_params)
{
	static const struct {
		const char *text;
		int valid;
	} cases[] = {
		{ "NIL", 1 }, { "nil", 1 }, { "()", 1 }, { "(\"name\" \"x\")", 1 },
		{ "(\"a\" NIL \"b\" {1}\r\nc)", 1 }, { "(", 0 }, { "(\"a\")", 0 },
		{ "(\"a\" \"b\"", 0 }, { "NILX", 0 }, { "(a b)", 0 }, { "", 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct imap_parser parser = parser_for(cases[i].text);

		ck_assert_msg((imap_parse_id_params(&parser) == 0) == cases[i].valid,
		    "wrong result for \"%s\"", cases[i].text);
	}
}
END_TEST

START_TEST(imap_folder_names)
{
	static const struct {
		const char *name;
		const char *path;	/* NULL: rejected */
	} cases[] = {
		{ "INBOX", "/m" }, { "inbox", "/m" }, { "Sent", "/m/.Sent" },
		{ "A.B", "/m/.A.B" }, { "Entw&APw-rfe", "/m/.Entw&APw-rfe" },
		{ "..", NULL }, { "../x", NULL }, { ".x", NULL }, { "x.", NULL },
		{ "a..b", NULL }, { "a/b", NULL }, { "/etc", NULL }, { "~x", NULL },
		{ "&Jjo", NULL }, { "&", NULL }, { "a\tb", NULL }, { "", NULL },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char name[64], path[PATH_MAX];
		int r;

		strcpy(name, cases[i].name);
		r = folder_path("/m", name, path, sizeof path);
		if (cases[i].path == NULL) {
			ck_assert_msg(r < 0, "accepted \"%s\"", cases[i].name);
		} else {
			ck_assert_msg(r == 0, "rejected \"%s\"", cases[i].name);
			ck_assert_str_eq(path, cases[i].path);
		}
	}
}
END_TEST

START_TEST(imap_list_patterns)
{
	ck_assert(folder_match("*", "A.B.C"));
	ck_assert(folder_match("%", "INBOX"));
	ck_assert(!folder_match("%", "A.B"));
	ck_assert(folder_match("A.%", "A.B"));
	ck_assert(!folder_match("A.%", "A.B.C"));
	ck_assert(folder_match("A*C", "A.B.C"));
	ck_assert(!folder_match("B*", "A.B"));
}
END_TEST

/* A Maildir in a new temporary directory; the caller removes it. */
static void
make_maildir(char *dir, size_t size)
{
	snprintf(dir, size, "/tmp/imap-unit-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(maildir_create(dir, 0), 0);
}

static void
write_text(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

static char *
read_text(const char *dir, const char *name)
{
	char path[PATH_MAX];
	size_t len;
	char *text;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	text = read_file(path, &len);
	ck_assert_ptr_nonnull(text);
	return text;
}

static void
remove_maildir(const char *dir)
{
	char command[PATH_MAX + 16];

	snprintf(command, sizeof command, "rm -rf '%s'", dir);
	ck_assert_int_eq(system(command), 0);
}

START_TEST(imap_uidlist_dovecot_file)
{
	char dir[64];
	struct mailbox *box;
	char *text;

	make_maildir(dir, sizeof dir);
	write_text(dir, "cur/100.M1P1.h:2,S", "Subject: a\n\nA\n");
	write_text(dir, "new/101.M2P2.h", "Subject: b\n\nB\n");
	write_text(dir, "new/102.M3P3.h", "Subject: c\n\nC\n");
	/* N is stale, as after Dovecot appended line 7; "x" and "0" are invalid. */
	write_text(dir, "dovecot-uidlist",
	    "3 V123 N5 G0123456789abcdef0123456789abcdef X1\n"
	    "1 W10 :100.M1P1.h\n"
	    "7 :101.M2P2.h\n"
	    "x :102.M3P3.h\n"
	    "0 :102.M3P3.h\n");

	box = mailbox_open("INBOX", dir, 1);
	ck_assert_ptr_nonnull(box);
	ck_assert_uint_eq(box->uidvalidity, 123);
	ck_assert_uint_eq(box->count, 3);
	ck_assert_uint_eq(box->messages[0].uid, 1);
	ck_assert_uint_eq(box->messages[0].flags, FLAG_SEEN);
	ck_assert_uint_eq(box->messages[1].uid, 7);
	ck_assert_uint_eq(box->messages[2].uid, 8);
	ck_assert(box->messages[2].recent);
	ck_assert_uint_eq(box->uidnext, 9);

	text = read_text(dir, "dovecot-uidlist");
	ck_assert_str_eq(text,
	    "3 V123 N9 G0123456789abcdef0123456789abcdef X1\n"
	    "1 W10 :100.M1P1.h\n"
	    "7 :101.M2P2.h\n"
	    "8 :102.M3P3.h\n");
	free(text);
	mailbox_free(box);
	remove_maildir(dir);
}
END_TEST

START_TEST(imap_uidlist_new_mailbox)
{
	char dir[64], path[PATH_MAX];
	struct mailbox *box;
	char *text;

	make_maildir(dir, sizeof dir);
	write_text(dir, "new/200.M1P1.h", "Subject: a\n\nA\n");
	box = mailbox_open("INBOX", dir, 0);
	ck_assert_ptr_nonnull(box);
	ck_assert_uint_gt(box->uidvalidity, 0);
	ck_assert_uint_eq(box->uidnext, 2);
	ck_assert_uint_eq(strlen(box->guid), 32);
	ck_assert(box->messages[0].in_new);
	text = read_text(dir, "dovecot-uidlist");
	ck_assert_int_eq(strncmp(text, "3 V", 3), 0);
	ck_assert_ptr_nonnull(strstr(text, " N2 G"));
	ck_assert_ptr_nonnull(strstr(text, "\n1 :200.M1P1.h\n"));
	free(text);
	snprintf(path, sizeof path, "%s/dovecot-uidlist.lock", dir);
	ck_assert_int_eq(access(path, F_OK), -1);

	ck_assert_int_eq(mailbox_set_flags(box, &box->messages[0], FLAG_FLAGGED | FLAG_SEEN, 0x5), 0);
	ck_assert_str_eq(box->messages[0].path, "cur/200.M1P1.h:2,FSac");
	mailbox_free(box);
	remove_maildir(dir);
}
END_TEST

START_TEST(imap_uidlist_delivery_order)
{
	char dir[64];
	struct mailbox *box;

	make_maildir(dir, sizeof dir);
	write_text(dir, "new/100.M100000P1.h", "Subject: second\n\n");
	write_text(dir, "new/100.M99999P1.h", "Subject: first\n\n");
	write_text(dir, "new/99.M5P1.h", "Subject: zeroth\n\n");
	box = mailbox_open("INBOX", dir, 0);
	ck_assert_ptr_nonnull(box);
	ck_assert_uint_eq(box->count, 3);
	ck_assert_str_eq(box->messages[0].base, "99.M5P1.h");
	ck_assert_str_eq(box->messages[1].base, "100.M99999P1.h");
	ck_assert_str_eq(box->messages[2].base, "100.M100000P1.h");
	mailbox_free(box);
	remove_maildir(dir);
}
END_TEST

START_TEST(imap_vsize_from_name)
{
	char dir[64];
	struct mailbox *box;

	make_maildir(dir, sizeof dir);
	write_text(dir, "cur/1.M1P1.h,S=8,W=123:2,", "a\nb\nc\n\n");
	write_text(dir, "cur/2.M2P2.h:2,", "a\nb\r\n");
	box = mailbox_open("INBOX", dir, 0);
	ck_assert_ptr_nonnull(box);
	ck_assert_uint_eq(mailbox_message_vsize(box, &box->messages[0]), 123);
	ck_assert_uint_eq(mailbox_message_vsize(box, &box->messages[1]), 6);
	mailbox_free(box);
	remove_maildir(dir);
}
END_TEST

Suite *
imap_parse_suite(void)
{
	Suite *suite = suite_create("imap_parse");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, imap_command_start);
	tcase_add_test(tc, imap_astring_forms);
	tcase_add_test(tc, imap_astring_invalid);
	tcase_add_test(tc, imap_astring_nul_and_length);
	tcase_add_test(tc, imap_seqset_ranges);
	tcase_add_test(tc, imap_seqset_invalid);
	tcase_add_test(tc, imap_id_params);
	tcase_add_test(tc, imap_folder_names);
	tcase_add_test(tc, imap_list_patterns);
	tcase_add_test(tc, imap_uidlist_dovecot_file);
	tcase_add_test(tc, imap_uidlist_new_mailbox);
	tcase_add_test(tc, imap_uidlist_delivery_order);
	tcase_add_test(tc, imap_vsize_from_name);
	suite_add_tcase(suite, tc);
	return suite;
}
