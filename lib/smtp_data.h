/*
 * Decoding of SMTP message content as it arrives, for DATA (RFC 5321
 * 4.1.1.4 and 4.5.2) and BDAT chunks (RFC 3030). The decoder turns
 * CRLF into LF (the spool format), removes dot-stuffing and finds the
 * end of data. It keeps state between calls, so input may arrive in
 * pieces of any size, down to one byte.
 *
 * In DATA, only CRLF "." CRLF ends the message. A bare LF is flagged
 * (the caller rejects the message or, in normalize mode, keeps it as a
 * line end) but never counts as part of the end-of-data sequence, and
 * a bare CR is message content. So "\n.\n", "\r.\r", "\r\n.\n" and
 * "\n.\r\n" do not end the message: that closes SMTP smuggling.
 */
#ifndef ESTAFETA_SMTP_DATA_H
#define ESTAFETA_SMTP_DATA_H

#include <stddef.h>

enum smtp_data_mode {
	SMTP_DATA_DOT,		/* DATA: dot-stuffed, ends with CRLF.CRLF */
	SMTP_DATA_CHUNK,	/* BDAT: counted chunks, no dot-stuffing */
};

/* Problems found in the content; the caller decides what each costs. */
#define SMTP_DATA_BARE_LF	0x1	/* LF without CR before it (DATA only) */
#define SMTP_DATA_NUL		0x2	/* a NUL byte */
#define SMTP_DATA_LONG_LINE	0x4	/* a line longer than max_line octets */

struct smtp_data_decoder {
	enum smtp_data_mode mode;
	size_t max_line;	/* octets per line, line end excluded */
	int state;
	size_t line_length;
	unsigned flags;		/* SMTP_DATA_* found so far */
	int done;		/* end of data seen (DATA mode) */
};

void smtp_data_init(struct smtp_data_decoder *decoder, enum smtp_data_mode mode,
    size_t max_line);

/*
 * Decode up to INLEN bytes of IN into OUT, which must have room for
 * INLEN + 1 bytes (a CR held back from the previous call may come
 * out now). Stores the number of bytes written in *OUTLEN and returns
 * the number of bytes consumed. In DATA mode it stops right after the
 * end-of-data line and sets decoder->done; the bytes after it are
 * the next commands.
 */
size_t smtp_data_decode(struct smtp_data_decoder *decoder, const char *in, size_t inlen,
    char *out, size_t *outlen);

/*
 * End a BDAT message (after the LAST chunk): write a CR still held
 * back into OUT (room for 1 byte). Returns the number of bytes written.
 */
size_t smtp_data_finish(struct smtp_data_decoder *decoder, char *out);

/*
 * Parse the arguments of BDAT: "SIZE [LAST]" (RFC 3030). Returns 0, or
 * -1 when SIZE is missing or invalid; the chunk cannot be skipped then.
 */
int smtp_bdat_parse(const char *args, unsigned long long *size, int *last);

#endif
