/*
 * Tokenizer for IMAP command arguments (RFC 3501 section 9) over a
 * command as imap_io_read_command returns it, literals inline. Each
 * function returns 0 and advances, or -1 and leaves the position alone.
 */
#ifndef ESTAFETA_IMAPD_PARSE_H
#define ESTAFETA_IMAPD_PARSE_H

#include <stddef.h>
#include <stdint.h>

struct imap_parser {
	const char *p;
	const char *end;
};

/* A string argument: points into the command text, or into OWNED. */
struct imap_string {
	const char *data;
	size_t len;
	char *owned;		/* unescaped quoted string, freed by imap_string_free */
};

void imap_parser_init(struct imap_parser *parser, const char *data, size_t len);
int imap_parse_at_end(const struct imap_parser *parser);
int imap_parse_sp(struct imap_parser *parser);
/* The next character is C (consumed) or not (0 / -1). */
int imap_parse_char(struct imap_parser *parser, char c);
int imap_parse_peek(const struct imap_parser *parser, char c);

/* atom (ATOM-CHAR+); OUT gets a NUL-terminated copy of at most OUTSIZE - 1 bytes. */
int imap_parse_atom(struct imap_parser *parser, char *out, size_t outsize);
/* tag: ASTRING-CHAR except '+' */
int imap_parse_tag(struct imap_parser *parser, char *out, size_t outsize);
/* astring: atom (with ']'), quoted or literal. */
int imap_parse_astring(struct imap_parser *parser, struct imap_string *out);
/* string: quoted or literal only. */
int imap_parse_string(struct imap_parser *parser, struct imap_string *out);
/* astring copied to a NUL-terminated string; -1 if it contains NUL or is longer than MAX. */
char *imap_parse_astring_dup(struct imap_parser *parser, size_t max);
void imap_string_free(struct imap_string *string);

int imap_parse_number(struct imap_parser *parser, uint32_t *out);
/* nz-number up to 2^63 for sizes and MODSEQ-like values. */
int imap_parse_number64(struct imap_parser *parser, uint64_t *out);

/*
 * sequence-set: ranges of message numbers or UIDs, '*' stored as
 * UINT32_MAX and resolved by the caller. Ranges are normalized so that
 * first <= last.
 */
struct imap_range {
	uint32_t first, last;
	int first_star, last_star;	/* '*': the highest number in use */
};
struct imap_seqset {
	struct imap_range *ranges;
	size_t count;
};
int imap_parse_seqset(struct imap_parser *parser, struct imap_seqset *out);
void imap_seqset_free(struct imap_seqset *set);
/* Whether N is in SET, where '*' means STAR. */
int imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t star);

/*
 * The start of every command: tag SP command-name, the name upper-cased
 * into NAME. Returns 0, -1 for an invalid tag (TAG is then empty) or -2
 * for a missing or invalid command name.
 */
int imap_parse_command_start(struct imap_parser *parser, char *tag, size_t tagsize,
    char *name, size_t namesize);

/*
 * The argument of ID (RFC 2971): NIL, or a list of at most 30 field and
 * value pairs, each a string (the value may be NIL). Returns 0 or -1.
 */
int imap_parse_id_params(struct imap_parser *parser);

/* Whether C may appear in an atom (RFC 3501 ATOM-CHAR). */
int imap_is_atom_char(unsigned char c);

#endif
