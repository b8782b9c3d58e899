/* Writing the message out (with added header lines) and mail locations. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "deliverd.h"
#include "util.h"

#define COPY_CHUNK (64 * 1024)

/* Longest ">>>...From " prefix that is still checked for mboxrd quoting;
 * a line with more leading '>' is copied as it is. */
#define MBOXRD_MAX_PREFIX 1024

/* A buffered writer that remembers the first error. */
struct out_buffer {
	int fd;
	char data[COPY_CHUNK];
	size_t used;
	int failed;
};

static void
out_flush(struct out_buffer *out)
{
	if (!out->failed && out->used > 0 && write_all(out->fd, out->data, out->used) < 0)
		out->failed = errno ? errno : EIO;
	out->used = 0;
}

static void
out_put(struct out_buffer *out, const char *bytes, size_t len)
{
	while (len > 0) {
		size_t room = sizeof out->data - out->used;
		size_t n = len < room ? len : room;

		memcpy(out->data + out->used, bytes, n);
		out->used += n;
		bytes += n;
		len -= n;
		if (out->used == sizeof out->data)
			out_flush(out);
	}
}

/* The buffers of message_write, reused for every message. Allocating
 * and clearing 128 KB per delivery showed in a mailbox worker's profile.
 * deliverd's processes are single-threaded. */
static struct out_buffer message_out;
static char message_chunk[COPY_CHUNK];

/*
 * mboxrd quoting state: at the start of each line, the bytes that may
 * still become ">*From " are held back in PENDING until they either
 * match (and get one more '>') or stop matching.
 */
struct mboxrd_state {
	int at_line_start;
	char pending[MBOXRD_MAX_PREFIX + 8];
	size_t pending_len;
};

static void
mboxrd_release(struct out_buffer *out, struct mboxrd_state *state, int quote)
{
	if (quote)
		out_put(out, ">", 1);
	out_put(out, state->pending, state->pending_len);
	state->pending_len = 0;
	state->at_line_start = 0;
}

static void
mboxrd_put_byte(struct out_buffer *out, struct mboxrd_state *state, char c)
{
	static const char from[] = "From ";

	size_t quotes = 0, matched;

	if (!state->at_line_start) {
		out_put(out, &c, 1);
		if (c == '\n')
			state->at_line_start = 1;
		return;
	}

	while (quotes < state->pending_len && state->pending[quotes] == '>')
		quotes++;
	matched = state->pending_len - quotes;

	if (matched == 0 && c == '>' && quotes < MBOXRD_MAX_PREFIX) {
		state->pending[state->pending_len++] = c;
		return;
	}
	if (c == from[matched]) {
		state->pending[state->pending_len++] = c;
		if (matched + 1 == sizeof from - 1)
			mboxrd_release(out, state, 1);
		return;
	}

	mboxrd_release(out, state, 0);
	out_put(out, &c, 1);
	if (c == '\n')
		state->at_line_start = 1;
}

int
message_write(const struct message *msg, int fd, const char *prefix, int mboxrd)
{
	struct out_buffer *out = &message_out;
	struct mboxrd_state state = { .at_line_start = 1 };
	char *chunk = message_chunk;
	off_t offset = 0;
	int saved_errno = 0;

	out->fd = fd;
	out->used = 0;
	out->failed = 0;
	if (prefix != NULL)
		out_put(out, prefix, strlen(prefix));

	while (offset < msg->size && !out->failed) {
		ssize_t n = pread(msg->fd, chunk, COPY_CHUNK, offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			saved_errno = n < 0 ? errno : EIO;
			break;
		}
		offset += n;
		if (!mboxrd) {
			out_put(out, chunk, (size_t)n);
			continue;
		}
		for (ssize_t i = 0; i < n; i++)
			mboxrd_put_byte(out, &state, chunk[i]);
	}
	if (mboxrd && state.pending_len > 0)
		mboxrd_release(out, &state, 0);
	out_flush(out);

	if (saved_errno == 0)
		saved_errno = out->failed;
	errno = saved_errno;
	return saved_errno ? -1 : 0;
}

const char *
local_hostname(void)
{
	return config_myhostname();
}

char *
message_delivery_prefix(const char *sender, const char *recipient)
{
	return xasprintf("Return-Path: <%s>\nDelivered-To: %s\n", sender, recipient);
}

char *
message_mbox_separator(const char *sender)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	/* asctime() layout, as mail readers expect after "From sender ". */
	localtime_r(&now, &tm);
	strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);
	return xasprintf("From %s %s\n", sender[0] != '\0' ? sender : "MAILER-DAEMON", date);
}

/*
 * Expand '~' at the start and the Dovecot variables %u (user), %n (local
 * part), %d (domain), %h (home) and %% in TEXT. Returns 0, or -1 if the
 * result does not fit or a variable is unknown.
 */
static int
expand_location_path(const char *text, const struct userdb_entry *user, char *out,
    size_t outsize)
{
	const char *at = strchr(user->user, '@');
	size_t n = 0;

	if (text[0] == '~' && (text[1] == '/' || text[1] == '\0')) {
		n = strlcpy_x(out, user->home, outsize);
		text++;
	}

	for (; *text != '\0' && n < outsize; text++) {
		char piece[PATH_MAX];

		if (*text != '%') {
			out[n++] = *text;
			continue;
		}
		switch (*++text) {
		case 'u':
			strlcpy_x(piece, user->user, sizeof piece);
			break;
		case 'n':
			strlcpy_x(piece, user->user, sizeof piece);
			if (at != NULL)
				piece[at - user->user] = '\0';
			break;
		case 'd':
			strlcpy_x(piece, at != NULL ? at + 1 : "", sizeof piece);
			break;
		case 'h':
			strlcpy_x(piece, user->home, sizeof piece);
			break;
		case '%':
			strlcpy_x(piece, "%", sizeof piece);
			break;
		default:
			return -1;
		}
		n += strlcpy_x(out + n, piece, outsize - n);
	}
	if (n >= outsize)
		return -1;
	out[n] = '\0';
	return 0;
}

int
mail_location_inbox(const char *location, const struct userdb_entry *user,
    const char *spool_directory, char *type, size_t typesize, char *path, size_t pathsize)
{
	char *copy = xstrdup(location), *fields = copy, *kind, *root, *option;
	const char *inbox = NULL;
	int rc = -1;

	kind = strsep(&fields, ":");
	root = strsep(&fields, ":");
	while ((option = strsep(&fields, ":")) != NULL)
		if (strncmp(option, "INBOX=", 6) == 0)
			inbox = option + 6;

	if (root == NULL || root[0] == '\0')
		goto done;
	strlcpy_x(type, kind, typesize);

	if (strcmp(kind, "maildir") == 0) {
		rc = expand_location_path(root, user, path, pathsize);
	} else if (strcmp(kind, "mbox") == 0) {
		if (inbox != NULL) {
			rc = expand_location_path(inbox, user, path, pathsize);
		} else {
			int n = snprintf(path, pathsize, "%s/%s", spool_directory, user->user);

			rc = n >= 0 && (size_t)n < pathsize ? 0 : -1;
		}
	}

	/* A relative path would be taken relative to whatever the cwd is. */
	if (rc == 0 && path[0] != '/')
		rc = -1;
done:
	free(copy);
	return rc;
}
