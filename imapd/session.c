/*
 * The mail process's IMAP session (RFC 3501 authenticated and selected
 * states): the command loop, mailbox selection and the commands that
 * work on folders. FETCH, SEARCH and the commands that change messages
 * are in fetch.c, search.c and store.c.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "folders.h"
#include "imapd.h"
#include "log.h"
#include "session.h"
#include "util.h"

#define SESSION_MAX_BAD_COMMANDS	20
#define IDLE_RESCAN_MS			30000	/* rescan while idling even without events */

static int bad_commands;

void
session_reply(struct session *s, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	imap_io_printf(&s->io, "%s %s\r\n", s->tag, text);
}

static void
bad(struct session *s, const char *text)
{
	session_reply(s, "BAD %s", text);
	bad_commands++;
}

void
session_write_flags(struct session *s, const struct message *msg)
{
	static const struct {
		unsigned flag;
		const char *name;
	} names[] = {
		{ FLAG_SEEN, "\\Seen" }, { FLAG_ANSWERED, "\\Answered" },
		{ FLAG_FLAGGED, "\\Flagged" }, { FLAG_DELETED, "\\Deleted" },
		{ FLAG_DRAFT, "\\Draft" },
	};
	const char *sep = "";

	imap_io_puts(&s->io, "FLAGS (");
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (msg->flags & names[i].flag) {
			imap_io_printf(&s->io, "%s%s", sep, names[i].name);
			sep = " ";
		}
	}
	for (size_t k = 0; k < s->box->keyword_count; k++) {
		if ((msg->keywords & (1u << k)) && s->box->keywords[k] != NULL) {
			imap_io_printf(&s->io, "%s%s", sep, s->box->keywords[k]);
			sep = " ";
		}
	}
	if (msg->recent)
		imap_io_printf(&s->io, "%s\\Recent", sep);
	imap_io_puts(&s->io, ")");
}

static size_t
count_recent(const struct mailbox *box)
{
	size_t n = 0;

	for (size_t i = 0; i < box->count; i++)
		n += box->messages[i].recent;
	return n;
}

/* Put the gone messages of OLD back into BOX, to be reported later. */
static void
keep_gone(struct mailbox *box, struct message *old, size_t oldcount)
{
	size_t kept = 0;

	for (size_t i = 0; i < oldcount; i++)
		if (mailbox_find_uid(box, old[i].uid) == NULL)
			kept++;
	if (kept == 0)
		return;
	box->messages = xrealloc(box->messages, (box->count + kept) * sizeof *box->messages);
	for (size_t i = 0; i < oldcount; i++) {
		if (mailbox_find_uid(box, old[i].uid) != NULL)
			continue;
		box->messages[box->count] = old[i];
		box->messages[box->count].gone = 1;
		old[i].base = old[i].ext = old[i].path = NULL;
		box->count++;
	}
	/* The gone UIDs may fall anywhere: restore UID order. */
	for (size_t i = 1; i < box->count; i++) {
		struct message m = box->messages[i];
		size_t j = i;

		while (j > 0 && box->messages[j - 1].uid > m.uid) {
			box->messages[j] = box->messages[j - 1];
			j--;
		}
		box->messages[j] = m;
	}
}

void
session_sync(struct session *s, int allow_expunge)
{
	struct message *old = NULL;
	size_t oldcount = 0, expunged = 0;
	uint32_t old_max_uid;

	if (s->box == NULL)
		return;
	if (mailbox_sync_keep(s->box, !s->readonly, &old, &oldcount) < 0) {
		log_warn("session=%llu: cannot synchronize %s: %s", s->id, s->box->name,
		    strerror(errno));
		return;
	}
	old_max_uid = oldcount > 0 ? old[oldcount - 1].uid : 0;

	if (allow_expunge) {
		for (size_t i = 0; i < oldcount; i++) {
			if (!old[i].gone && mailbox_find_uid(s->box, old[i].uid) != NULL)
				continue;
			imap_io_printf(&s->io, "* %zu EXPUNGE\r\n", i + 1 - expunged);
			expunged++;
		}
	} else {
		keep_gone(s->box, old, oldcount);
	}

	/* Flags changed by another session. */
	for (size_t i = 0, j = 0; i < s->box->count; i++) {
		struct message *msg = &s->box->messages[i];

		while (j < oldcount && old[j].uid < msg->uid)
			j++;
		if (j < oldcount && old[j].uid == msg->uid && !msg->gone &&
		    (old[j].flags != msg->flags || old[j].keywords != msg->keywords)) {
			imap_io_printf(&s->io, "* %zu FETCH (", i + 1);
			session_write_flags(s, msg);
			imap_io_puts(&s->io, ")\r\n");
		}
	}

	if (s->box->count != oldcount - expunged ||
	    (s->box->count > 0 && s->box->messages[s->box->count - 1].uid > old_max_uid)) {
		imap_io_printf(&s->io, "* %zu EXISTS\r\n", s->box->count);
		imap_io_printf(&s->io, "* %zu RECENT\r\n", count_recent(s->box));
	}
	mailbox_messages_free(old, oldcount);
}

