/*
 * Unit tests for queued/outbound_data.c: the message content in SMTP
 * form, with the spool file split into chunks at every position. The
 * queued source is compiled in here because unit-tests links only lib/.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../queued/outbound_data.c"

/* Return the SMTP form of the LEN octets at SPOOL, added in two calls
 * split after SPLIT octets. The caller frees the result. */
static char *
wire_form(const char *spool, size_t len, size_t split)
{
	struct evbuffer *out = evbuffer_new();
	struct outbound_data data;
	size_t wire_len;
	char *wire;

	outbound_data_init(&data);
	outbound_data_add(&data, out, spool, split);
	outbound_data_add(&data, out, spool + split, len - split);
	outbound_data_finish(&data, out);

	wire_len = evbuffer_get_length(out);
	wire = malloc(wire_len + 1);
	evbuffer_remove(out, wire, wire_len);
	wire[wire_len] = '\0';
	evbuffer_free(out);
	return wire;
}

/* Check that SPOOL has the SMTP form EXPECTED at every split point. */
static void
assert_wire_form(const char *spool, const char *expected)
{
	size_t len = strlen(spool);

	for (size_t split = 0; split <= len; split++) {
		char *wire = wire_form(spool, len, split);

		ck_assert_msg(strcmp(wire, expected) == 0, "split after %zu octets: got \"%s\"",
		    split, wire);
		free(wire);
	}
}

START_TEST(line_ends)
{
	assert_wire_form("a\nb\n", "a\r\nb\r\n.\r\n");
	assert_wire_form("a\r\nb\r\n", "a\r\nb\r\n.\r\n");
	assert_wire_form("a\r\nb", "a\r\nb\r\n.\r\n");
	assert_wire_form("a\n\nb\n", "a\r\n\r\nb\r\n.\r\n");
}
END_TEST

START_TEST(dot_stuffing)
{
	assert_wire_form(".\n", "..\r\n.\r\n");
	assert_wire_form("a\n.b\r\n.\r\n", "a\r\n..b\r\n..\r\n.\r\n");
	assert_wire_form("a.\n", "a.\r\n.\r\n");
}
END_TEST

START_TEST(bare_cr_becomes_space)
{
	assert_wire_form("first\r.\rMAIL FROM:<x@example.test>\n",
	    "first . MAIL FROM:<x@example.test>\r\n.\r\n");
	assert_wire_form("a\r\r\nb\n", "a \r\nb\r\n.\r\n");
	assert_wire_form("\r.\n", " .\r\n.\r\n");
	assert_wire_form("a\r", "a \r\n.\r\n");
	assert_wire_form("a\n\r\n.\r", "a\r\n\r\n.. \r\n.\r\n");
}
END_TEST

START_TEST(bare_cr_wire_size)
{
	char path[] = "/tmp/outbound-data-XXXXXX";
	const char spool[] = "a\r.\rb\r\n.c\r";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(write(fd, spool, sizeof spool - 1), (ssize_t)(sizeof spool - 1));

	/* "a . b" CRLF ".c " CRLF: the stuffed dot and the final "." are left out. */
	ck_assert_int_eq(outbound_data_wire_size(fd, NULL, 0), 7 + 5);
	ck_assert_int_eq(outbound_data_wire_size(-1, spool, sizeof spool - 1), 7 + 5);
	close(fd);
}
END_TEST

START_TEST(long_body_line)
{
	char spool[OUTBOUND_LINE_MAX + 3];
	char *wire;

	memcpy(spool, "\n", 1);
	memset(spool + 1, 'x', OUTBOUND_LINE_MAX);
	memcpy(spool + 1 + OUTBOUND_LINE_MAX, "\r", 2);

	wire = wire_form(spool, strlen(spool), 0);
	ck_assert_uint_eq(strlen(wire), 2 + OUTBOUND_LINE_MAX + 2 + 1 + 2 + 3);
	ck_assert_str_eq(wire + 2 + OUTBOUND_LINE_MAX, "\r\n \r\n.\r\n");
	free(wire);
}
END_TEST

Suite *
outbound_data_suite(void)
{
	Suite *s = suite_create("outbound_data");
	TCase *tc = tcase_create("outbound_data");

	tcase_add_test(tc, line_ends);
	tcase_add_test(tc, dot_stuffing);
	tcase_add_test(tc, bare_cr_becomes_space);
	tcase_add_test(tc, bare_cr_wire_size);
	tcase_add_test(tc, long_body_line);
	suite_add_tcase(s, tc);
	return s;
}
