/* Unit tests for the in-place header edits of lib/header_edit.c. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../lib/header_edit.c"

/* A spool file holding TEXT, with the offset at its end as smtpd leaves it. */
static int
spool_with(const char *text)
{
	int fd = memfd_create("spool", 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	return fd;
}

/* The whole content of FD, NUL-terminated. */
static char *
spool_content(int fd)
{
	off_t size = lseek(fd, 0, SEEK_END);
	char *text = xmalloc((size_t)size + 1);

	ck_assert_int_eq(pread(fd, text, (size_t)size, 0), size);
	text[size] = '\0';
	return text;
}

/* Apply EDITS to TEXT and check the result against EXPECTED, the new
 * size and the file offset. */
static void
check_edit(const char *text, const struct header_edits *edits, const char *expected)
{
	int fd = spool_with(text);
	off_t new_size = -1;
	char err[256] = "";
	char *result;

	ck_assert_int_eq(header_edit_apply(fd, (off_t)strlen(text), edits, &new_size, err,
	    sizeof err), 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(new_size, (off_t)strlen(expected));
	ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), new_size);
	result = spool_content(fd);
	ck_assert_str_eq(result, expected);
	free(result);
	close(fd);
}

/* A body of LEN bytes of a repeating pattern, longer than one chunk. */
static char *
long_message(const char *header, size_t body_len)
{
	size_t header_len = strlen(header);
	char *text = xmalloc(header_len + body_len + 1);

	memcpy(text, header, header_len);
	for (size_t i = 0; i < body_len; i++)
		text[header_len + i] = (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
	text[header_len + body_len] = '\0';
	return text;
}

START_TEST(insert_grows_long_body)
{
	char *fields[] = { "X-Spam-Flag: YES", "X-Spam-Status: Yes, score=9.1\n\ttests=FOO" };
	struct header_edits edits = { .fields = fields, .nfields = 2 };
	char *text = long_message("Received: by x\nSubject: hi\n\n", 200000);
	char *expected = xmalloc(strlen(text) + 100);

	strcpy(expected, "X-Spam-Flag: YES\nX-Spam-Status: Yes, score=9.1\n\ttests=FOO\n");
	strcat(expected, text);
	check_edit(text, &edits, expected);
	free(text);
	free(expected);
}
END_TEST

START_TEST(removal_shrinks_long_body)
{
	struct header_removal removals[] = { { "X-Spam-Status", 1 } };
	struct header_edits edits = { .removals = removals, .nremovals = 1 };
	char *text = long_message("Received: by x\nX-Spam-Status: forged by the sender\n\n", 150001);
	char *expected = long_message("Received: by x\n\n", 150001);

	check_edit(text, &edits, expected);
	free(text);
	free(expected);
}
END_TEST

START_TEST(remove_second_of_three)
{
	struct header_removal removals[] = { { "x-tag", 2 } };
	struct header_edits edits = { .removals = removals, .nremovals = 1 };

	check_edit("Received: by x\nX-Tag: one\nX-Tag: two\n folded\nX-Tag: three\n\nbody\n", &edits,
	    "Received: by x\nX-Tag: one\nX-Tag: three\n\nbody\n");
}
END_TEST

START_TEST(remove_missing_index)
{
	struct header_removal removals[] = { { "X-Tag", 4 } };
	struct header_edits edits = { .removals = removals, .nremovals = 1 };
	const char *text = "X-Tag: one\nX-Tag: two\n\nbody\n";

	check_edit(text, &edits, text);
}
END_TEST

START_TEST(subject_prefix_plain)
{
	struct header_edits edits = { .subject_prefix = "[SPAM]" };

	check_edit("Received: by x\nSubject: hello\n\nbody\n", &edits,
	    "Received: by x\nSubject: [SPAM] hello\n\nbody\n");
}
END_TEST

START_TEST(subject_prefix_folded)
{
	struct header_edits edits = { .subject_prefix = "[SPAM] " };

	check_edit("Received: by x\nSubject:\n  a long\n subject\n\nbody\n", &edits,
	    "Received: by x\nSubject: [SPAM]\n  a long\n subject\n\nbody\n");
	check_edit("Subject: a long\n\tsubject\nTo: b@example.test\n\nbody\n", &edits,
	    "Subject: [SPAM] a long\n\tsubject\nTo: b@example.test\n\nbody\n");
}
END_TEST

START_TEST(subject_prefix_first_only)
{
	struct header_edits edits = { .subject_prefix = "[SPAM]" };

	check_edit("subject: one\nSubject: two\n\n", &edits, "subject: [SPAM] one\nSubject: two\n\n");
}
END_TEST

START_TEST(subject_prefix_adds_missing_subject)
{
	struct header_edits edits = { .subject_prefix = "[SPAM]" };

	check_edit("Received: by x\n\nbody\n", &edits, "Received: by x\nSubject: [SPAM]\n\nbody\n");
}
END_TEST

START_TEST(message_without_body)
{
	char *fields[] = { "X-Scanned: yes" };
	struct header_edits edits = { .fields = fields, .nfields = 1 };

	check_edit("Received: by x\nSubject: s\n\n", &edits,
	    "X-Scanned: yes\nReceived: by x\nSubject: s\n\n");
}
END_TEST

START_TEST(message_without_separator)
{
	char *fields[] = { "X-Scanned: yes" };
	struct header_removal removals[] = { { "Subject", 1 } };
	struct header_edits edits = { .fields = fields, .nfields = 1, .removals = removals,
	    .nremovals = 1 };

	check_edit("Received: by x\nSubject: s\nTo: a@example.test\n", &edits,
	    "X-Scanned: yes\nReceived: by x\nTo: a@example.test\n");
	check_edit("Received: by x\nSubject: no final line end", &edits,
	    "X-Scanned: yes\nReceived: by x\n");
}
END_TEST

START_TEST(message_with_empty_header)
{
	char *fields[] = { "X-Scanned: yes" };
	struct header_edits edits = { .fields = fields, .nfields = 1 };

	check_edit("\nbody only\n", &edits, "X-Scanned: yes\n\nbody only\n");
}
END_TEST

START_TEST(no_edits_unchanged)
{
	struct header_edits edits = { 0 };
	const char *text = "Received: by x\nSubject: s\n\nbody\n";

	check_edit(text, &edits, text);
}
END_TEST

START_TEST(header_too_long_fails)
{
	char *fields[] = { "X-Scanned: yes" };
	struct header_edits edits = { .fields = fields, .nfields = 1 };
	size_t len = HEADER_EDIT_MAX + 100;
	char *text = xmalloc(len + 1);
	off_t new_size = -1;
	char err[256] = "";
	int fd;

	/* One folded field with no empty line in the first HEADER_EDIT_MAX bytes. */
	memcpy(text, "X-Long: a", 9);
	for (size_t i = 9; i < len; i++)
		text[i] = (i % 70 == 0) ? '\n' : (i % 70 == 1 ? ' ' : 'b');
	memcpy(text + len - 7, "\n\nbody\n", 7);
	text[len] = '\0';
	fd = spool_with(text);

	ck_assert_int_eq(header_edit_apply(fd, (off_t)len, &edits, &new_size, err, sizeof err),
	    HEADER_EDIT_TOO_LARGE);
	ck_assert_ptr_nonnull(strstr(err, "header section longer than"));
	close(fd);
	free(text);
}
END_TEST

START_TEST(short_file_fails)
{
	struct header_edits edits = { .subject_prefix = "[SPAM]" };
	int fd = spool_with("Subject: s\n");
	off_t new_size = -1;
	char err[256] = "";

	ck_assert_int_eq(header_edit_apply(fd, 100, &edits, &new_size, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "reading the header section failed"));
	close(fd);
}
END_TEST

Suite *
header_edit_suite(void)
{
	Suite *s = suite_create("header_edit");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, insert_grows_long_body);
	tcase_add_test(tc, removal_shrinks_long_body);
	tcase_add_test(tc, remove_second_of_three);
	tcase_add_test(tc, remove_missing_index);
	tcase_add_test(tc, subject_prefix_plain);
	tcase_add_test(tc, subject_prefix_folded);
	tcase_add_test(tc, subject_prefix_first_only);
	tcase_add_test(tc, subject_prefix_adds_missing_subject);
	tcase_add_test(tc, message_without_body);
	tcase_add_test(tc, message_without_separator);
	tcase_add_test(tc, message_with_empty_header);
	tcase_add_test(tc, no_edits_unchanged);
	tcase_add_test(tc, header_too_long_fails);
	tcase_add_test(tc, short_file_fails);
	suite_add_tcase(s, tc);
	return s;
}
