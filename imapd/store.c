/* Commands that change messages: STORE, COPY, MOVE, EXPUNGE, APPEND
 * (RFC 3501, RFC 4315 UIDPLUS, RFC 6851 MOVE). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "folders.h"
#include "log.h"
#include "session.h"
#include "util.h"

void
cmd_store(struct session *s, struct imap_parser *parser, int uid_mode)
{
	struct imap_seqset set;
	char action[32];
	unsigned flags;
	uint32_t keywords;
	size_t *indices = NULL;
	long count;
	int mode, silent, r;

	if (imap_parse_sp(parser) < 0 || imap_parse_seqset(parser, &set) < 0) {
		session_reply(s, "BAD Invalid arguments: expected STORE sequence-set action flags");
		return;
	}
	if (imap_parse_sp(parser) < 0 || imap_parse_atom(parser, action, sizeof action) < 0 ||
	    imap_parse_sp(parser) < 0) {
		session_reply(s, "BAD Invalid arguments: expected STORE sequence-set action flags");
		goto done;
	}
	mode = 0;
	if (action[0] == '+')
		mode = 1;
	else if (action[0] == '-')
		mode = -1;
	silent = strlen(action) > 7 && ascii_casecmp(action + strlen(action) - 7, ".SILENT") == 0;
	if (ascii_ncasecmp(action + (mode != 0), "FLAGS", 5) != 0 ||
	    strlen(action + (mode != 0)) != (size_t)(silent ? 12 : 5)) {
		session_reply(s, "BAD Invalid STORE action: expected [+-]FLAGS[.SILENT]");
		goto done;
	}
	if (s->readonly) {
		session_reply(s, "NO [READ-ONLY] Mailbox is read-only");
		goto done;
	}
	r = session_parse_flags(s, parser, mode >= 0, &flags, &keywords);
	if (r == -2) {
		session_reply(s, "NO [LIMIT] Too many keywords in this mailbox");
		goto done;
	}
	if (r < 0 || !imap_parse_at_end(parser)) {
		session_reply(s, "BAD Invalid flag list");
		goto done;
	}
	count = session_resolve(s, &set, uid_mode, &indices);
	if (count < 0) {
		session_reply(s, "BAD Invalid message number: the mailbox has %zu messages",
		    s->box->count);
		goto done;
	}
	for (long i = 0; i < count; i++) {
		struct message *msg = &s->box->messages[indices[i]];
		unsigned new_flags = mode > 0 ? msg->flags | flags :
		    mode < 0 ? msg->flags & ~flags : flags;
		uint32_t new_keywords = mode > 0 ? msg->keywords | keywords :
		    mode < 0 ? msg->keywords & ~keywords : keywords;

		if (msg->gone)
			continue;
		if ((new_flags != msg->flags || new_keywords != msg->keywords) &&
		    mailbox_set_flags(s->box, msg, new_flags, new_keywords) < 0)
			continue;
		if (silent)
			continue;
		imap_io_printf(&s->io, "* %zu FETCH (", indices[i] + 1);
		session_write_flags(s, msg);
		if (uid_mode)
			imap_io_printf(&s->io, " UID %u", msg->uid);
		imap_io_puts(&s->io, ")\r\n");
	}
	session_reply(s, "OK %sStore completed.", uid_mode ? "UID " : "");
done:
	free(indices);
	imap_seqset_free(&set);
}

/* Open the mailbox NAME for adding messages, replying NO when it cannot be. */
static struct mailbox *
open_target(struct session *s, char *name)
{
	char dir[PATH_MAX];
	struct mailbox *box;

	if (folder_path(s->maildir, name, dir, sizeof dir) < 0) {
		session_reply(s, "NO [CANNOT] Invalid mailbox name");
		return NULL;
	}
	box = mailbox_open(name, dir, 0);
	if (box == NULL)
		session_reply(s, errno == ENOENT ? "NO [TRYCREATE] Mailbox does not exist" :
		    "NO [SERVERBUG] Cannot open the mailbox");
	return box;
}

/* MSG's keywords in SRC as keyword bits of DEST. */
static uint32_t
map_keywords(struct mailbox *src, struct mailbox *dest, uint32_t keywords)
{
	uint32_t out = 0;

	for (size_t k = 0; k < src->keyword_count; k++) {
		int index;

		if (!(keywords & (1u << k)) || src->keywords[k] == NULL)
			continue;
		index = mailbox_keyword_index(dest, src->keywords[k], 1);
		if (index >= 0)
			out |= 1u << index;
	}
	return out;
}

