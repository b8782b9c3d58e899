/* dovecot-uidlist and dovecot-keywords files (formats in mailbox.h). */
#ifndef ESTAFETA_IMAPD_UIDLIST_H
#define ESTAFETA_IMAPD_UIDLIST_H

#include <stddef.h>
#include <stdint.h>

struct mailbox;

struct uidlist_entry {
	uint32_t uid;
	char *base;
	char *ext;
};

/* Take dovecot-uidlist.lock in DIR, waiting up to 10 seconds and
 * breaking a lock older than 2 minutes. Returns its descriptor or -1. */
int uidlist_lock(const char *dir);
void uidlist_unlock(const char *dir, int fd);

/* Read the header into BOX (a missing file gets a new UIDVALIDITY) and
 * the entries, in file order. 0, or -1 with errno set. */
int uidlist_read(struct mailbox *box, struct uidlist_entry **entries, size_t *count);
void uidlist_entries_free(struct uidlist_entry *entries, size_t count);

/* Write BOX's header and messages into the lock file LOCK_FD and rename
 * it over dovecot-uidlist, which releases the lock. 0 or -1. */
int uidlist_write(struct mailbox *box, int lock_fd);

int keywords_read(struct mailbox *box);
int keywords_write(struct mailbox *box);

#endif
