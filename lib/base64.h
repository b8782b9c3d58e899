/* Strict base64 decoding (RFC 4648 section 4) for authentication data. */
#ifndef ESTAFETA_BASE64_H
#define ESTAFETA_BASE64_H

#include <stddef.h>

/*
 * Decode the LEN bytes of base64 at TEXT into a new buffer *OUT of
 * *OUTLEN bytes, which the caller frees. Returns 0, or -1 unless TEXT is
 * padded base64 of at least one byte.
 */
int base64_decode(const char *text, size_t len, unsigned char **out, size_t *outlen);

#endif