long
session_resolve(struct session *s, const struct imap_seqset *set, int uid_mode, size_t **out)
{
	struct mailbox *box = s->box;
	size_t count = 0;
	uint32_t star;

	*out = xcalloc(box->count + 1, sizeof **out);
	if (uid_mode) {
		star = box->count > 0 ? box->messages[box->count - 1].uid : 0;
		for (size_t i = 0; i < box->count; i++)
			if (imap_seqset_contains(set, box->messages[i].uid, star))
				(*out)[count++] = i;
		/* "N:*" includes the last message even when N is above its UID. */
		if (count == 0 && box->count > 0) {
			for (size_t r = 0; r < set->count; r++)
				if (set->ranges[r].first_star || set->ranges[r].last_star)
					(*out)[count++] = box->count - 1;
			if (count > 1)
				count = 1;
		}
		return (long)count;
	}
	star = (uint32_t)box->count;
	for (size_t r = 0; r < set->count; r++) {
		uint32_t last = set->ranges[r].last_star ? star : set->ranges[r].last;
		uint32_t first = set->ranges[r].first_star ? star : set->ranges[r].first;

		if (first > box->count || last > box->count || first == 0 || last == 0) {
			free(*out);
			*out = NULL;
			return -1;
		}
	}
	for (size_t i = 0; i < box->count; i++)
		if (imap_seqset_contains(set, (uint32_t)i + 1, star))
			(*out)[count++] = i;
	return (long)count;
}

int
session_parse_flags(struct session *s, struct imap_parser *parser, int create,
    unsigned *flags, uint32_t *keywords)
{
	static const struct {
		const char *name;
		unsigned flag;
	} system_flags[] = {
		{ "\\Seen", FLAG_SEEN }, { "\\Answered", FLAG_ANSWERED },
		{ "\\Flagged", FLAG_FLAGGED }, { "\\Deleted", FLAG_DELETED },
		{ "\\Draft", FLAG_DRAFT },
	};
	int list = imap_parse_char(parser, '(') == 0;

	*flags = 0;
	*keywords = 0;
	if (list && imap_parse_char(parser, ')') == 0)
		return 0;
	for (;;) {
		char flag[128];
		int backslash = imap_parse_char(parser, '\\') == 0, found = 0;

		if (imap_parse_atom(parser, flag + 1, sizeof flag - 1) < 0)
			return -1;
		flag[0] = '\\';
		for (size_t i = 0; backslash && i < sizeof system_flags / sizeof system_flags[0]; i++) {
			if (ascii_casecmp(flag, system_flags[i].name) == 0) {
				*flags |= system_flags[i].flag;
				found = 1;
			}
		}
		if (backslash && !found && ascii_casecmp(flag, "\\Recent") != 0)
			return -1;
		if (!backslash) {
			int k = s->box != NULL ? mailbox_keyword_index(s->box, flag + 1, create) : -1;

			if (k >= 0)
				*keywords |= 1u << k;
			else if (create)
				return -2;
		}
		if (!list)
			return 0;
		if (imap_parse_char(parser, ')') == 0)
			return 0;
		if (imap_parse_sp(parser) < 0)
			return -1;
	}
}

/* A mailbox name argument, checked and mapped to its directory. */
static char *
parse_mailbox(struct session *s, struct imap_parser *parser, char *dir, size_t dirsize)
{
	char *name = imap_parse_astring_dup(parser, MAILBOX_NAME_MAX);

	if (name == NULL) {
		bad(s, "Invalid arguments: expected a mailbox name");
		return NULL;
	}
	if (folder_path(s->maildir, name, dir, dirsize) < 0) {
		session_reply(s, "NO [CANNOT] Invalid mailbox name");
		free(name);
		return NULL;
	}
	return name;
}

static void
close_mailbox(struct session *s, int expunge)
{
	if (s->box == NULL)
		return;
	if (expunge && !s->readonly) {
		for (size_t i = 0; i < s->box->count; i++) {
			struct message *msg = &s->box->messages[i];
			char path[PATH_MAX];

			if (!(msg->flags & FLAG_DELETED) || msg->gone)
				continue;
			snprintf(path, sizeof path, "%s/%s", s->box->dir, msg->path);
			if (unlink(path) < 0 && errno != ENOENT)
				log_warn("session=%llu: cannot remove %s: %s", s->id, path, strerror(errno));
		}
		mailbox_sync(s->box, 0);
	}
	mailbox_free(s->box);
	s->box = NULL;
}

