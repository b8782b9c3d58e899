/* Decoding of DATA and BDAT content: line ends, dot-stuffing, end of data. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"
#include "util.h"

enum smtp_data_state {
	STATE_LINE_START_CRLF,	/* at a line start after CRLF: "." may begin the end */
	STATE_LINE_START_LF,	/* at a line start after a bare LF: "." is only unstuffed */
	STATE_IN_LINE,
	STATE_CR,		/* a CR held back: line end if LF follows, else content */
	STATE_DOT,		/* "." at a line start after CRLF */
	STATE_DOT_CR,		/* "." CR at a line start after CRLF */
};

void
smtp_data_init(struct smtp_data_decoder *decoder, enum smtp_data_mode mode, size_t max_line)
{
	decoder->mode = mode;
	decoder->max_line = max_line;
	decoder->state = mode == SMTP_DATA_DOT ? STATE_LINE_START_CRLF : STATE_IN_LINE;
	decoder->line_length = 0;
	decoder->flags = 0;
	decoder->done = 0;
}

/* Append content byte C to the current line. */
static void
smtp_data_put(struct smtp_data_decoder *decoder, char c, char *out, size_t *o)
{
	out[(*o)++] = c;
	if (c == '\0')
		decoder->flags |= SMTP_DATA_NUL;
	if (++decoder->line_length > decoder->max_line)
		decoder->flags |= SMTP_DATA_LONG_LINE;
	decoder->state = STATE_IN_LINE;
}

/* End the current line with LF. BARE is set when no CR came before the LF. */
static void
smtp_data_line_end(struct smtp_data_decoder *decoder, int bare, char *out, size_t *o)
{
	out[(*o)++] = '\n';
	decoder->line_length = 0;
	if (decoder->mode == SMTP_DATA_CHUNK) {
		decoder->state = STATE_IN_LINE;
		return;
	}
	if (bare)
		decoder->flags |= SMTP_DATA_BARE_LF;
	decoder->state = bare ? STATE_LINE_START_LF : STATE_LINE_START_CRLF;
}

/*
 * Handle byte C in the current state. Returns 1 if C was consumed, 0 if
 * it must be handled again in the new state (after a held-back CR or
 * dot turned out to be content).
 */
static int
smtp_data_step(struct smtp_data_decoder *decoder, char c, char *out, size_t *o)
{
	switch (decoder->state) {
	case STATE_LINE_START_CRLF:
		if (c == '.') {
			decoder->state = STATE_DOT;
			return 1;
		}
		break;

	case STATE_LINE_START_LF:
		if (c == '.') {
			/* Unstuffed, but this line can never end the data. */
			decoder->state = STATE_IN_LINE;
			return 1;
		}
		break;

	case STATE_CR:
		if (c == '\n') {
			smtp_data_line_end(decoder, 0, out, o);
			return 1;
		}
		smtp_data_put(decoder, '\r', out, o);
		return 0;

	case STATE_DOT:
		if (c == '\r') {
			decoder->state = STATE_DOT_CR;
			return 1;
		}
		/* The leading dot of a stuffed line is removed (RFC 5321 4.5.2). */
		decoder->state = STATE_IN_LINE;
		return 0;

	case STATE_DOT_CR:
		if (c == '\n') {
			decoder->done = 1;
			return 1;
		}
		smtp_data_put(decoder, '\r', out, o);
		return 0;
	}

	/* STATE_IN_LINE, or a line start with an ordinary byte. */
	if (c == '\r')
		decoder->state = STATE_CR;
	else if (c == '\n')
		smtp_data_line_end(decoder, 1, out, o);
	else
		smtp_data_put(decoder, c, out, o);
	return 1;
}

/* The length of the run at P of bytes that need no state change: no CR,
 * LF or NUL. */
static size_t
plain_run(const char *p, size_t len)
{
	const char *stop = memchr(p, '\n', len);
	size_t n = stop != NULL ? (size_t)(stop - p) : len;

	if ((stop = memchr(p, '\r', n)) != NULL)
		n = (size_t)(stop - p);
	if ((stop = memchr(p, '\0', n)) != NULL)
		n = (size_t)(stop - p);
	return n;
}

size_t
smtp_data_decode(struct smtp_data_decoder *decoder, const char *in, size_t inlen,
    char *out, size_t *outlen)
{
	size_t i = 0, o = 0;

	while (i < inlen && !decoder->done) {
		/* Inside a line, copy up to the next CR, LF or NUL at once. */
		if (decoder->state == STATE_IN_LINE) {
			size_t run = plain_run(in + i, inlen - i);

			if (run > 0) {
				memcpy(out + o, in + i, run);
				o += run;
				i += run;
				decoder->line_length += run;
				if (decoder->line_length > decoder->max_line)
					decoder->flags |= SMTP_DATA_LONG_LINE;
				continue;
			}
		}
		i += (size_t)smtp_data_step(decoder, in[i], out, &o);
	}
	*outlen = o;
	return i;
}

size_t
smtp_data_finish(struct smtp_data_decoder *decoder, char *out)
{
	size_t o = 0;

	if (decoder->state == STATE_CR)
		smtp_data_put(decoder, '\r', out, &o);
	return o;
}

int
smtp_bdat_parse(const char *args, unsigned long long *size, int *last)
{
	char *end;

	if (*args < '0' || *args > '9')
		return -1;
	errno = 0;
	*size = strtoull(args, &end, 10);
	if (errno != 0)
		return -1;
	while (*end == ' ')
		end++;
	*last = ascii_casecmp(end, "LAST") == 0;
	if (!*last && *end != '\0')
		return -1;
	return 0;
}
