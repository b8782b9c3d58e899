/* Unit tests for the DATA/BDAT decoder in lib/smtp_data.c. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

struct decode_result {
	char out[4096];
	size_t outlen;
	size_t consumed;
	unsigned flags;
	int done;
};

/* Decode INPUT in pieces of STEP bytes (0: all at once). */
static void
decode(enum smtp_data_mode mode, const char *input, size_t len, size_t step,
    struct decode_result *r)
{
	struct smtp_data_decoder d;
	char piece[4096 + 1];

	memset(r, 0, sizeof *r);
	smtp_data_init(&d, mode, 998);
	while (r->consumed < len && !d.done) {
		size_t n = step == 0 || len - r->consumed < step ? len - r->consumed : step;
		size_t got, used;

		used = smtp_data_decode(&d, input + r->consumed, n, piece, &got);
		memcpy(r->out + r->outlen, piece, got);
		r->outlen += got;
		r->consumed += used;
		if (used < n)
			break;
	}
	if (mode == SMTP_DATA_CHUNK)
		r->outlen += smtp_data_finish(&d, r->out + r->outlen);
	r->out[r->outlen] = '\0';
	r->flags = d.flags;
	r->done = d.done;
}

/* Check INPUT in DATA mode, at once and one byte at a time. */
static void
check_dot(const char *input, int done, const char *expected, size_t consumed, unsigned flags)
{
	size_t steps[] = { 0, 1, 2, 3 };

	for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
		struct decode_result r;

		decode(SMTP_DATA_DOT, input, strlen(input), steps[s], &r);
		ck_assert_msg(r.done == done, "done=%d for %s step %zu", r.done, input, steps[s]);
		ck_assert_str_eq(r.out, expected);
		ck_assert_uint_eq(r.consumed, consumed);
		ck_assert_uint_eq(r.flags, flags);
	}
}

START_TEST(dot_simple_message)
{
	check_dot("Subject: x\r\n\r\nhello\r\n.\r\n", 1, "Subject: x\n\nhello\n", 24, 0);
}
END_TEST

START_TEST(dot_empty_message)
{
	check_dot(".\r\n", 1, "", 3, 0);
}
END_TEST

START_TEST(dot_stops_at_end)
{
	check_dot("a\r\n.\r\nQUIT\r\n", 1, "a\n", 6, 0);
}
END_TEST

START_TEST(dot_unstuffing)
{
	check_dot("..\r\n..x\r\n.y\r\n...\r\n.\r\n", 1, ".\n.x\ny\n..\n", 21, 0);
}
END_TEST

START_TEST(dot_bare_cr_is_content)
{
	check_dot("a\rb\r\n\r.\r\r\n.\r\n", 1, "a\rb\n\r.\r\n", 13, 0);
}
END_TEST

START_TEST(dot_cr_before_crlf)
{
	check_dot("a\r\r\n.\r\n", 1, "a\r\n", 7, 0);
}
END_TEST

START_TEST(smuggling_lf_dot_lf)
{
	check_dot("a\n.\nMAIL FROM:<x@y>\r\n", 0, "a\n\nMAIL FROM:<x@y>\n", 21, SMTP_DATA_BARE_LF);
}
END_TEST

START_TEST(smuggling_cr_dot_cr)
{
	check_dot("a\r.\rMAIL\r\n", 0, "a\r.\rMAIL\n", 10, 0);
}
END_TEST

START_TEST(smuggling_crlf_dot_lf)
{
	check_dot("a\r\n.\nMAIL\r\n", 0, "a\n\nMAIL\n", 11, SMTP_DATA_BARE_LF);
}
END_TEST

START_TEST(smuggling_lf_dot_crlf)
{
	check_dot("a\n.\r\nMAIL\r\n", 0, "a\n\nMAIL\n", 11, SMTP_DATA_BARE_LF);
}
END_TEST

START_TEST(smuggling_crlf_dot_cr)
{
	check_dot("a\r\n.\rMAIL\r\n", 0, "a\n\rMAIL\n", 11, 0);
}
END_TEST

START_TEST(smuggling_then_real_end)
{
	check_dot("a\n.\nb\r\n.\r\n", 1, "a\n\nb\n", 10, SMTP_DATA_BARE_LF);
}
END_TEST

START_TEST(dot_nul_byte)
{
	struct decode_result r;

	decode(SMTP_DATA_DOT, "a\0b\r\n.\r\n", 8, 1, &r);
	ck_assert_int_eq(r.done, 1);
	ck_assert_uint_eq(r.outlen, 4);
	ck_assert_mem_eq(r.out, "a\0b\n", 4);
	ck_assert_uint_eq(r.flags, SMTP_DATA_NUL);
}
END_TEST

START_TEST(dot_long_line)
{
	char input[2100];
	struct decode_result r;

	memset(input, 'x', 999);
	strcpy(input + 999, "\r\n.\r\n");
	decode(SMTP_DATA_DOT, input, strlen(input), 0, &r);
	ck_assert_int_eq(r.done, 1);
	ck_assert_uint_eq(r.flags, SMTP_DATA_LONG_LINE);
}
END_TEST

