/* Maildir mailboxes in Dovecot's layout (see mailbox.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mailbox.h"
#include "uidlist.h"
#include "util.h"

/* Flag letters in the ASCII order Maildir requires. */
static const struct {
	char letter;
	unsigned flag;
} info_flags[] = {
	{ 'D', FLAG_DRAFT },
	{ 'F', FLAG_FLAGGED },
	{ 'R', FLAG_ANSWERED },
	{ 'S', FLAG_SEEN },
	{ 'T', FLAG_DELETED },
};

void
maildir_info_letters(unsigned flags, uint32_t keywords, char *out, size_t outsize)
{
	size_t n = 0;

	for (size_t i = 0; i < sizeof info_flags / sizeof info_flags[0]; i++)
		if ((flags & info_flags[i].flag) && n + 1 < outsize)
			out[n++] = info_flags[i].letter;
	for (int k = 0; k < KEYWORDS_MAX; k++)
		if ((keywords & (1u << k)) && n + 1 < outsize)
			out[n++] = (char)('a' + k);
	out[n] = '\0';
}

void
maildir_parse_info(const char *info, unsigned *flags, uint32_t *keywords)
{
	*flags = 0;
	*keywords = 0;
	for (const char *p = info; *p != '\0' && *p != ','; p++) {
		if (*p >= 'a' && *p <= 'z')
			*keywords |= 1u << (*p - 'a');
		for (size_t i = 0; i < sizeof info_flags / sizeof info_flags[0]; i++)
			if (*p == info_flags[i].letter)
				*flags |= info_flags[i].flag;
	}
}

void
maildir_unique_name(char *out, size_t outsize)
{
	static unsigned counter;
	struct timeval tv;
	char host[256];

	gettimeofday(&tv, NULL);
	if (gethostname(host, sizeof host) < 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	/* '/' and ':' cannot appear in a Maildir name; Maildir escapes them so. */
	for (char *p = host; *p != '\0'; p++)
		if (*p == '/' || *p == ':')
			*p = '_';
	snprintf(out, outsize, "%lld.M%ldP%ldQ%u.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
	    (long)getpid(), ++counter, host);
}

int
maildir_create(const char *dir, int folder)
{
	static const char *const subdirs[] = { "cur", "new", "tmp" };
	char path[PATH_MAX];

	if (mkdir_p(dir, 0700) < 0)
		return -1;
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, subdirs[i]);
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -1;
	}
	if (folder) {
		int fd;

		snprintf(path, sizeof path, "%s/maildirfolder", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			return -1;
		close(fd);
	}
	return 0;
}

/* A file found in new/ or cur/. */
struct found {
	char *base;
	char *path;
	unsigned flags;
	uint32_t keywords;
	int in_new;
	int recent;
	int used;
};

static int
found_cmp(const void *a, const void *b)
{
	return strcmp(((const struct found *)a)->base, ((const struct found *)b)->base);
}

/*
 * Delivery order of two Maildir names "<seconds>.M<microseconds>...":
 * the numbers compare as numbers (M99999 comes before M100000), and
 * names of another form by strcmp.
 */
static int
delivery_cmp(const void *a, const void *b)
{
	const char *x = (*(struct found *const *)a)->base, *y = (*(struct found *const *)b)->base;
	char *xend, *yend;
	unsigned long long xs = strtoull(x, &xend, 10), ys = strtoull(y, &yend, 10);

	if (xs != ys)
		return xs < ys ? -1 : 1;
	if (xend[0] == '.' && xend[1] == 'M' && yend[0] == '.' && yend[1] == 'M') {
		unsigned long long xu = strtoull(xend + 2, NULL, 10), yu = strtoull(yend + 2, NULL, 10);

		if (xu != yu)
			return xu < yu ? -1 : 1;
	}
	return strcmp(x, y);
}

static int
scan_dir(struct mailbox *box, const char *sub, int move_new, struct found **files, size_t *count,
    size_t *cap)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;

	snprintf(path, sizeof path, "%s/%s", box->dir, sub);
	dir = opendir(path);
	if (dir == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		struct found file = { 0 };
		char *info;

		if (de->d_name[0] == '.')
			continue;
		if (*count == *cap) {
			*cap = *cap == 0 ? 256 : *cap * 2;
			*files = xrealloc(*files, *cap * sizeof **files);
		}
		file.base = xstrdup(de->d_name);
		info = strchr(file.base, ':');
		if (info != NULL) {
			*info = '\0';
			if (strncmp(info + 1, "2,", 2) == 0)
				maildir_parse_info(info + 3, &file.flags, &file.keywords);
		}
		file.path = xasprintf("%s/%s", sub, de->d_name);
		file.in_new = strcmp(sub, "new") == 0;
		if (file.in_new && move_new) {
			char from[PATH_MAX], to[PATH_MAX];
			char *name = xasprintf("cur/%s:2,", file.base);

			snprintf(from, sizeof from, "%s/%s", box->dir, file.path);
			snprintf(to, sizeof to, "%s/%s", box->dir, name);
			if (rename(from, to) == 0) {
				free(file.path);
				file.path = name;
				file.in_new = 0;
				file.recent = 1;
			} else {
				free(name);
			}
		}
		(*files)[(*count)++] = file;
	}
	closedir(dir);
	return 0;
}

