/*
 * MIME message structure for IMAP. This library parses a message into a
 * tree of parts (RFC 5322, RFC 2045, RFC 2046, RFC 2231) and renders
 * ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501 section 7.4.2). It locates
 * BODY[section] data, decodes part bodies for BINARY (RFC 3516), and
 * provides the text decoding and matching that SEARCH needs.
 *
 * mime_parse() copies the message and turns every bare LF into CRLF, so
 * all offsets, sizes and line counts are those of the CRLF form that an
 * IMAP server sends, even when the stored file has LF line ends.
 *
 * Some conventions follow Dovecot 2.3, so that clients see the same
 * structure after a migration. A line count is the number of line ends.
 * A text part without a charset parameter gets CHARSET US-ASCII. Every
 * field of a repeated address header (To, Cc, ...) goes into the
 * ENVELOPE. Types, subtypes, parameter names and encodings are upper
 * case, as in the examples of RFC 3501.
 */
#ifndef ESTAFETA_MIME_H
#define ESTAFETA_MIME_H

#include <stddef.h>

#include "header.h"

/* Nesting deeper than this is not parsed: a multipart or message/rfc822
 * entity at this depth becomes an application/octet-stream leaf. */
#define MIME_MAX_DEPTH 32

/* A Content-Type or Content-Disposition parameter, with its RFC 2231
 * continuations joined. */
struct mime_param {
	char *name;		/* upper case, without the RFC 2231 '*' suffixes */
	char *value;		/* raw bytes: percent-decoded if extended */
	char *charset;		/* RFC 2231 charset, or NULL if not extended */
	char *language;		/* RFC 2231 language, or NULL */
};

struct mime_part {
	/* Offsets into mime_message.data (CRLF form). The header range
	 * includes the empty line that ends the header, if there is one. */
	size_t offset;		/* start of the part's header */
	size_t header_len;
	size_t body_offset;
	size_t body_len;
	size_t body_lines;	/* line ends in the body */

	struct header_list headers;	/* fields point into mime_message.data */

	char *type;		/* upper case: "TEXT", "MULTIPART", ... */
	char *subtype;		/* upper case: "PLAIN", "MIXED", ... */
	struct mime_param *params;
	size_t param_count;
	char *encoding;		/* upper case Content-Transfer-Encoding, "7BIT" by default */
	char *id;		/* Content-ID, unfolded, or NULL */
	char *description;	/* Content-Description, unfolded, or NULL */
	char *md5;		/* Content-MD5, or NULL */
	char *disposition;	/* Content-Disposition type, upper case, or NULL */
	struct mime_param *disposition_params;
	size_t disposition_param_count;
	char **languages;	/* Content-Language tags */
	size_t language_count;
	char *location;		/* Content-Location, unfolded, or NULL */

	struct mime_part *children;	/* parts of a multipart, in order */
	size_t child_count;
	struct mime_part *message;	/* the enclosed message of message/rfc822 */
	struct mime_part *parent;
};

struct mime_message {
	char *data;		/* the message in CRLF form */
	size_t len;		/* RFC822.SIZE */
	struct mime_part root;	/* the message itself: header and body */
};

/*
 * Parse the message of LEN bytes at DATA (LF or CRLF line ends, any
 * bytes). Malformed structure does not make it fail: the tree is what a
 * lenient reading gives. Returns a new message, or NULL on allocation
 * failure. Free it with mime_free().
 */
struct mime_message *mime_parse(const char *data, size_t len);
void mime_free(struct mime_message *msg);

/* Find parameter NAME (case-insensitive, without RFC 2231 '*') in
 * PARAMS. Returns NULL if it is absent. */
const struct mime_param *mime_param_find(const struct mime_param *params, size_t count,
    const char *name);

/*
 * IMAP rendering. Each function returns a new NUL-terminated string of
 * *LEN bytes (LEN may be NULL). Strings are quoted when they are short
 * 7-bit text without CR, LF or NUL, sent as literals ("{n}\r\n...")
 * otherwise, and NIL when absent.
 */

/* ENVELOPE of the message whose header is PART's (the root, or the
 * enclosed message of a message/rfc822 part). */
char *mime_envelope(const struct mime_message *msg, const struct mime_part *part, size_t *len);

/* BODYSTRUCTURE (EXTENDED nonzero) or BODY (EXTENDED zero) of PART. */
char *mime_bodystructure(const struct mime_message *msg, const struct mime_part *part,
    int extended, size_t *len);

/*
 * Sections (RFC 3501 section 6.4.5, FETCH BODY[section]).
 */
enum mime_section_kind {
	MIME_SECTION_ALL,		/* BODY[] or BODY[1.2]: the part's body */
	MIME_SECTION_HEADER,
	MIME_SECTION_HEADER_FIELDS,
	MIME_SECTION_HEADER_FIELDS_NOT,
	MIME_SECTION_TEXT,
	MIME_SECTION_MIME,
};