START_TEST(dot_line_at_limit)
{
	char input[2100];
	struct decode_result r;

	/* 998 octets: a stuffed dot does not count, a bare CR does. */
	input[0] = '.';
	memset(input + 1, 'x', 997);
	input[998] = '\r';
	strcpy(input + 999, "\r\n.\r\n");
	decode(SMTP_DATA_DOT, input, strlen(input), 0, &r);
	ck_assert_int_eq(r.done, 1);
	ck_assert_uint_eq(r.flags, 0);
	ck_assert_uint_eq(r.outlen, 999);
}
END_TEST

START_TEST(dot_output_bound)
{
	struct smtp_data_decoder d;
	char out[3];
	size_t got;

	/* A CR held back by one call comes out with the next byte. */
	smtp_data_init(&d, SMTP_DATA_DOT, 998);
	ck_assert_uint_eq(smtp_data_decode(&d, "a\r", 2, out, &got), 2);
	ck_assert_uint_eq(got, 1);
	ck_assert_uint_eq(smtp_data_decode(&d, "b", 1, out, &got), 1);
	ck_assert_uint_eq(got, 2);
	ck_assert_mem_eq(out, "\rb", 2);
}
END_TEST

START_TEST(chunk_crlf_to_lf)
{
	struct decode_result r;
	const char *input = "a\r\nb\nc\rd\r\n.\r\n..\r";

	for (size_t step = 0; step < 4; step++) {
		decode(SMTP_DATA_CHUNK, input, strlen(input), step, &r);
		ck_assert_str_eq(r.out, "a\nb\nc\rd\n.\n..\r");
		ck_assert_uint_eq(r.consumed, strlen(input));
		ck_assert_int_eq(r.done, 0);
		ck_assert_uint_eq(r.flags, 0);
	}
}
END_TEST

/* Whole input and one byte at a time agree on random content, so the
 * decoder's fast copy of plain runs changes nothing. */
START_TEST(random_content_any_piece_size)
{
	static const char alphabet[] = { 'a', 'b', '.', '\r', '\n', '\0' };
	struct decode_result whole, bytes;
	char input[600];

	srandom(12345);
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)(random() % (long)sizeof input);

		for (size_t i = 0; i < len; i++)
			input[i] = alphabet[random() % (long)sizeof alphabet];
		for (int mode = 0; mode < 2; mode++) {
			enum smtp_data_mode m = mode == 0 ? SMTP_DATA_DOT : SMTP_DATA_CHUNK;

			decode(m, input, len, 0, &whole);
			decode(m, input, len, 1, &bytes);
			ck_assert_uint_eq(whole.outlen, bytes.outlen);
			ck_assert_mem_eq(whole.out, bytes.out, whole.outlen);
			ck_assert_uint_eq(whole.consumed, bytes.consumed);
			ck_assert_uint_eq(whole.flags, bytes.flags);
			ck_assert_int_eq(whole.done, bytes.done);
		}
	}
}
END_TEST


START_TEST(bdat_arguments)
{
	unsigned long long size;
	int last;

	ck_assert_int_eq(smtp_bdat_parse("4096", &size, &last), 0);
	ck_assert_uint_eq(size, 4096);
	ck_assert_int_eq(last, 0);
	ck_assert_int_eq(smtp_bdat_parse("0 last", &size, &last), 0);
	ck_assert_uint_eq(size, 0);
	ck_assert_int_eq(last, 1);

	ck_assert_int_eq(smtp_bdat_parse("", &size, &last), -1);
	ck_assert_int_eq(smtp_bdat_parse("-1", &size, &last), -1);
	ck_assert_int_eq(smtp_bdat_parse("x", &size, &last), -1);
	ck_assert_int_eq(smtp_bdat_parse("12 NOTLAST", &size, &last), -1);
	ck_assert_int_eq(smtp_bdat_parse("99999999999999999999999", &size, &last), -1);
}
END_TEST

Suite *
smtp_data_suite(void)
{
	Suite *s = suite_create("smtp_data");
	TCase *tc = tcase_create("decode");

	tcase_add_test(tc, dot_simple_message);
	tcase_add_test(tc, dot_empty_message);
	tcase_add_test(tc, dot_stops_at_end);
	tcase_add_test(tc, dot_unstuffing);
	tcase_add_test(tc, dot_bare_cr_is_content);
	tcase_add_test(tc, dot_cr_before_crlf);
	tcase_add_test(tc, smuggling_lf_dot_lf);
	tcase_add_test(tc, smuggling_cr_dot_cr);
	tcase_add_test(tc, smuggling_crlf_dot_lf);
	tcase_add_test(tc, smuggling_lf_dot_crlf);
	tcase_add_test(tc, smuggling_crlf_dot_cr);
	tcase_add_test(tc, smuggling_then_real_end);
	tcase_add_test(tc, dot_nul_byte);
	tcase_add_test(tc, dot_long_line);
	tcase_add_test(tc, dot_line_at_limit);
	tcase_add_test(tc, dot_output_bound);
	tcase_add_test(tc, chunk_crlf_to_lf);
	tcase_add_test(tc, random_content_any_piece_size);
	tcase_add_test(tc, bdat_arguments);
	suite_add_tcase(s, tc);
	return s;
}