void
mailbox_messages_free(struct message *messages, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(messages[i].base);
		free(messages[i].ext);
		free(messages[i].path);
	}
	free(messages);
}

static int
message_uid_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct message *)a)->uid, y = ((const struct message *)b)->uid;

	return x < y ? -1 : x > y;
}

/* TODO: keep an index of UIDs, flags and sizes, so that a command on a
 * large folder does not list and rename-check every file again. */
int
mailbox_sync_keep(struct mailbox *box, int move_new, struct message **old, size_t *oldcount)
{
	struct uidlist_entry *entries;
	struct found *files = NULL;
	struct message *messages;
	size_t nentries, nfiles = 0, cap = 0, count = 0;
	int lock_fd, changed = 0;

	lock_fd = uidlist_lock(box->dir);
	if (lock_fd < 0)
		return -1;
	if (uidlist_read(box, &entries, &nentries) < 0 || keywords_read(box) < 0 ||
	    scan_dir(box, "cur", 0, &files, &nfiles, &cap) < 0 ||
	    scan_dir(box, "new", move_new, &files, &nfiles, &cap) < 0) {
		int saved = errno;

		uidlist_unlock(box->dir, lock_fd);
		errno = saved;
		return -1;
	}
	if (nfiles > 1)
		qsort(files, nfiles, sizeof *files, found_cmp);
	messages = xcalloc(nentries + nfiles + 1, sizeof *messages);

	/* Known files keep their UIDs; entries without a file are dropped.
	 * cur/ is read before new/, so a file moved meanwhile is seen once. */
	for (size_t i = 0; i < nentries; i++) {
		struct found key = { .base = entries[i].base }, *file;

		file = nfiles > 0 ? bsearch(&key, files, nfiles, sizeof *files, found_cmp) : NULL;
		if (file == NULL || file->used) {
			changed = 1;
			continue;
		}
		file->used = 1;
		messages[count++] = (struct message){ .uid = entries[i].uid, .base = entries[i].base,
		    .ext = entries[i].ext, .path = file->path, .flags = file->flags,
		    .keywords = file->keywords, .in_new = file->in_new, .recent = file->recent };
		entries[i].base = entries[i].ext = NULL;
		file->path = NULL;
	}

	/* New files get the next UIDs in delivery order. files[] stays sorted
	 * by name for the lookups above, so the order is kept apart. */
	struct found **fresh = xcalloc(nfiles + 1, sizeof *fresh);
	size_t nfresh = 0;

	for (size_t i = 0; i < nfiles; i++)
		if (!files[i].used)
			fresh[nfresh++] = &files[i];
	if (nfresh > 1)
		qsort(fresh, nfresh, sizeof *fresh, delivery_cmp);
	for (size_t i = 0; i < nfresh; i++) {
		struct found *file = fresh[i];

		changed = 1;
		messages[count++] = (struct message){ .uid = box->uidnext++, .base = file->base,
		    .ext = xstrdup(""), .path = file->path, .flags = file->flags,
		    .keywords = file->keywords, .in_new = file->in_new, .recent = file->recent };
		file->base = file->path = NULL;
	}
	free(fresh);
	qsort(messages, count, sizeof *messages, message_uid_cmp);

	/* \Recent belongs to the session that first saw a message. */
	for (size_t i = 0; i < count; i++) {
		struct message *previous = mailbox_find_uid(box, messages[i].uid);

		if (previous != NULL && previous->recent)
			messages[i].recent = 1;
		if (previous != NULL)
			messages[i].vsize = previous->vsize;
	}

	if (old != NULL) {
		*old = box->messages;
		*oldcount = box->count;
	} else {
		mailbox_messages_free(box->messages, box->count);
	}
	box->messages = messages;
	box->count = count;

	for (size_t i = 0; i < nfiles; i++) {
		free(files[i].base);
		free(files[i].path);
	}
	free(files);
	uidlist_entries_free(entries, nentries);

	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/dovecot-uidlist", box->dir);
	if (!changed && access(path, F_OK) == 0) {
		uidlist_unlock(box->dir, lock_fd);
		return 0;
	}
	if (uidlist_write(box, lock_fd) < 0) {
		int saved = errno;

		log_error("cannot write %s: %s", path, strerror(errno));
		uidlist_unlock(box->dir, lock_fd);
		errno = saved;
		return -1;
	}
	close(lock_fd);
	return 0;
}