static void
append_uid(char **list, uint32_t uid)
{
	char *longer = xasprintf("%s%s%u", *list != NULL ? *list : "", *list != NULL ? "," : "", uid);

	free(*list);
	*list = longer;
}

/* Undo a COPY that failed part way: RFC 3501 wants it to add nothing. */
static void
remove_copies(struct mailbox *dest, const uint32_t *uids, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		struct message *msg = mailbox_find_uid(dest, uids[i]);
		char path[PATH_MAX];

		if (msg == NULL)
			continue;
		snprintf(path, sizeof path, "%s/%s", dest->dir, msg->path);
		if (unlink(path) < 0)
			log_warn("cannot remove the partial copy %s: %s", path, strerror(errno));
	}
	mailbox_sync(dest, 0);
}

void
cmd_copy(struct session *s, struct imap_parser *parser, int uid_mode, int move)
{
	struct imap_seqset set;
	struct mailbox *dest = NULL;
	char *name = NULL, *src_uids = NULL, *dest_uids = NULL;
	size_t *indices = NULL, ncopied = 0;
	uint32_t *copied = NULL;
	long count;
	int failed = 0;

	if (imap_parse_sp(parser) < 0 || imap_parse_seqset(parser, &set) < 0) {
		session_reply(s, "BAD Invalid arguments: expected sequence-set mailbox");
		return;
	}
	if (imap_parse_sp(parser) < 0 || (name = imap_parse_astring_dup(parser, MAILBOX_NAME_MAX)) == NULL ||
	    !imap_parse_at_end(parser)) {
		session_reply(s, "BAD Invalid arguments: expected sequence-set mailbox");
		goto done;
	}
	if (move && s->readonly) {
		session_reply(s, "NO [READ-ONLY] Mailbox is read-only");
		goto done;
	}
	count = session_resolve(s, &set, uid_mode, &indices);
	if (count < 0) {
		session_reply(s, "BAD Invalid message number: the mailbox has %zu messages",
		    s->box->count);
		goto done;
	}
	if ((dest = open_target(s, name)) == NULL)
		goto done;
	copied = xcalloc((size_t)count + 1, sizeof *copied);

	for (long i = 0; i < count; i++) {
		struct message *msg = &s->box->messages[indices[i]];
		char path[PATH_MAX];
		uint32_t uid;
		int fd;

		/* Opening finds the file again if another session renamed it. */
		if (msg->gone || (fd = mailbox_open_message(s->box, msg)) < 0)
			continue;
		close(fd);
		snprintf(path, sizeof path, "%s/%s", s->box->dir, msg->path);
		uid = mailbox_add(dest, -1, path, msg->flags,
		    map_keywords(s->box, dest, msg->keywords), 0);
		if (uid == 0) {
			log_warn("session=%llu: copy of %s to %s failed: %s", s->id, path, dest->dir,
			    strerror(errno));
			failed = 1;
			break;
		}
		copied[ncopied++] = uid;
		append_uid(&src_uids, msg->uid);
		append_uid(&dest_uids, uid);
	}
	if (failed) {
		remove_copies(dest, copied, ncopied);
		session_reply(s, "NO [SERVERBUG] Copy failed");
		goto done;
	}
	if (src_uids == NULL) {
		session_reply(s, "OK %s completed, no messages.", move ? "Move" : "Copy");
		goto done;
	}
	if (!move) {
		session_reply(s, "OK [COPYUID %u %s %s] Copy completed.", dest->uidvalidity, src_uids,
		    dest_uids);
		goto done;
	}

	imap_io_printf(&s->io, "* OK [COPYUID %u %s %s] Moved.\r\n", dest->uidvalidity, src_uids,
	    dest_uids);
	for (long i = 0; i < count; i++) {
		struct message *msg = &s->box->messages[indices[i]];
		char path[PATH_MAX];

		snprintf(path, sizeof path, "%s/%s", s->box->dir, msg->path);
		if (!msg->gone && unlink(path) < 0 && errno != ENOENT)
			log_warn("session=%llu: cannot remove %s: %s", s->id, path, strerror(errno));
	}
	session_sync(s, 1);
	session_reply(s, "OK Move completed.");
done:
	mailbox_free(dest);
	free(name);
	free(src_uids);
	free(dest_uids);
	free(copied);
	free(indices);
	imap_seqset_free(&set);
}

