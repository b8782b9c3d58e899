/*
 * Conversion of an 8-bit message to 7 bit for a server without 8BITMIME
 * (RFC 6152 section 3): every body part with octets above 127 is
 * re-encoded as quoted-printable (RFC 2045 section 6.7).
 */
#ifndef ESTAFETA_QUEUED_OUTBOUND_MIME7_H
#define ESTAFETA_QUEUED_OUTBOUND_MIME7_H

#include <stddef.h>

/*
 * Convert the LEN-byte message DATA (LF or CRLF line ends). Returns a
 * new buffer with CRLF line ends and its length in *OUT_LEN. Returns NULL
 * with the reason in ERR when the message cannot be made 7-bit, because a
 * header (of the message or of a part) has octets above 127.
 */
char *outbound_mime7_convert(const char *data, size_t len, size_t *out_len, char *err,
    size_t errsize);

#endif