int
mailbox_sync(struct mailbox *box, int move_new)
{
	return mailbox_sync_keep(box, move_new, NULL, NULL);
}

struct mailbox *
mailbox_open(const char *name, const char *dir, int move_new)
{
	struct mailbox *box = xcalloc(1, sizeof *box);
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof path, "%s/cur", dir);
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		free(box);
		errno = ENOENT;
		return NULL;
	}
	box->name = xstrdup(name);
	box->dir = xstrdup(dir);
	if (mailbox_sync(box, move_new) < 0) {
		int saved = errno;

		mailbox_free(box);
		errno = saved;
		return NULL;
	}
	return box;
}

void
mailbox_free(struct mailbox *box)
{
	if (box == NULL)
		return;
	mailbox_messages_free(box->messages, box->count);
	for (size_t i = 0; i < box->keyword_count; i++)
		free(box->keywords[i]);
	free(box->header_extra);
	free(box->name);
	free(box->dir);
	free(box);
}

struct message *
mailbox_find_uid(struct mailbox *box, uint32_t uid)
{
	struct message key = { .uid = uid };

	if (box->count == 0)
		return NULL;
	return bsearch(&key, box->messages, box->count, sizeof *box->messages, message_uid_cmp);
}

/* Find MSG's file again after another process renamed it. 0 or -1. */
static int
relocate(struct mailbox *box, struct message *msg)
{
	static const char *const subs[] = { "cur", "new" };
	size_t baselen = strlen(msg->base);

	for (size_t i = 0; i < 2; i++) {
		char path[PATH_MAX];
		struct dirent *de;
		DIR *dir;

		snprintf(path, sizeof path, "%s/%s", box->dir, subs[i]);
		if ((dir = opendir(path)) == NULL)
			continue;
		while ((de = readdir(dir)) != NULL) {
			if (strncmp(de->d_name, msg->base, baselen) != 0 ||
			    (de->d_name[baselen] != '\0' && de->d_name[baselen] != ':'))
				continue;
			free(msg->path);
			msg->path = xasprintf("%s/%s", subs[i], de->d_name);
			msg->in_new = i == 1;
			if (de->d_name[baselen] == ':' && strncmp(de->d_name + baselen + 1, "2,", 2) == 0)
				maildir_parse_info(de->d_name + baselen + 3, &msg->flags, &msg->keywords);
			closedir(dir);
			return 0;
		}
		closedir(dir);
	}
	return -1;
}

