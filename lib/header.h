/* RFC 5322 header parsing: splitting a message into header fields and
 * body, unfolding, and looking up fields by name. */
#ifndef ESTAFETA_HEADER_H
#define ESTAFETA_HEADER_H

#include <stddef.h>

struct header_field {
	const char *name;	/* points into the message, not NUL-terminated */
	size_t namelen;
	const char *value;	/* raw value after ':', folded lines included */
	size_t valuelen;
	const char *start;	/* the whole field, name through final line end */
	size_t len;
};

struct header_list {
	struct header_field *fields;
	size_t count;
	size_t capacity;
	size_t header_len;	/* bytes of header section, blank line excluded */
	size_t body_offset;	/* offset of the body (after the blank line), or message length */
};

/*
 * Parse the header section of MSG (LEN bytes, LF or CRLF line ends).
 * Parsing stops at the first empty line, or at a line that is neither
 * a field nor a continuation (that line starts the body). Returns 0,
 * or -1 on allocation failure.
 */
int header_parse(const char *msg, size_t len, struct header_list *out);
void header_list_free(struct header_list *list);

/* First field named NAME (case-insensitive), or NULL. */
const struct header_field *header_find(const struct header_list *list, const char *name);

/* Unfold and trim a field value into a new string (CRLF/LF + WSP -> the WSP). */
char *header_unfold(const struct header_field *field);

/*
 * Extract the addr-spec of every address in an address-list field value
 * (To, Cc, Bcc, From), skipping display names, comments and groups.
 * Returns the number found, storing up to MAX new strings in OUT.
 */
size_t header_addresses(const char *value, char **out, size_t max);

#endif
