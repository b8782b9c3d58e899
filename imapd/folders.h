/*
 * The user's folders: Maildir++ directories ".Name" under the Maildir,
 * the subscriptions file, and the special-use folders (RFC 6154).
 */
#ifndef ESTAFETA_IMAPD_FOLDERS_H
#define ESTAFETA_IMAPD_FOLDERS_H

#include <stddef.h>

#define FOLDER_SEPARATOR '.'

/*
 * Check an IMAP mailbox name (modified UTF-7, as sent) and write its
 * directory under MAILDIR into OUT; "INBOX" (any case) is the Maildir.
 * NAME is rewritten to "INBOX" for the inbox. Returns 0, or -1 for a
 * name that could leave the Maildir or is not valid: '/', a leading,
 * trailing or doubled '.', control characters, invalid modified UTF-7.
 */
int folder_path(const char *maildir, char *name, char *out, size_t outsize);

/* The special-use attribute of NAME ("\\Sent", ...) or NULL. */
const char *folder_special_use(const char *name);

/* Create the special-use folders and subscribe them when the user has
 * no subscriptions file yet (the first login). */
void folders_init(const char *maildir);

/* All folder names (INBOX first), as a NULL-terminated array. */
char **folders_list(const char *maildir);
void folders_free(char **names);

/* Subscriptions: NULL-terminated array of names. */
char **subscriptions_read(const char *maildir);
int subscriptions_change(const char *maildir, const char *name, int subscribe);

/* RFC 3501 LIST pattern match ('*' any, '%' any but the separator). */
int folder_match(const char *pattern, const char *name);

#endif