int
mailbox_open_message(struct mailbox *box, struct message *msg)
{
	char path[PATH_MAX];
	int fd;

	if (msg->gone)
		return -1;
	snprintf(path, sizeof path, "%s/%s", box->dir, msg->path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && relocate(box, msg) == 0) {
		snprintf(path, sizeof path, "%s/%s", box->dir, msg->path);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	return fd;
}

char *
mailbox_read_message(struct mailbox *box, struct message *msg, size_t *len)
{
	int fd = mailbox_open_message(box, msg);
	struct stat st;
	char *data;
	size_t n = 0;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	data = xmalloc((size_t)st.st_size + 1);
	while (n < (size_t)st.st_size) {
		ssize_t got = read(fd, data + n, (size_t)st.st_size - n);

		if (got <= 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	data[n] = '\0';
	*len = n;
	return data;
}

uint64_t
mailbox_message_vsize(struct mailbox *box, struct message *msg)
{
	size_t len;
	char *data;

	if (msg->vsize != 0)
		return msg->vsize;

	/* Dovecot puts the CRLF size into the name as ",W=<size>". */
	const char *w = strstr(msg->base, ",W=");

	if (w != NULL && w[3] >= '0' && w[3] <= '9') {
		msg->vsize = strtoull(w + 3, NULL, 10);
		if (msg->vsize != 0)
			return msg->vsize;
	}
	data = mailbox_read_message(box, msg, &len);
	if (data == NULL)
		return 0;
	msg->vsize = len;
	for (size_t i = 0; i < len; i++)
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			msg->vsize++;
	free(data);
	return msg->vsize;
}

time_t
mailbox_message_date(struct mailbox *box, struct message *msg)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof path, "%s/%s", box->dir, msg->path);
	if (stat(path, &st) < 0 && (relocate(box, msg) < 0 ||
	    (snprintf(path, sizeof path, "%s/%s", box->dir, msg->path), stat(path, &st) < 0)))
		return 0;
	return st.st_mtime;
}

int
mailbox_set_flags(struct mailbox *box, struct message *msg, unsigned flags, uint32_t keywords)
{
	char letters[64], from[PATH_MAX], to[PATH_MAX], *path;

	if (msg->gone)
		return -1;
	maildir_info_letters(flags, keywords, letters, sizeof letters);
	path = xasprintf("cur/%s:2,%s", msg->base, letters);
	for (int attempt = 0; attempt < 2; attempt++) {
		snprintf(from, sizeof from, "%s/%s", box->dir, msg->path);
		snprintf(to, sizeof to, "%s/%s", box->dir, path);
		if (strcmp(from, to) == 0 || rename(from, to) == 0) {
			free(msg->path);
			msg->path = path;
			msg->flags = flags;
			msg->keywords = keywords;
			msg->in_new = 0;
			return 0;
		}
		if (errno != ENOENT || relocate(box, msg) < 0)
			break;
	}
	free(path);
	return -1;
}

int
mailbox_keyword_index(struct mailbox *box, const char *keyword, int create)
{
	int lock_fd;

	for (size_t i = 0; i < box->keyword_count; i++)
		if (box->keywords[i] != NULL && ascii_casecmp(box->keywords[i], keyword) == 0)
			return (int)i;
	if (!create)
		return -1;

	/* Reread under the uidlist lock, so that two sessions agree on the index. */
	lock_fd = uidlist_lock(box->dir);
	if (lock_fd < 0)
		return -1;
	keywords_read(box);
	for (size_t i = 0; i < box->keyword_count; i++) {
		if (box->keywords[i] != NULL && ascii_casecmp(box->keywords[i], keyword) == 0) {
			uidlist_unlock(box->dir, lock_fd);
			return (int)i;
		}
	}
	if (box->keyword_count == KEYWORDS_MAX) {
		uidlist_unlock(box->dir, lock_fd);
		return -1;
	}
	box->keywords[box->keyword_count++] = xstrdup(keyword);
	if (keywords_write(box) < 0) {
		free(box->keywords[--box->keyword_count]);
		box->keywords[box->keyword_count] = NULL;
		uidlist_unlock(box->dir, lock_fd);
		return -1;
	}
	uidlist_unlock(box->dir, lock_fd);
	return (int)box->keyword_count - 1;
}

static int
copy_fd(int src, int dst)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(src, buf, sizeof buf)) > 0)
		if (write_all(dst, buf, (size_t)n) < 0)
			return -1;
	return n < 0 ? -1 : 0;
}

uint32_t
mailbox_add(struct mailbox *box, int src_fd, const char *src_path, unsigned flags,
    uint32_t keywords, time_t internaldate)
{
	char base[256], letters[64], tmp[PATH_MAX], dst[PATH_MAX];
	struct message *msg;

	maildir_unique_name(base, sizeof base);
	snprintf(tmp, sizeof tmp, "%s/tmp/%s", box->dir, base);
	maildir_info_letters(flags, keywords, letters, sizeof letters);
	snprintf(dst, sizeof dst, "%s/cur/%s:2,%s", box->dir, base, letters);

	if (src_fd < 0) {
		/* A copy shares the file (Dovecot's maildir_copy_with_hardlinks). */
		if (link(src_path, tmp) < 0) {
			int fd = open(src_path, O_RDONLY | O_CLOEXEC);
			uint32_t uid;

			if (fd < 0)
				return 0;
			uid = mailbox_add(box, fd, NULL, flags, keywords, internaldate);
			close(fd);
			return uid;
		}
	} else {
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

		if (fd < 0)
			return 0;
		if (copy_fd(src_fd, fd) < 0 || fsync(fd) < 0) {
			close(fd);
			unlink(tmp);
			return 0;
		}
		close(fd);
	}
	if (internaldate != 0) {
		struct timeval times[2] = { { internaldate, 0 }, { internaldate, 0 } };

		if (utimes(tmp, times) < 0)
			log_warn("cannot set the date of %s: %s", tmp, strerror(errno));
	}
	if (rename(tmp, dst) < 0) {
		unlink(tmp);
		return 0;
	}
	fsync_directory(dst);
	if (mailbox_sync(box, 0) < 0)
		return 0;
	for (size_t i = 0; i < box->count; i++) {
		msg = &box->messages[i];
		if (strcmp(msg->base, base) == 0)
			return msg->uid;
	}
	errno = ENOENT;
	return 0;
}
