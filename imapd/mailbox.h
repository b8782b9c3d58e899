/*
 * Maildir storage in Dovecot's layout, so that a user moved from Dovecot
 * keeps UIDVALIDITY, UIDs, flags and folders:
 *
 * - INBOX is the Maildir itself. Folder "Foo.Bar" is the Maildir++
 *   directory ".Foo.Bar" ('.' separates the hierarchy), and names stay
 *   in modified UTF-7 (RFC 3501 section 5.1.3) as clients send them.
 * - dovecot-uidlist maps UIDs to file base names: a header
 *   "3 V<uidvalidity> N<nextuid> G<guid>", then "<uid> [fields] :<base>"
 *   lines. It is rewritten whole under the dotlock dovecot-uidlist.lock:
 *   the new contents go into the lock file, which is renamed over it.
 * - dovecot-keywords lists "<index> <keyword>"; keyword N is the info
 *   letter 'a' + N in a file name "<base>:2,<flags>".
 */
#ifndef ESTAFETA_IMAPD_MAILBOX_H
#define ESTAFETA_IMAPD_MAILBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define FLAG_SEEN	0x01
#define FLAG_ANSWERED	0x02
#define FLAG_FLAGGED	0x04
#define FLAG_DELETED	0x08
#define FLAG_DRAFT	0x10

#define KEYWORDS_MAX	26	/* info letters a-z */
#define MAILBOX_NAME_MAX	255

struct message {
	uint32_t uid;
	char *base;		/* file name without ":2,<flags>" */
	char *ext;		/* dovecot-uidlist fields before ":", kept as read; may be "" */
	char *path;		/* "cur/<base>:2,<flags>" or "new/<base>", relative to the mailbox */
	unsigned flags;
	uint32_t keywords;	/* bit N: keyword N of dovecot-keywords */
	int recent;		/* this session moved it from new/ */
	int in_new;
	int gone;		/* removed by someone else, not yet reported with EXPUNGE */
	uint64_t vsize;		/* size with CRLF line ends (RFC822.SIZE); 0 until computed */
};

struct mailbox {
	char *name;		/* IMAP name, "INBOX" for the root */
	char *dir;		/* the Maildir directory */
	uint32_t uidvalidity;
	uint32_t uidnext;
	char guid[33];
	char *header_extra;	/* other uidlist header fields, kept as read */
	struct message *messages;	/* sorted by UID */
	size_t count;
	char *keywords[KEYWORDS_MAX];
	size_t keyword_count;
};

/*
 * Open the mailbox in directory DIR and synchronize it with the disk
 * (see mailbox_sync). Returns NULL with errno set when the directory is
 * not a Maildir or the uidlist cannot be written.
 */
struct mailbox *mailbox_open(const char *name, const char *dir, int move_new);
void mailbox_free(struct mailbox *box);

/*
 * Rescan new/ and cur/ under the uidlist lock. Files without a UID get
 * the next ones, in delivery order (the time in their names). Entries whose file is
 * gone are dropped. With MOVE_NEW the files in new/ are renamed into
 * cur/ and marked recent. The uidlist is rewritten when it changed.
 * Returns 0, or -1 with errno set.
 */
int mailbox_sync(struct mailbox *box, int move_new);

/* Like mailbox_sync, but hand the previous message array to the caller
 * (to compare, then free with mailbox_messages_free) instead of freeing it. */
int mailbox_sync_keep(struct mailbox *box, int move_new, struct message **old, size_t *oldcount);
void mailbox_messages_free(struct message *messages, size_t count);

/* Size of MSG with CRLF line ends, read from the file once. */
uint64_t mailbox_message_vsize(struct mailbox *box, struct message *msg);
/* Modification time of MSG's file (INTERNALDATE), or 0 if gone. */
time_t mailbox_message_date(struct mailbox *box, struct message *msg);
/* Read the whole file of MSG into a new buffer. NULL if gone. */
char *mailbox_read_message(struct mailbox *box, struct message *msg, size_t *len);

/* The message with UID, or NULL. */
struct message *mailbox_find_uid(struct mailbox *box, uint32_t uid);

/* Open the file of MSG read-only, rescanning once if it was renamed. -1 if gone. */
int mailbox_open_message(struct mailbox *box, struct message *msg);

/* Set MSG's flags and keywords by renaming its file. 0, or -1 if it is gone. */
int mailbox_set_flags(struct mailbox *box, struct message *msg, unsigned flags, uint32_t keywords);

/* The index of KEYWORD, adding it to dovecot-keywords if CREATE. -1 if missing or full. */
int mailbox_keyword_index(struct mailbox *box, const char *keyword, int create);

/*
 * Add the message file at SRC_PATH (open descriptor SRC_FD, or -1 to
 * link SRC_PATH) to BOX with FLAGS, KEYWORDS and the mtime INTERNALDATE
 * (0: keep). Writes tmp/ then renames into cur/. Returns the new UID, or
 * 0 with errno set. The mailbox is resynchronized.
 */
uint32_t mailbox_add(struct mailbox *box, int src_fd, const char *src_path, unsigned flags,
    uint32_t keywords, time_t internaldate);

/* Unique Maildir base name "<sec>.M<usec>P<pid>Q<n>.<host>". */
void maildir_unique_name(char *out, size_t outsize);

/* Flags as Maildir info letters ("DFRST" order, then keywords a-z). */
void maildir_info_letters(unsigned flags, uint32_t keywords, char *out, size_t outsize);

/* Parse the letters after ":2,". */
void maildir_parse_info(const char *info, unsigned *flags, uint32_t *keywords);

/* Create a Maildir (cur, new, tmp) at DIR; FOLDER also writes maildirfolder. 0 or -1. */
int maildir_create(const char *dir, int folder);

#endif
