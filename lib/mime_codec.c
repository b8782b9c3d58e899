/*
 * Decoders: base64 and quoted-printable (RFC 2045 section 6), charset
 * conversion to UTF-8 with iconv, and RFC 2047 encoded words.
 */
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

static const char replacement[] = "\xef\xbf\xbd";	/* U+FFFD in UTF-8 */

static int
base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Characters outside the alphabet are skipped (RFC 2045 section 6.8);
 * decoding stops at the first '='. */
char *
mime_base64_decode(const char *in, size_t len, size_t *out_len)
{
	char *out = xmalloc(len / 4 * 3 + 4);
	unsigned int bits = 0;
	int count = 0;
	size_t n = 0;

	for (size_t i = 0; i < len && in[i] != '='; i++) {
		int v = base64_value((unsigned char)in[i]);

		if (v < 0)
			continue;
		bits = (bits << 6) | (unsigned int)v;
		count++;
		if (count == 4) {
			out[n++] = (char)(bits >> 16);
			out[n++] = (char)(bits >> 8);
			out[n++] = (char)bits;
			bits = 0;
			count = 0;
		}
	}
	if (count == 2) {
		out[n++] = (char)(bits >> 4);
	} else if (count == 3) {
		out[n++] = (char)(bits >> 10);
		out[n++] = (char)(bits >> 2);
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Length of the whitespace run at IN[I..] that ends a line, or 0 if
 * something else follows it. */
static size_t
trailing_space(const char *in, size_t i, size_t len)
{
	size_t j = i;

	while (j < len && (in[j] == ' ' || in[j] == '\t'))
		j++;
	if (j == len || in[j] == '\r' || in[j] == '\n')
		return j - i;
	return 0;
}

/* Line end length at IN[I..]: 2 for CRLF, 1 for LF, 0 otherwise. */
static size_t
line_end(const char *in, size_t i, size_t len)
{
	if (i + 1 < len && in[i] == '\r' && in[i + 1] == '\n')
		return 2;
	if (i < len && in[i] == '\n')
		return 1;
	return 0;
}

/* Invalid "=" sequences are kept as they are, as RFC 2045 section 6.7
 * suggests for robustness; whitespace at a line end is dropped. */
char *
mime_qp_decode(const char *in, size_t len, size_t *out_len)
{
	char *out = xmalloc(len + 1);
	size_t n = 0, i = 0;

	while (i < len) {
		size_t space;
		int hi, lo;

		if (in[i] == '=') {
			size_t after = i + 1 + trailing_space(in, i + 1, len);

			if (after == len || line_end(in, after, len) > 0) {
				i = after + line_end(in, after, len);	/* soft line break */
				continue;
			}
			if (i + 2 < len && (hi = hex_value(in[i + 1])) >= 0 &&
			    (lo = hex_value(in[i + 2])) >= 0) {
				out[n++] = (char)(hi * 16 + lo);
				i += 3;
				continue;
			}
		}
		if ((in[i] == ' ' || in[i] == '\t') && (space = trailing_space(in, i, len)) > 0) {
			i += space;
			continue;
		}
		out[n++] = in[i++];
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

/* Copy bytes, replacing each 8-bit byte with U+FFFD. */
static void
add_ascii_only(struct mime_buf *buf, const char *in, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)in[i] >= 0x80)
			mime_buf_add_str(buf, replacement);
		else
			mime_buf_add_char(buf, in[i]);
	}
}

static int
is_ascii_charset(const char *charset)
{
	return ascii_casecmp(charset, "us-ascii") == 0 || ascii_casecmp(charset, "ascii") == 0;
}

/* Convert with iconv into BUF; returns -1 if CHARSET is unknown. Each
 * invalid or incomplete sequence becomes U+FFFD. */
static int
add_converted(struct mime_buf *buf, const char *charset, const char *in, size_t len)
{
	iconv_t cd = iconv_open("UTF-8", charset);
	char *src = (char *)in;
	size_t left = len;
	char out[4096];

	if (cd == (iconv_t)-1)
		return -1;

	while (left > 0) {
		char *dst = out;
		size_t room = sizeof out;
		size_t rc = iconv(cd, &src, &left, &dst, &room);

		mime_buf_add(buf, out, (size_t)(dst - out));
		if (rc == (size_t)-1 && errno != E2BIG) {
			mime_buf_add_str(buf, replacement);
			src++;
			left--;
		}
	}
	iconv_close(cd);
	return 0;
}

static void
add_charset_text(struct mime_buf *buf, const char *charset, const char *in, size_t len)
{
	char name[64];
	const char *star;

	/* RFC 2231 section 5 allows "charset*language" in encoded words. */
	strlcpy_x(name, charset != NULL ? charset : "us-ascii", sizeof name);
	if ((star = strchr(name, '*')) != NULL)
		name[star - name] = '\0';

	if (name[0] == '\0' || is_ascii_charset(name)) {
		add_ascii_only(buf, in, len);
		return;
	}
	if (add_converted(buf, name, in, len) < 0)
		add_ascii_only(buf, in, len);
}

char *
mime_charset_to_utf8(const char *charset, const char *in, size_t len, size_t *out_len)
{
	struct mime_buf buf = { 0 };

	add_charset_text(&buf, charset, in, len);
	return mime_buf_take(&buf, out_len);
}

/*
 * RFC 2047 encoded words: "=?charset?B?text?=" or "=?charset?Q?text?=".
 */
struct encoded_word {
	const char *charset;
	size_t charset_len;
	char encoding;		/* 'B' or 'Q' */
	const char *text;
	size_t text_len;
	size_t len;		/* of the whole word */
};

static int
parse_encoded_word(const char *p, const char *end, struct encoded_word *word)
{
	const char *q1, *q2, *close;

	if (end - p < 8 || p[0] != '=' || p[1] != '?')
		return 0;
	q1 = memchr(p + 2, '?', (size_t)(end - p - 2));
	if (q1 == NULL || q1 == p + 2 || q1 + 3 >= end || q1[2] != '?')
		return 0;
	q2 = q1 + 2;
	for (close = q2 + 1; close + 1 < end; close++)
		if (close[0] == '?' && close[1] == '=')
			break;
	if (close + 1 >= end)
		return 0;

	word->charset = p + 2;
	word->charset_len = (size_t)(q1 - p - 2);
	word->encoding = (char)(q1[1] & ~0x20);
	word->text = q2 + 1;
	word->text_len = (size_t)(close - q2 - 1);
	word->len = (size_t)(close + 2 - p);
	if (word->encoding != 'B' && word->encoding != 'Q')
		return 0;
	if (memchr(word->text, ' ', word->text_len) != NULL)
		return 0;
	return 1;
}

/* The Q encoding (RFC 2047 section 4.2): '_' is a space. */
static void
add_q_decoded(struct mime_buf *buf, const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (text[i] == '_') {
			mime_buf_add_char(buf, ' ');
		} else if (text[i] == '=' && i + 2 < len && (hi = hex_value(text[i + 1])) >= 0 &&
		    (lo = hex_value(text[i + 2])) >= 0) {
			mime_buf_add_char(buf, (char)(hi * 16 + lo));
			i += 2;
		} else {
			mime_buf_add_char(buf, text[i]);
		}
	}
}

