/* The IMAP session of a logged-in user, in the mail process. */
#ifndef ESTAFETA_IMAPD_SESSION_H
#define ESTAFETA_IMAPD_SESSION_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "io.h"
#include "mailbox.h"
#include "parse.h"

struct session_start {
	int fd;
	unsigned long long session_id;
	const char *tag;	/* of the LOGIN or AUTHENTICATE command to complete */
	const char *user;
	const char *maildir;
	const char *input;	/* pipelined after the login command */
	size_t inputlen;
};

struct session {
	struct imap_io io;
	unsigned long long id;
	const char *user;
	char maildir[PATH_MAX];
	struct mailbox *box;	/* selected mailbox, or NULL */
	int readonly;		/* EXAMINE */
	char tag[64];
	int logout;
};

void session_run(const struct session_start *start) __attribute__((noreturn));

/* Tagged reply for the current command. */
void session_reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Resynchronize the selected mailbox and send the untagged EXPUNGE,
 * EXISTS, RECENT and FETCH FLAGS responses for what changed. Without
 * ALLOW_EXPUNGE (during FETCH, STORE and SEARCH) removed messages stay
 * as gone until a later command may report them.
 */
void session_sync(struct session *s, int allow_expunge);

/* Send "FLAGS (...)" of MSG (no leading space). */
void session_write_flags(struct session *s, const struct message *msg);

/*
 * Resolve a sequence set into indices of s->box->messages (ascending,
 * no repeats). UID_MODE reads UIDs. Returns the count and a new array
 * in *OUT, or -1 when a message number exceeds the mailbox.
 */
long session_resolve(struct session *s, const struct imap_seqset *set, int uid_mode,
    size_t **out);

/* Parse a flag list "(\Seen kw ...)" or a single flag into FLAGS and
 * KEYWORDS, adding unknown keywords to the mailbox when CREATE. -1 if
 * invalid. */
int session_parse_flags(struct session *s, struct imap_parser *parser, int create,
    unsigned *flags, uint32_t *keywords);

/* Commands in fetch.c, search.c and store.c. */
void cmd_fetch(struct session *s, struct imap_parser *parser, int uid_mode);
void cmd_search(struct session *s, struct imap_parser *parser, int uid_mode);
void cmd_store(struct session *s, struct imap_parser *parser, int uid_mode);
void cmd_copy(struct session *s, struct imap_parser *parser, int uid_mode, int move);
void cmd_expunge(struct session *s, struct imap_parser *parser, int uid_mode);
void cmd_append(struct session *s, struct imap_parser *parser);

/* RFC 3501 date-time and date. */
int imap_parse_date_time(const char *text, time_t *out);
int imap_parse_date(const char *text, time_t *out);
void imap_format_date_time(time_t when, char *out, size_t outsize);

#endif