static void
cmd_select(struct session *s, struct imap_parser *parser, int readonly)
{
	char dir[PATH_MAX], *name;
	struct mailbox *box;
	size_t first_unseen = 0;

	if (imap_parse_sp(parser) < 0) {
		bad(s, "Invalid arguments: expected a mailbox name");
		return;
	}
	if ((name = parse_mailbox(s, parser, dir, sizeof dir)) == NULL)
		return;
	if (s->box != NULL) {
		close_mailbox(s, 0);
		imap_io_puts(&s->io, "* OK [CLOSED] Previous mailbox closed.\r\n");
	}
	box = mailbox_open(name, dir, !readonly);
	if (box == NULL) {
		session_reply(s, errno == ENOENT ? "NO [NONEXISTENT] Mailbox does not exist" :
		    "NO [SERVERBUG] Cannot open the mailbox");
		free(name);
		return;
	}
	s->box = box;
	s->readonly = readonly;

	imap_io_puts(&s->io, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	for (size_t k = 0; k < box->keyword_count; k++)
		if (box->keywords[k] != NULL)
			imap_io_printf(&s->io, " %s", box->keywords[k]);
	imap_io_puts(&s->io, ")\r\n");
	imap_io_puts(&s->io, readonly ? "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n" :
	    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n");
	imap_io_printf(&s->io, "* %zu EXISTS\r\n* %zu RECENT\r\n", box->count, count_recent(box));
	for (size_t i = 0; i < box->count; i++) {
		if (!(box->messages[i].flags & FLAG_SEEN)) {
			first_unseen = i + 1;
			break;
		}
	}
	if (first_unseen > 0)
		imap_io_printf(&s->io, "* OK [UNSEEN %zu] First unseen.\r\n", first_unseen);
	imap_io_printf(&s->io, "* OK [UIDVALIDITY %u] UIDs valid\r\n", box->uidvalidity);
	imap_io_printf(&s->io, "* OK [UIDNEXT %u] Predicted next UID\r\n", box->uidnext);
	session_reply(s, "OK [%s] %s completed.", readonly ? "READ-ONLY" : "READ-WRITE",
	    readonly ? "Examine" : "Select");
	free(name);
}

static int
remove_tree(const char *dir)
{
	static const char *const subs[] = { "cur", "new", "tmp", "" };

	for (size_t i = 0; i < 4; i++) {
		char path[PATH_MAX];
		struct dirent *de;
		DIR *d;

		if (snprintf(path, sizeof path, "%s/%s", dir, subs[i]) >= (int)sizeof path ||
		    (d = opendir(path)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			char file[PATH_MAX];

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (snprintf(file, sizeof file, "%s/%s", path, de->d_name) >= (int)sizeof file)
				continue;
			if (unlink(file) < 0 && errno == EISDIR)
				rmdir(file);
		}
		closedir(d);
		if (subs[i][0] != '\0')
			rmdir(path);
	}
	return rmdir(dir);
}

static int
has_children(struct session *s, const char *name)
{
	char **names = folders_list(s->maildir);
	size_t len = strlen(name);
	int found = 0;

	for (size_t i = 0; names[i] != NULL; i++)
		if (strncmp(names[i], name, len) == 0 && names[i][len] == FOLDER_SEPARATOR)
			found = 1;
	folders_free(names);
	return found;
}

static void
cmd_create(struct session *s, struct imap_parser *parser)
{
	char dir[PATH_MAX], *name = imap_parse_sp(parser) == 0 ?
	    imap_parse_astring_dup(parser, MAILBOX_NAME_MAX) : NULL;
	size_t len;

	if (name == NULL || !imap_parse_at_end(parser)) {
		bad(s, "Invalid arguments: expected CREATE mailbox");
		free(name);
		return;
	}
	len = strlen(name);
	if (len > 1 && name[len - 1] == FOLDER_SEPARATOR)
		name[len - 1] = '\0';	/* RFC 3501: "Foo." creates Foo */
	if (folder_path(s->maildir, name, dir, sizeof dir) < 0) {
		session_reply(s, "NO [CANNOT] Invalid mailbox name");
	} else if (strcmp(name, "INBOX") == 0 || access(dir, F_OK) == 0) {
		session_reply(s, "NO [ALREADYEXISTS] Mailbox already exists");
	} else if (maildir_create(dir, 1) < 0) {
		log_warn("session=%llu: cannot create %s: %s", s->id, dir, strerror(errno));
		session_reply(s, "NO [SERVERBUG] Cannot create the mailbox");
	} else {
		session_reply(s, "OK Create completed.");
	}
	free(name);
}

static void
cmd_delete(struct session *s, struct imap_parser *parser)
{
	char dir[PATH_MAX], *name;

	/* parse_mailbox replies itself when it fails. */
	if (imap_parse_sp(parser) < 0) {
		bad(s, "Invalid arguments: expected DELETE mailbox");
		return;
	}
	if ((name = parse_mailbox(s, parser, dir, sizeof dir)) == NULL)
		return;
	if (strcmp(name, "INBOX") == 0) {
		session_reply(s, "NO [CANNOT] INBOX cannot be deleted");
	} else if (access(dir, F_OK) < 0) {
		session_reply(s, "NO [NONEXISTENT] Mailbox does not exist");
	} else if (has_children(s, name)) {
		session_reply(s, "NO [INUSE] Mailbox has children, delete them first");
	} else {
		if (s->box != NULL && strcmp(s->box->name, name) == 0)
			close_mailbox(s, 0);
		if (remove_tree(dir) < 0) {
			log_warn("session=%llu: cannot delete %s: %s", s->id, dir, strerror(errno));
			session_reply(s, "NO [SERVERBUG] Cannot delete the mailbox");
		} else {
			session_reply(s, "OK Delete completed.");
		}
	}
	free(name);
}

/*
 * RENAME INBOX (RFC 3501 section 6.3.5): move every message of INBOX
 * into the new folder, which gets new UIDs; INBOX stays, empty, and its
 * subfolders stay where they are.
 */
static void
rename_inbox(struct session *s, const char *to_dir)
{
	static const char *const subs[] = { "cur", "new" };

	if (access(to_dir, F_OK) == 0) {
		session_reply(s, "NO [ALREADYEXISTS] Target mailbox already exists");
		return;
	}
	if (maildir_create(to_dir, 1) < 0) {
		log_warn("session=%llu: cannot create %s: %s", s->id, to_dir, strerror(errno));
		session_reply(s, "NO [SERVERBUG] Cannot create the mailbox");
		return;
	}
	for (size_t i = 0; i < 2; i++) {
		char from[PATH_MAX], to[PATH_MAX];
		struct dirent *de;
		DIR *dir;

		if (snprintf(from, sizeof from, "%s/%s", s->maildir, subs[i]) >= (int)sizeof from ||
		    (dir = opendir(from)) == NULL)
			continue;
		while ((de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			if (snprintf(from, sizeof from, "%s/%s/%s", s->maildir, subs[i], de->d_name) >=
			    (int)sizeof from ||
			    snprintf(to, sizeof to, "%s/%s/%s", to_dir, subs[i], de->d_name) >= (int)sizeof to)
				continue;
			if (rename(from, to) < 0)
				log_warn("session=%llu: cannot move %s: %s", s->id, from, strerror(errno));
		}
		closedir(dir);
	}
	session_reply(s, "OK Rename completed.");
}

static void
cmd_rename(struct session *s, struct imap_parser *parser)
{
	char from_dir[PATH_MAX], to_dir[PATH_MAX], *from = NULL, *to = NULL;
	char **names;
	size_t len;

	if (imap_parse_sp(parser) < 0) {
		bad(s, "Invalid arguments: expected RENAME mailbox mailbox");
		goto done;
	}
	if ((from = parse_mailbox(s, parser, from_dir, sizeof from_dir)) == NULL)
		goto done;
	if (imap_parse_sp(parser) < 0) {
		bad(s, "Invalid arguments: expected RENAME mailbox mailbox");
		goto done;
	}
	if ((to = parse_mailbox(s, parser, to_dir, sizeof to_dir)) == NULL)
		goto done;
	if (strcmp(to, "INBOX") == 0) {
		session_reply(s, "NO [ALREADYEXISTS] INBOX already exists");
		goto done;
	}
	if (strcmp(from, "INBOX") == 0) {
		rename_inbox(s, to_dir);
		goto done;
	}
	if (access(from_dir, F_OK) < 0) {
		session_reply(s, "NO [NONEXISTENT] Mailbox does not exist");
		goto done;
	}
	if (access(to_dir, F_OK) == 0) {
		session_reply(s, "NO [ALREADYEXISTS] Target mailbox already exists");
		goto done;
	}
	if (s->box != NULL && strcmp(s->box->name, from) == 0)
		close_mailbox(s, 0);

	/* Children move with their parent: ".From.X" becomes ".To.X". */
	names = folders_list(s->maildir);
	len = strlen(from);
	for (size_t i = 0; names[i] != NULL; i++) {
		char a[PATH_MAX], b[PATH_MAX];

		if (strncmp(names[i], from, len) != 0 || names[i][len] != FOLDER_SEPARATOR)
			continue;
		if (snprintf(a, sizeof a, "%s/.%s", s->maildir, names[i]) >= (int)sizeof a ||
		    snprintf(b, sizeof b, "%s/.%s%s", s->maildir, to, names[i] + len) >= (int)sizeof b)
			continue;
		if (rename(a, b) < 0)
			log_warn("session=%llu: cannot rename %s: %s", s->id, a, strerror(errno));
	}
	folders_free(names);
	if (rename(from_dir, to_dir) < 0) {
		log_warn("session=%llu: cannot rename %s: %s", s->id, from_dir, strerror(errno));
		session_reply(s, "NO [SERVERBUG] Cannot rename the mailbox");
	} else {
		session_reply(s, "OK Rename completed.");
	}
done:
	free(from);
	free(to);
}

static void
cmd_subscribe(struct session *s, struct imap_parser *parser, int subscribe)
{
	char dir[PATH_MAX], *name;

	if (imap_parse_sp(parser) < 0) {
		bad(s, "Invalid arguments: expected a mailbox name");
		return;
	}
	if ((name = parse_mailbox(s, parser, dir, sizeof dir)) == NULL)
		return;
	if (subscribe && access(dir, F_OK) < 0)
		session_reply(s, "NO [NONEXISTENT] Mailbox does not exist");
	else if (subscriptions_change(s->maildir, name, subscribe) < 0)
		session_reply(s, "NO [SERVERBUG] Cannot update subscriptions");
	else
		session_reply(s, "OK %s completed.", subscribe ? "Subscribe" : "Unsubscribe");
	free(name);
}

/* STATUS items of a mailbox. */
#define STATUS_MESSAGES		0x01
#define STATUS_RECENT		0x02
#define STATUS_UIDNEXT		0x04
#define STATUS_UIDVALIDITY	0x08
#define STATUS_UNSEEN		0x10
#define STATUS_SIZE		0x20

static int
parse_status_items(struct imap_parser *parser, unsigned *items)
{
	static const struct {
		const char *name;
		unsigned item;
	} names[] = {
		{ "MESSAGES", STATUS_MESSAGES }, { "RECENT", STATUS_RECENT },
		{ "UIDNEXT", STATUS_UIDNEXT }, { "UIDVALIDITY", STATUS_UIDVALIDITY },
		{ "UNSEEN", STATUS_UNSEEN }, { "SIZE", STATUS_SIZE },
	};

	*items = 0;
	if (imap_parse_char(parser, '(') < 0)
		return -1;
	do {
		char word[32];
		int found = 0;

		if (imap_parse_atom(parser, word, sizeof word) < 0)
			return -1;
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
			if (ascii_casecmp(word, names[i].name) == 0) {
				*items |= names[i].item;
				found = 1;
			}
		}
		if (!found)
			return -1;
	} while (imap_parse_sp(parser) == 0);
	return imap_parse_char(parser, ')');
}

/* "* STATUS name (...)" for NAME; -1 if it cannot be opened. */
static int
write_status(struct session *s, const char *name, const char *dir, unsigned items)
{
	struct mailbox *box = NULL;
	const struct mailbox *use;
	size_t unseen = 0, recent = 0;
	uint64_t size = 0;
	const char *sep = "";

	if (s->box != NULL && strcmp(s->box->name, name) == 0) {
		use = s->box;
	} else {
		box = mailbox_open(name, dir, 0);
		if (box == NULL)
			return -1;
		use = box;
	}
	for (size_t i = 0; i < use->count; i++) {
		struct message *msg = &use->messages[i];

		unseen += !(msg->flags & FLAG_SEEN);
		recent += use == s->box ? msg->recent : msg->in_new;
		if (items & STATUS_SIZE)
			size += mailbox_message_vsize((struct mailbox *)use, msg);
	}
	imap_io_puts(&s->io, "* STATUS ");
	imap_io_astring(&s->io, name, strlen(name));
	imap_io_puts(&s->io, " (");
	if (items & STATUS_MESSAGES) {
		imap_io_printf(&s->io, "%sMESSAGES %zu", sep, use->count);
		sep = " ";
	}
	if (items & STATUS_RECENT) {
		imap_io_printf(&s->io, "%sRECENT %zu", sep, recent);
		sep = " ";
	}
	if (items & STATUS_UIDNEXT) {
		imap_io_printf(&s->io, "%sUIDNEXT %u", sep, use->uidnext);
		sep = " ";
	}
	if (items & STATUS_UIDVALIDITY) {
		imap_io_printf(&s->io, "%sUIDVALIDITY %u", sep, use->uidvalidity);
		sep = " ";
	}
	if (items & STATUS_UNSEEN) {
		imap_io_printf(&s->io, "%sUNSEEN %zu", sep, unseen);
		sep = " ";
	}
	if (items & STATUS_SIZE)
		imap_io_printf(&s->io, "%sSIZE %llu", sep, (unsigned long long)size);
	imap_io_puts(&s->io, ")\r\n");
	mailbox_free(box);
	return 0;
}

static void
cmd_status(struct session *s, struct imap_parser *parser)
{
	char dir[PATH_MAX], *name;
	unsigned items;

	if (imap_parse_sp(parser) < 0) {
		bad(s, "Invalid arguments: expected STATUS mailbox (items)");
		return;
	}
	if ((name = parse_mailbox(s, parser, dir, sizeof dir)) == NULL)
		return;
	if (imap_parse_sp(parser) < 0 || parse_status_items(parser, &items) < 0 ||
	    !imap_parse_at_end(parser))
		bad(s, "Invalid arguments: expected STATUS mailbox (items)");
	else if (write_status(s, name, dir, items) < 0)
		session_reply(s, "NO [NONEXISTENT] Mailbox does not exist");
	else
		session_reply(s, "OK Status completed.");
	free(name);
}

static int
is_list_char(unsigned char c)
{
	return imap_is_atom_char(c) || c == '%' || c == '*' || c == ']';
}

/* list-mailbox: list-chars or a string. */
static char *
parse_list_mailbox(struct imap_parser *parser)
{
	const char *start = parser->p;

	if (imap_parse_peek(parser, '"') || imap_parse_peek(parser, '{'))
		return imap_parse_astring_dup(parser, 1024);
	while (parser->p < parser->end && is_list_char((unsigned char)*parser->p))
		parser->p++;
	return parser->p == start ? NULL : xstrndup(start, (size_t)(parser->p - start));
}

#define LIST_WILDCARDS_MAX	8

static size_t
count_wildcards(const char *pattern)
{
	size_t n = 0;

	for (const char *p = pattern; *p != '\0'; p++)
		n += *p == '*' || *p == '%';
	return n;
}

struct list_options {
	int subscribed_only;	/* selection SUBSCRIBED, or LSUB */
	int special_only;	/* selection SPECIAL-USE */
	int return_subscribed;
	int return_children;
	int return_special;
	unsigned status_items;
	int lsub;
};

static int
contains_name(char **names, const char *name)
{
	for (size_t i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	return 0;
}

static void
list_one(struct session *s, const struct list_options *options, char **folders, char **subscribed,
    const char *name, int exists)
{
	int children = 0, is_subscribed = contains_name(subscribed, name);
	const char *special = folder_special_use(name);
	size_t len = strlen(name);

	if (options->subscribed_only && !is_subscribed)
		return;
	if (options->special_only && special == NULL)
		return;
	for (size_t i = 0; folders[i] != NULL; i++)
		if (strncmp(folders[i], name, len) == 0 && folders[i][len] == FOLDER_SEPARATOR)
			children = 1;

	imap_io_printf(&s->io, "* %s (", options->lsub ? "LSUB" : "LIST");
	/* RFC 5258: a name that is neither a folder nor a parent is \NonExistent. */
	if (!exists)
		imap_io_puts(&s->io, options->lsub || children ? "\\Noselect" : "\\NonExistent");
	if (!options->lsub) {
		if (!exists)
			imap_io_puts(&s->io, " ");
		imap_io_puts(&s->io, children ? "\\HasChildren" : "\\HasNoChildren");
		if (special != NULL)
			imap_io_printf(&s->io, " %s", special);
		if ((options->return_subscribed || options->subscribed_only) && is_subscribed)
			imap_io_puts(&s->io, " \\Subscribed");
	}
	imap_io_puts(&s->io, ") \".\" ");
	imap_io_astring(&s->io, name, len);
	imap_io_puts(&s->io, "\r\n");

	if (options->status_items != 0 && exists) {
		char dir[PATH_MAX], copy[MAILBOX_NAME_MAX + 1];

		strlcpy_x(copy, name, sizeof copy);
		if (folder_path(s->maildir, copy, dir, sizeof dir) == 0)
			write_status(s, copy, dir, options->status_items);
	}
}

/* Add the parents of NAME that are not folders themselves (\Noselect). */
static char **
with_parents(char **folders)
{
	size_t count = 0;

	while (folders[count] != NULL)
		count++;
	for (size_t i = 0; i < count; i++) {
		char *dot = folders[i];

		while ((dot = strchr(dot, FOLDER_SEPARATOR)) != NULL) {
			char *parent = xstrndup(folders[i], (size_t)(dot - folders[i]));

			if (!contains_name(folders, parent)) {
				folders = xrealloc(folders, (count + 2) * sizeof *folders);
				folders[count++] = parent;
				folders[count] = NULL;
			} else {
				free(parent);
			}
			dot++;
		}
	}
	return folders;
}

/* Add the subscribed names that are not folders (LSUB lists them too). */
static char **
with_subscribed(char **folders, char **subscribed)
{
	size_t count = 0;

	while (folders[count] != NULL)
		count++;
	for (size_t i = 0; subscribed[i] != NULL; i++) {
		if (contains_name(folders, subscribed[i]))
			continue;
		folders = xrealloc(folders, (count + 2) * sizeof *folders);
		folders[count++] = xstrdup(subscribed[i]);
		folders[count] = NULL;
	}
	return folders;
}

static int
parse_list_options(struct imap_parser *parser, struct list_options *options, int selection)
{
	if (imap_parse_char(parser, '(') < 0)
		return -1;
	if (imap_parse_char(parser, ')') == 0)
		return 0;
	do {
		char word[32];

		if (imap_parse_atom(parser, word, sizeof word) < 0)
			return -1;
		if (selection && ascii_casecmp(word, "SUBSCRIBED") == 0)
			options->subscribed_only = 1;
		else if (selection && ascii_casecmp(word, "SPECIAL-USE") == 0)
			options->special_only = 1;
		else if (selection && ascii_casecmp(word, "RECURSIVEMATCH") == 0)
			;
		else if (!selection && ascii_casecmp(word, "SUBSCRIBED") == 0)
			options->return_subscribed = 1;
		else if (!selection && ascii_casecmp(word, "CHILDREN") == 0)
			options->return_children = 1;
		else if (!selection && ascii_casecmp(word, "SPECIAL-USE") == 0)
			options->return_special = 1;
		else if (!selection && ascii_casecmp(word, "STATUS") == 0) {
			if (imap_parse_sp(parser) < 0 ||
			    parse_status_items(parser, &options->status_items) < 0)
				return -1;
		} else
			return -1;
	} while (imap_parse_sp(parser) == 0);
	return imap_parse_char(parser, ')');
}

static void
cmd_list(struct session *s, struct imap_parser *parser, int lsub)
{
	struct list_options options = { .lsub = lsub, .subscribed_only = lsub };
	char *reference = NULL, *patterns[16];
	size_t npatterns = 0;
	char **folders, **subscribed;

	if (imap_parse_sp(parser) < 0)
		goto invalid;
	if (!lsub && imap_parse_peek(parser, '(')) {
		if (parse_list_options(parser, &options, 1) < 0 || imap_parse_sp(parser) < 0)
			goto invalid;
	}
	if ((reference = imap_parse_astring_dup(parser, 1024)) == NULL || imap_parse_sp(parser) < 0)
		goto invalid;
	if (!lsub && imap_parse_char(parser, '(') == 0) {
		do {
			if (npatterns == 16 || (patterns[npatterns] = parse_list_mailbox(parser)) == NULL)
				goto invalid;
			npatterns++;
		} while (imap_parse_sp(parser) == 0);
		if (imap_parse_char(parser, ')') < 0)
			goto invalid;
	} else {
		if ((patterns[0] = parse_list_mailbox(parser)) == NULL)
			goto invalid;
		npatterns = 1;
	}
	if (!lsub && imap_parse_sp(parser) == 0) {
		char word[16];

		if (imap_parse_atom(parser, word, sizeof word) < 0 || ascii_casecmp(word, "RETURN") != 0 ||
		    imap_parse_sp(parser) < 0 || parse_list_options(parser, &options, 0) < 0)
			goto invalid;
	}
	if (!imap_parse_at_end(parser))
		goto invalid;
	for (size_t p = 0; p < npatterns; p++) {
		/* Matching backtracks at each wildcard, so their number is capped. */
		if (count_wildcards(reference) + count_wildcards(patterns[p]) > LIST_WILDCARDS_MAX) {
			bad(s, "Too many wildcards in a LIST pattern");
			goto done;
		}
	}

	if (npatterns == 1 && patterns[0][0] == '\0') {
		imap_io_printf(&s->io, "* %s (\\Noselect) \".\" \"\"\r\n", lsub ? "LSUB" : "LIST");
	} else {
		folders = with_parents(folders_list(s->maildir));
		subscribed = subscriptions_read(s->maildir);
		if (options.subscribed_only)
			folders = with_subscribed(folders, subscribed);
		for (size_t i = 0; folders[i] != NULL; i++) {
			int matched = 0;

			for (size_t p = 0; p < npatterns && !matched; p++) {
				char *full = xasprintf("%s%s", reference, patterns[p]);

				matched = folder_match(full, folders[i]) ||
				    (strcmp(folders[i], "INBOX") == 0 && ascii_casecmp(full, "INBOX") == 0);
				free(full);
			}
			if (matched) {
				char dir[PATH_MAX], copy[MAILBOX_NAME_MAX + 1];

				strlcpy_x(copy, folders[i], sizeof copy);
				list_one(s, &options, folders, subscribed, folders[i],
				    folder_path(s->maildir, copy, dir, sizeof dir) == 0 && access(dir, F_OK) == 0);
			}
		}
		folders_free(folders);
		folders_free(subscribed);
	}
	session_reply(s, "OK %s completed.", lsub ? "Lsub" : "List");
	goto done;

invalid:
	bad(s, lsub ? "Invalid arguments: expected LSUB reference pattern" :
	    "Invalid arguments: expected LIST [(options)] reference pattern [RETURN (options)]");
done:
	free(reference);
	for (size_t i = 0; i < npatterns; i++)
		free(patterns[i]);
}

/* IDLE (RFC 2177): wait for DONE, reporting changes as inotify reports them. */
static void
cmd_idle(struct session *s)
{
	long long deadline = now_usec() + imapd_settings.idle_timeout * 1000000LL;
	int notify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (notify >= 0 && s->box != NULL) {
		char path[PATH_MAX];
		uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE;

		snprintf(path, sizeof path, "%s/new", s->box->dir);
		inotify_add_watch(notify, path, mask);
		snprintf(path, sizeof path, "%s/cur", s->box->dir);
		inotify_add_watch(notify, path, mask);
	}
	imap_io_puts(&s->io, "+ idling\r\n");
	imap_io_flush(&s->io);

	for (;;) {
		struct pollfd pfd[2] = { { .fd = s->io.fd, .events = POLLIN },
		    { .fd = notify, .events = POLLIN } };
		long long left = (deadline - now_usec()) / 1000;
		int n;

		if (left <= 0) {
			imap_io_puts(&s->io, "* BYE Disconnected for inactivity\r\n");
			s->logout = 1;
			break;
		}
		if (imap_io_buffered(&s->io) > 0)
			n = 1, pfd[0].revents = POLLIN;
		else
			n = poll(pfd, notify >= 0 ? 2 : 1, left < IDLE_RESCAN_MS ? (int)left : IDLE_RESCAN_MS);
		if (n < 0 && errno != EINTR)
			break;
		if (n >= 0 && (n == 0 || (pfd[1].revents & POLLIN))) {
			char events[4096];

			while (notify >= 0 && read(notify, events, sizeof events) > 0)
				;
			session_sync(s, 1);
			imap_io_flush(&s->io);
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			enum imap_read_status status;
			char *line = imap_io_read_line(&s->io, 64, &status);

			if (line == NULL) {
				s->logout = status != IMAP_READ_TOO_LONG;
				if (!s->logout)
					bad(s, "Expected DONE");
				break;
			}
			if (ascii_casecmp(line, "DONE") == 0)
				session_reply(s, "OK Idle completed.");
			else
				bad(s, "Expected DONE");
			free(line);
			break;
		}
	}
	if (notify >= 0)
		close(notify);
}

/* Commands that need a selected mailbox. */
static int
need_selected(struct session *s)
{
	if (s->box != NULL)
		return 1;
	bad(s, "No mailbox selected");
	return 0;
}

static int
execute_selected(struct session *s, const char *name, struct imap_parser *parser, int uid_mode)
{
	if (strcmp(name, "FETCH") == 0)
		cmd_fetch(s, parser, uid_mode);
	else if (strcmp(name, "SEARCH") == 0)
		cmd_search(s, parser, uid_mode);
	else if (strcmp(name, "STORE") == 0)
		cmd_store(s, parser, uid_mode);
	else if (strcmp(name, "COPY") == 0)
		cmd_copy(s, parser, uid_mode, 0);
	else if (strcmp(name, "MOVE") == 0)
		cmd_copy(s, parser, uid_mode, 1);
	else if (strcmp(name, "EXPUNGE") == 0)
		cmd_expunge(s, parser, uid_mode);
	else
		return 0;
	return 1;
}

static void
execute(struct session *s, const struct imap_command_text *text)
{
	struct imap_parser parser;
	char name[32];
	int r, allow_expunge = 1;

	imap_parser_init(&parser, text->data, text->len);
	r = imap_parse_command_start(&parser, s->tag, sizeof s->tag, name, sizeof name);
	if (r == -1) {
		imap_io_puts(&s->io, "* BAD Invalid tag\r\n");
		bad_commands++;
		return;
	}
	if (r == -2) {
		bad(s, "Missing or invalid command name");
		return;
	}

	if (strcmp(name, "CAPABILITY") == 0 && imap_parse_at_end(&parser)) {
		imap_io_printf(&s->io, "* CAPABILITY " IMAPD_CAPS_POSTLOGIN " APPENDLIMIT=%zu\r\n",
		    imapd_settings.limits.max_append);
		session_reply(s, "OK Capability completed.");
	} else if (strcmp(name, "NOOP") == 0 || strcmp(name, "CHECK") == 0) {
		session_sync(s, 1);
		session_reply(s, "OK %s completed.", name[0] == 'N' ? "NOOP" : "Check");
		return;
	} else if (strcmp(name, "LOGOUT") == 0) {
		imap_io_puts(&s->io, "* BYE Logging out\r\n");
		session_reply(s, "OK Logout completed.");
		s->logout = 1;
		return;
	} else if (strcmp(name, "ID") == 0) {
		if (imap_parse_sp(&parser) < 0 || imap_parse_id_params(&parser) < 0) {
			bad(s, "Invalid arguments: expected ID NIL or a parameter list");
		} else {
			imap_io_puts(&s->io, "* ID (\"name\" \"Estafeta\")\r\n");
			session_reply(s, "OK ID completed.");
		}
	} else if (strcmp(name, "ENABLE") == 0) {
		/* No extension that ENABLE switches on is supported yet. */
		if (imap_parse_sp(&parser) < 0 || imap_parse_at_end(&parser)) {
			bad(s, "Invalid arguments: expected ENABLE capability...");
		} else {
			imap_io_puts(&s->io, "* ENABLED\r\n");
			session_reply(s, "OK Enable completed.");
		}
	} else if (strcmp(name, "NAMESPACE") == 0 && imap_parse_at_end(&parser)) {
		imap_io_puts(&s->io, "* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
		session_reply(s, "OK Namespace completed.");
	} else if (strcmp(name, "LOGIN") == 0 || strcmp(name, "AUTHENTICATE") == 0) {
		bad(s, "Already logged in");
	} else if (strcmp(name, "SELECT") == 0 || strcmp(name, "EXAMINE") == 0) {
		cmd_select(s, &parser, name[0] == 'E');
		return;
	} else if (strcmp(name, "CREATE") == 0) {
		cmd_create(s, &parser);
	} else if (strcmp(name, "DELETE") == 0) {
		cmd_delete(s, &parser);
	} else if (strcmp(name, "RENAME") == 0) {
		cmd_rename(s, &parser);
	} else if (strcmp(name, "SUBSCRIBE") == 0 || strcmp(name, "UNSUBSCRIBE") == 0) {
		cmd_subscribe(s, &parser, name[0] == 'S');
	} else if (strcmp(name, "LIST") == 0 || strcmp(name, "LSUB") == 0) {
		cmd_list(s, &parser, name[1] == 'S');
	} else if (strcmp(name, "STATUS") == 0) {
		cmd_status(s, &parser);
	} else if (strcmp(name, "APPEND") == 0) {
		cmd_append(s, &parser);
	} else if (strcmp(name, "IDLE") == 0 && imap_parse_at_end(&parser)) {
		cmd_idle(s);
		return;
	} else if (strcmp(name, "CLOSE") == 0 || strcmp(name, "UNSELECT") == 0) {
		if (need_selected(s)) {
			close_mailbox(s, name[0] == 'C');
			session_reply(s, "OK %s completed.", name[0] == 'C' ? "Close" : "Unselect");
		}
		return;
	} else if (strcmp(name, "UID") == 0) {
		allow_expunge = 0;
		if (imap_parse_sp(&parser) < 0 || imap_parse_atom(&parser, name, sizeof name) < 0) {
			bad(s, "Invalid arguments: expected UID command");
		} else {
			for (char *p = name; *p != '\0'; p++)
				if (*p >= 'a' && *p <= 'z')
					*p = (char)(*p - 'a' + 'A');
			if (need_selected(s) && !execute_selected(s, name, &parser, 1))
				bad(s, "Unknown UID command");
			allow_expunge = strcmp(name, "COPY") == 0 || strcmp(name, "MOVE") == 0 ||
			    strcmp(name, "EXPUNGE") == 0;
		}
	} else if (strcmp(name, "FETCH") == 0 || strcmp(name, "SEARCH") == 0 ||
	    strcmp(name, "STORE") == 0 || strcmp(name, "COPY") == 0 ||
	    strcmp(name, "MOVE") == 0 || strcmp(name, "EXPUNGE") == 0) {
		allow_expunge = strcmp(name, "COPY") == 0 || strcmp(name, "MOVE") == 0 ||
		    strcmp(name, "EXPUNGE") == 0;
		if (need_selected(s))
			execute_selected(s, name, &parser, 0);
		if (!allow_expunge)
			return;
	} else {
		bad(s, "Unknown command");
	}
	session_sync(s, allow_expunge);
}

void
session_run(const struct session_start *start)
{
	struct session session = { .id = start->session_id, .user = start->user };
	struct session *s = &session;
	struct imap_command_text text = { 0 };

	imap_io_init(&s->io, start->fd, (int)imapd_settings.idle_timeout * 1000);
	imap_io_push_input(&s->io, start->input, start->inputlen);
	strlcpy_x(s->maildir, start->maildir, sizeof s->maildir);
	strlcpy_x(s->tag, start->tag, sizeof s->tag);

	if (maildir_create(s->maildir, 0) < 0) {
		log_error("session=%llu: user=<%s>: cannot create %s: %s", s->id, s->user, s->maildir,
		    strerror(errno));
		session_reply(s, "NO [SERVERBUG] Cannot open the mail directory");
		imap_io_flush(&s->io);
		_exit(1);
	}
	folders_init(s->maildir);
	session_reply(s, "OK [CAPABILITY " IMAPD_CAPS_POSTLOGIN "] Logged in");
	log_info("session=%llu: user=<%s>: logged in, mail process %ld", s->id, s->user,
	    (long)getpid());

	while (!s->logout) {
		enum imap_read_status status;

		if (imap_io_flush(&s->io) < 0)
			break;
		status = imap_io_read_command(&s->io, &imapd_settings.limits, &text);
		if (status != IMAP_READ_OK) {
			if (imap_io_reject(&s->io, status, &text))
				break;
			bad_commands++;
		} else {
			execute(s, &text);
		}
		if (bad_commands >= SESSION_MAX_BAD_COMMANDS) {
			imap_io_puts(&s->io, "* BYE Too many invalid commands\r\n");
			break;
		}
	}
	imap_io_flush(&s->io);
	if (s->box != NULL)
		mailbox_free(s->box);
	imap_command_text_free(&text);
	log_info("session=%llu: user=<%s>: logged out", s->id, s->user);
	_exit(0);
}