void
cmd_expunge(struct session *s, struct imap_parser *parser, int uid_mode)
{
	struct imap_seqset set = { 0 };

	if (uid_mode && (imap_parse_sp(parser) < 0 || imap_parse_seqset(parser, &set) < 0)) {
		session_reply(s, "BAD Invalid arguments: expected UID EXPUNGE sequence-set");
		return;
	}
	if (!imap_parse_at_end(parser)) {
		session_reply(s, "BAD Unexpected arguments");
		imap_seqset_free(&set);
		return;
	}
	if (s->readonly) {
		session_reply(s, "NO [READ-ONLY] Mailbox is read-only");
		imap_seqset_free(&set);
		return;
	}
	for (size_t i = 0; i < s->box->count; i++) {
		struct message *msg = &s->box->messages[i];
		uint32_t star = s->box->messages[s->box->count - 1].uid;
		char path[PATH_MAX];

		if (!(msg->flags & FLAG_DELETED) || msg->gone)
			continue;
		if (uid_mode && !imap_seqset_contains(&set, msg->uid, star))
			continue;
		snprintf(path, sizeof path, "%s/%s", s->box->dir, msg->path);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("session=%llu: cannot remove %s: %s", s->id, path, strerror(errno));
	}
	session_sync(s, 1);
	session_reply(s, "OK %sExpunge completed.", uid_mode ? "UID " : "");
	imap_seqset_free(&set);
}

void
cmd_append(struct session *s, struct imap_parser *parser)
{
	struct mailbox *dest = NULL, *selected = s->box;
	struct imap_string message = { 0 };
	char *name = NULL;
	unsigned flags = 0;
	uint32_t keywords = 0, uid;
	time_t date = 0;
	int fd = -1;

	if (imap_parse_sp(parser) < 0 ||
	    (name = imap_parse_astring_dup(parser, MAILBOX_NAME_MAX)) == NULL ||
	    imap_parse_sp(parser) < 0) {
		session_reply(s, "BAD Invalid arguments: expected APPEND mailbox [(flags)] [date-time] message");
		goto done;
	}
	if ((dest = open_target(s, name)) == NULL)
		goto done;
	if (imap_parse_peek(parser, '(')) {
		int r;

		s->box = dest;
		r = session_parse_flags(s, parser, 1, &flags, &keywords);
		s->box = selected;
		if (r < 0 || imap_parse_sp(parser) < 0) {
			session_reply(s, "BAD Invalid flag list");
			goto done;
		}
	}
	if (imap_parse_peek(parser, '"')) {
		struct imap_string text;
		char copy[64];

		if (imap_parse_string(parser, &text) < 0 || text.len >= sizeof copy) {
			imap_string_free(&text);
			session_reply(s, "BAD Invalid date-time");
			goto done;
		}
		memcpy(copy, text.data, text.len);
		copy[text.len] = '\0';
		imap_string_free(&text);
		if (imap_parse_date_time(copy, &date) < 0 || imap_parse_sp(parser) < 0) {
			session_reply(s, "BAD Invalid date-time");
			goto done;
		}
	}
	/* "~{n}" is RFC 3516's literal8, which may contain NUL bytes. */
	if (imap_parse_peek(parser, '~'))
		parser->p++;
	if (!imap_parse_peek(parser, '{') || imap_parse_string(parser, &message) < 0 ||
	    !imap_parse_at_end(parser)) {
		session_reply(s, "BAD Invalid arguments: expected the message as a literal");
		goto done;
	}
	/* As Dovecot does: an empty message is almost surely a client bug. */
	if (message.len == 0) {
		session_reply(s, "NO Cannot save a zero byte message");
		goto done;
	}
	/* NOTE: the literal is held in memory whole, up to imapd_append_limit. */
	fd = memfd_create("append", MFD_CLOEXEC);
	if (fd < 0 || write_all(fd, message.data, message.len) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
		session_reply(s, "NO [SERVERBUG] Cannot store the message");
		goto done;
	}
	uid = mailbox_add(dest, fd, NULL, flags, keywords, date);
	if (uid == 0) {
		log_warn("session=%llu: append to %s failed: %s", s->id, dest->dir, strerror(errno));
		session_reply(s, "NO [SERVERBUG] Cannot store the message");
		goto done;
	}
	session_reply(s, "OK [APPENDUID %u %u] Append completed.", dest->uidvalidity, uid);
done:
	if (fd >= 0)
		close(fd);
	imap_string_free(&message);
	mailbox_free(dest);
	free(name);
}
