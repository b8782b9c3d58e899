/* RFC 5321 mailbox addresses: parsing of MAIL FROM / RCPT TO paths. */
#ifndef ESTAFETA_ADDR_H
#define ESTAFETA_ADDR_H

#include <stddef.h>

#define ADDR_MAX_LOCAL	64	/* RFC 5321 4.5.3.1.1 */
#define ADDR_MAX_DOMAIN	255	/* RFC 5321 4.5.3.1.2 */
#define ADDR_MAX	(ADDR_MAX_LOCAL + 1 + ADDR_MAX_DOMAIN)

struct mailaddr {
	char local[ADDR_MAX_LOCAL * 4 + 1];	/* room for UTF-8; a quoted local part is stored unquoted */
	char domain[ADDR_MAX_DOMAIN + 1];	/* lower-cased; "" for a bare local part */
};

enum addr_flags {
	ADDR_ALLOW_EMPTY	= 0x1,	/* "<>" allowed (reverse-path) */
	ADDR_ALLOW_UTF8		= 0x2,	/* SMTPUTF8 was given */
	ADDR_ALLOW_NO_DOMAIN	= 0x4,	/* a local part alone, domain "" (RCPT TO:<postmaster>, sendmail root); the caller checks which names it takes */
};

/*
 * Parse "<local@domain>" (angle brackets required, a source route
 * "<@a,@b:x@y>" is accepted and ignored) starting at TEXT. On success
 * stores the address, sets *END to the first byte after '>' and returns
 * 0. Returns -1 with a short reason in *WHY for a syntax error.
 */
int addr_parse_path(const char *text, int flags, struct mailaddr *out,
    const char **end, const char **why);

/* Parse a bare "local@domain" (no brackets), e.g. from the command line. */
int addr_parse_plain(const char *text, int flags, struct mailaddr *out, const char **why);

/* Format as local@domain (or "" for the null path). Returns OUT. */
char *addr_format(const struct mailaddr *addr, char *out, size_t outsize);

int addr_is_null(const struct mailaddr *addr);

/*
 * Split LOCAL at the first DELIMITER ('+') into user and detail
 * ("user+detail" addressing). USER and DETAIL receive copies; DETAIL is
 * "" when absent.
 */
void addr_split_detail(const char *local, char delimiter, char *user, size_t usersize,
    char *detail, size_t detailsize);

/* 1 if DOMAIN is a valid domain name or address literal ("[192.0.2.1]", "[IPv6:...]"), else 0. */
int addr_valid_domain(const char *domain, int flags);

#endif