static void
add_word_bytes(struct mime_buf *bytes, const struct encoded_word *word)
{
	if (word->encoding == 'B') {
		size_t n;
		char *decoded = mime_base64_decode(word->text, word->text_len, &n);

		mime_buf_add(bytes, decoded, n);
		free(decoded);
	} else {
		add_q_decoded(bytes, word->text, word->text_len);
	}
}

static size_t
skip_space(const char *p, const char *end)
{
	const char *start = p;

	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return (size_t)(p - start);
}

/*
 * Decode a run of encoded words starting at P. Adjacent words in the
 * same charset are decoded together, because a multibyte character may
 * be split between them. Whitespace between encoded words is dropped
 * (RFC 2047 section 6.2). Returns the bytes consumed.
 */
static size_t
add_encoded_run(struct mime_buf *out, const char *p, const char *end)
{
	const char *start = p;
	struct encoded_word word;
	struct mime_buf bytes = { 0 };
	char charset[64] = "";

	while (parse_encoded_word(p, end, &word)) {
		size_t space;
		struct encoded_word next;

		if (word.charset_len < sizeof charset) {
			memcpy(charset, word.charset, word.charset_len);
			charset[word.charset_len] = '\0';
		}
		add_word_bytes(&bytes, &word);
		p += word.len;

		space = skip_space(p, end);
		if (!parse_encoded_word(p + space, end, &next))
			break;
		if (next.charset_len != word.charset_len ||
		    ascii_ncasecmp(next.charset, word.charset, word.charset_len) != 0) {
			add_charset_text(out, charset, bytes.data, bytes.len);
			bytes.len = 0;
		}
		p += space;
	}

	add_charset_text(out, charset, bytes.data != NULL ? bytes.data : "", bytes.len);
	free(bytes.data);
	return (size_t)(p - start);
}

char *
mime_decode_header(const char *value, size_t len)
{
	struct mime_buf out = { 0 };
	const char *p = value, *end = value + len;
	struct encoded_word word;

	p += skip_space(p, end);
	while (p < end) {
		if (parse_encoded_word(p, end, &word)) {
			p += add_encoded_run(&out, p, end);
			continue;
		}
		if (*p == '\r' || *p == '\n') {
			p++;
			continue;
		}
		mime_buf_add_char(&out, *p++);
	}

	while (out.len > 0 && (out.data[out.len - 1] == ' ' || out.data[out.len - 1] == '\t'))
		out.len--;
	if (out.data != NULL)
		out.data[out.len] = '\0';
	return mime_buf_take(&out, NULL);
}