struct mime_section {
	unsigned int path[MIME_MAX_DEPTH];	/* part numbers, 1-based */
	size_t path_len;
	enum mime_section_kind kind;
	char **fields;		/* field names for HEADER.FIELDS[.NOT] */
	size_t field_count;
};

/*
 * Parse the text between the brackets of BODY[...] or BINARY[...] (LEN
 * bytes, e.g. "1.2.HEADER.FIELDS (From To)"), case-insensitive. Returns
 * 0, or -1 if the syntax is invalid (the command then gets BAD).
 * Free with mime_section_free().
 */
int mime_section_parse(const char *text, size_t len, struct mime_section *out);
void mime_section_free(struct mime_section *section);

/*
 * Find the part that SECTION's part numbers name. An empty path is the
 * root. Returns NULL if no such part exists.
 */
const struct mime_part *mime_section_part(const struct mime_message *msg,
    const struct mime_section *section);

/* Data of a section. DATA points into the message or into OWNED, which
 * the caller frees (NULL when nothing was allocated). */
struct mime_section_data {
	const char *data;
	size_t len;
	char *owned;
};

/*
 * Get the bytes of SECTION (CRLF form), for the caller to cut
 * <origin.size> from. HEADER, HEADER.FIELDS and TEXT of a nonzero path
 * apply to the enclosed message of a message/rfc822 part, and give 0
 * bytes for other parts. Returns 0, or -1 if SECTION names no part.
 */
int mime_section_fetch(const struct mime_message *msg, const struct mime_section *section,
    struct mime_section_data *out);

/*
 * BINARY (RFC 3516): the body of PART with its Content-Transfer-Encoding
 * removed (base64, quoted-printable, or identity for 7bit, 8bit and
 * binary). Multipart and message parts are returned as they are.
 * Returns 0 and a new buffer in *OUT, or MIME_UNKNOWN_CTE for an
 * encoding this library cannot decode (the response code UNKNOWN-CTE).
 * Invalid base64 or quoted-printable is decoded leniently, not rejected.
 * The caller must send data containing NUL as a literal8 ("~{n}").
 */
#define MIME_UNKNOWN_CTE (-2)
int mime_binary_decode(const struct mime_message *msg, const struct mime_part *part,
    char **out, size_t *out_len);

/*
 * FETCH BINARY[section]: mime_binary_decode() of the part that SECTION
 * names (its kind must be MIME_SECTION_ALL), except that BINARY[], the
 * whole message, is returned as it is, like BODY[]. Returns 0, -1 if
 * SECTION names no part, or MIME_UNKNOWN_CTE.
 */
int mime_binary_fetch(const struct mime_message *msg, const struct mime_section *section,
    char **out, size_t *out_len);

/* Decoders for the transfer encodings; invalid bytes are skipped.
 * Each returns a new buffer with a NUL after *OUT_LEN bytes. */
char *mime_base64_decode(const char *in, size_t len, size_t *out_len);
char *mime_qp_decode(const char *in, size_t len, size_t *out_len);

/*
 * SEARCH helpers.
 */

/* Convert LEN bytes in CHARSET to UTF-8 with iconv. Unknown charsets
 * and invalid sequences are copied as they are with 8-bit bytes
 * replaced by U+FFFD. Returns a new NUL-terminated string. */
char *mime_charset_to_utf8(const char *charset, const char *in, size_t len, size_t *out_len);

/* Unfold a header value and decode its RFC 2047 encoded words to
 * UTF-8. Returns a new NUL-terminated string. */
char *mime_decode_header(const char *value, size_t len);

/* Text of PART, a TEXT part, decoded from its transfer encoding and charset
 * to UTF-8, or NULL for other types. */
char *mime_part_text(const struct mime_message *msg, const struct mime_part *part,
    size_t *out_len);

/*
 * Whether NEEDLE occurs in HAYSTACK, both UTF-8, ignoring case. Case is
 * folded for ASCII, Latin-1 Supplement, Latin Extended-A, Greek and
 * Cyrillic letters (simple one-to-one mappings only, so "ß" does not
 * match "SS"). An empty needle always matches.
 */
int mime_utf8_contains(const char *haystack, size_t haystack_len, const char *needle,
    size_t needle_len);

/* SEARCH HEADER name string, FROM, SUBJECT, ...: whether any field NAME
 * of the message header, decoded, contains NEEDLE. An empty needle
 * matches every message that has the field. */
int mime_search_header(const struct mime_message *msg, const char *name, const char *needle);

/* SEARCH BODY: whether the decoded text of any text part contains
 * NEEDLE. SEARCH TEXT: the same, or the decoded header contains it. */
int mime_search_body(const struct mime_message *msg, const char *needle);
int mime_search_text(const struct mime_message *msg, const char *needle);

#endif
