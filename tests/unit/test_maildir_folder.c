/*
 * Unit tests for deliverd/maildir_folder.c: the subscriptions file that
 * deliverd updates when it creates the quarantine folder. The deliverd
 * source is compiled in here because unit-tests links only lib/.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../deliverd/maildir_folder.c"

/* A new empty directory under /tmp; the caller removes it with remove_tree. */
static char *
make_root(void)
{
	char *root = xstrdup("/tmp/est-unit-maildir-XXXXXX");

	ck_assert_ptr_nonnull(mkdtemp(root));
	return root;
}

static void
write_text(const char *root, const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s", root, name);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

/* The contents of ROOT/NAME as a new string, or NULL when it is missing. */
static char *
read_text(const char *root, const char *name)
{
	char path[PATH_MAX];
	size_t len = 0;
	int fd;
	char *text;

	snprintf(path, sizeof path, "%s/%s", root, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	text = read_file(fd, &len);
	close(fd);
	return text;
}

static void
remove_tree(char *root)
{
	char command[PATH_MAX + 16];

	snprintf(command, sizeof command, "rm -rf '%s'", root);
	ck_assert_int_eq(system(command), 0);
	free(root);
}

START_TEST(subscribe_dovecot_v2_file)
{
	char *root = make_root(), *text;

	write_text(root, "subscriptions", "V\t2\n\nSent\nProjects\tEstafeta\n");
	ck_assert_int_eq(maildir_subscribe(root, "Spam.Quarantine"), 0);
	text = read_text(root, "subscriptions");
	ck_assert_str_eq(text, "V\t2\n\nSent\nProjects\tEstafeta\nSpam\tQuarantine\n");
	free(text);
	remove_tree(root);
}
END_TEST

START_TEST(subscribe_old_format_file)
{
	char *root = make_root(), *text;

	write_text(root, "subscriptions", "Sent\nProjects.Estafeta\n");
	ck_assert_int_eq(maildir_subscribe(root, "Spam.Quarantine"), 0);
	text = read_text(root, "subscriptions");
	ck_assert_str_eq(text, "Sent\nProjects.Estafeta\nSpam.Quarantine\n");
	free(text);
	remove_tree(root);
}
END_TEST

START_TEST(subscribe_listed_name_unchanged)
{
	char *root = make_root(), *text;

	write_text(root, "subscriptions", "V\t2\n\nJunk\nSent\n");
	ck_assert_int_eq(maildir_subscribe(root, "Junk"), 0);
	text = read_text(root, "subscriptions");
	ck_assert_str_eq(text, "V\t2\n\nJunk\nSent\n");
	free(text);
	remove_tree(root);
}
END_TEST

/* "Junk" is a prefix of a listed name, and must still be added. */
START_TEST(subscribe_prefix_not_a_match)
{
	char *root = make_root(), *text;

	write_text(root, "subscriptions", "V\t2\n\nJunkyard\n");
	ck_assert_int_eq(maildir_subscribe(root, "Junk"), 0);
	text = read_text(root, "subscriptions");
	ck_assert_str_eq(text, "V\t2\n\nJunkyard\nJunk\n");
	free(text);
	remove_tree(root);
}
END_TEST

START_TEST(subscribe_adds_missing_line_end)
{
	char *root = make_root(), *text;

	write_text(root, "subscriptions", "V\t2\n\nSent");
	ck_assert_int_eq(maildir_subscribe(root, "Junk"), 0);
	text = read_text(root, "subscriptions");
	ck_assert_str_eq(text, "V\t2\n\nSent\nJunk\n");
	free(text);
	remove_tree(root);
}
END_TEST

/* Without a subscriptions file imapd subscribes the special-use folders
 * at the first login, so deliverd creates none. */
START_TEST(subscribe_missing_file_left_missing)
{
	char *root = make_root(), *text;

	ck_assert_int_eq(maildir_subscribe(root, "Junk"), 0);
	text = read_text(root, "subscriptions");
	ck_assert_ptr_null(text);
	remove_tree(root);
}
END_TEST

START_TEST(folder_setup_marks_folder)
{
	char *root = make_root(), *text;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	struct stat st;

	snprintf(dir, sizeof dir, "%s/.Junk", root);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	write_text(root, "subscriptions", "V\t2\n\n");
	maildir_folder_setup(root, "Junk", dir);

	snprintf(path, sizeof path, "%s/maildirfolder", dir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	text = read_text(root, "subscriptions");
	ck_assert_str_eq(text, "V\t2\n\nJunk\n");
	free(text);
	remove_tree(root);
}
END_TEST

Suite *
maildir_folder_suite(void)
{
	Suite *suite = suite_create("maildir_folder");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, subscribe_dovecot_v2_file);
	tcase_add_test(tc, subscribe_old_format_file);
	tcase_add_test(tc, subscribe_listed_name_unchanged);
	tcase_add_test(tc, subscribe_prefix_not_a_match);
	tcase_add_test(tc, subscribe_adds_missing_line_end);
	tcase_add_test(tc, subscribe_missing_file_left_missing);
	tcase_add_test(tc, folder_setup_marks_folder);
	suite_add_tcase(suite, tc);
	return suite;
}
