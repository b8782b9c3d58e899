/* Declarations shared by the lib/mime_*.c files and nothing else. */
#ifndef ESTAFETA_MIME_INTERNAL_H
#define ESTAFETA_MIME_INTERNAL_H

#include <stddef.h>

#include "mime.h"

/* A growing byte buffer, NUL-terminated after LEN bytes. */
struct mime_buf {
	char *data;
	size_t len;
	size_t capacity;
};

void mime_buf_add(struct mime_buf *buf, const void *data, size_t len);
void mime_buf_add_str(struct mime_buf *buf, const char *s);
void mime_buf_add_char(struct mime_buf *buf, char c);
void mime_buf_add_printf(struct mime_buf *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Hand over the contents, NUL-terminated, and leave BUF empty. */
char *mime_buf_take(struct mime_buf *buf, size_t *len);

/* An IMAP string: quoted or literal. NULL gives NIL (nstring). */
void mime_buf_add_nstring(struct mime_buf *buf, const char *s);
void mime_buf_add_string_len(struct mime_buf *buf, const char *s, size_t len);

/*
 * Parse a Content-Type (WITH_SUBTYPE nonzero) or Content-Disposition
 * value: "type/subtype; params" or "type; params". RFC 2231
 * continuations are joined. Returns 0, or -1 if the type is missing
 * (the parameters are then not parsed).
 */
int mime_parse_content_field(const char *value, size_t len, int with_subtype, char **type,
    char **subtype, struct mime_param **params, size_t *param_count);
void mime_params_free(struct mime_param *params, size_t count);

/* Split a Content-Language value into its comma-separated tags. */
size_t mime_parse_languages(const char *value, size_t len, char ***out);

/* Envelope address lists (RFC 3501 section 7.4.2): "((name adl mailbox
 * host) ...)" or NIL. Returns the number of addresses and groups found. */
size_t mime_render_address_list(struct mime_buf *buf, const char *value, size_t len);

#endif
