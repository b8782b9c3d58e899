/*
 * dovecot-uidlist and dovecot-keywords reading and writing (the formats
 * are described in mailbox.h). The lock follows Dovecot's dotlock
 * convention: dovecot-uidlist.lock is created exclusively, the new
 * contents are written into it and it is renamed over dovecot-uidlist.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mailbox.h"
#include "uidlist.h"
#include "util.h"

#define LOCK_WAIT_USEC		(10LL * 1000 * 1000)
#define LOCK_STALE_SECONDS	120	/* a lock this old is taken to be left by a crashed process */

int
uidlist_lock(const char *dir)
{
	char *path = xasprintf("%s/dovecot-uidlist.lock", dir);
	long long deadline = now_usec() + LOCK_WAIT_USEC;
	int fd;

	for (;;) {
		struct stat st;

		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			break;
		if (stat(path, &st) == 0 && st.st_mtime + LOCK_STALE_SECONDS < time(NULL)) {
			log_warn("removing stale lock %s", path);
			unlink(path);
			continue;
		}
		if (now_usec() > deadline) {
			errno = EAGAIN;
			break;
		}
		usleep(20000);
	}
	free(path);
	return fd;
}

void
uidlist_unlock(const char *dir, int fd)
{
	char *path = xasprintf("%s/dovecot-uidlist.lock", dir);

	close(fd);
	unlink(path);
	free(path);
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "re");
	char *data = NULL;
	size_t cap = 0, n = 0, got;

	if (fp == NULL)
		return NULL;
	do {
		if (cap - n < 4096) {
			cap = cap == 0 ? 8192 : cap * 2;
			data = xrealloc(data, cap + 1);
		}
		got = fread(data + n, 1, cap - n, fp);
		n += got;
	} while (got > 0);
	fclose(fp);
	data[n] = '\0';
	*len = n;
	return data;
}

/* Give a new mailbox, or a header that lacks them, UIDVALIDITY, UIDNEXT and GUID. */
static void
complete_header(struct mailbox *box)
{
	unsigned char guid[16];

	if (box->uidvalidity == 0)
		box->uidvalidity = (uint32_t)time(NULL);
	if (box->uidnext == 0)
		box->uidnext = 1;
	if (box->guid[0] != '\0')
		return;
	if (getrandom(guid, sizeof guid, 0) != sizeof guid)
		memset(guid, 0, sizeof guid);
	for (size_t i = 0; i < sizeof guid; i++)
		snprintf(box->guid + 2 * i, 3, "%02x", guid[i]);
}

static void
parse_header(struct mailbox *box, char *line)
{
	char extra[1024] = "";

	for (char *field = strtok(line + 1, " "); field != NULL; field = strtok(NULL, " ")) {
		if (field[0] == 'V')
			box->uidvalidity = (uint32_t)strtoul(field + 1, NULL, 10);
		else if (field[0] == 'N')
			box->uidnext = (uint32_t)strtoul(field + 1, NULL, 10);
		else if (field[0] == 'G')
			strlcpy_x(box->guid, field + 1, sizeof box->guid);
		else if (strlen(extra) + strlen(field) + 2 < sizeof extra) {
			strcat(extra, " ");
			strcat(extra, field);
		}
	}
	free(box->header_extra);
	box->header_extra = xstrdup(extra);
}

int
uidlist_read(struct mailbox *box, struct uidlist_entry **entries, size_t *count)
{
	char *path = xasprintf("%s/dovecot-uidlist", box->dir);
	size_t len, cap = 0;
	char *data = read_file(path, &len), *line, *next;

	free(path);
	*entries = NULL;
	*count = 0;
	if (data == NULL) {
		if (errno != ENOENT)
			return -1;
		complete_header(box);
		return 0;
	}

	line = data;
	next = strchr(line, '\n');
	if (next != NULL)
		*next++ = '\0';
	if (line[0] != '3' || line[1] != ' ') {
		/* Versions 1 and 2 (Courier's format) are not read. */
		log_warn("%s/dovecot-uidlist: unsupported version, new UIDVALIDITY", box->dir);
		box->uidvalidity = 0;
		box->uidnext = 0;
		box->guid[0] = '\0';
		complete_header(box);
		free(data);
		return 0;
	}
	parse_header(box, line);

	for (line = next; line != NULL && *line != '\0'; line = next) {
		char *colon, *end;
		unsigned long uid;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		uid = strtoul(line, &end, 10);
		colon = strstr(end, " :");
		if (uid == 0 || uid > UINT32_MAX || colon == NULL || colon[2] == '\0')
			continue;
		if (*count == cap) {
			cap = cap == 0 ? 256 : cap * 2;
			*entries = xrealloc(*entries, cap * sizeof **entries);
		}
		*colon = '\0';
		/* Dovecot appends lines without rewriting the header, so N can be
		 * stale: no UID in the file may be handed out again. */
		if (uid >= box->uidnext)
			box->uidnext = (uint32_t)uid + 1;
		(*entries)[*count].uid = (uint32_t)uid;
		(*entries)[*count].ext = xstrdup(end[0] == ' ' ? end + 1 : end);
		(*entries)[*count].base = xstrdup(colon + 2);
		(*count)++;
	}
	free(data);
	complete_header(box);
	return 0;
}

void
uidlist_entries_free(struct uidlist_entry *entries, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(entries[i].base);
		free(entries[i].ext);
	}
	free(entries);
}

int
uidlist_write(struct mailbox *box, int lock_fd)
{
	char *lock_path = xasprintf("%s/dovecot-uidlist.lock", box->dir);
	char *path = xasprintf("%s/dovecot-uidlist", box->dir);
	FILE *fp;
	int r = -1, fd = dup(lock_fd);

	if (fd < 0 || (fp = fdopen(fd, "w")) == NULL) {
		if (fd >= 0)
			close(fd);
		goto done;
	}
	fprintf(fp, "3 V%u N%u G%s%s\n", box->uidvalidity, box->uidnext, box->guid,
	    box->header_extra != NULL ? box->header_extra : "");
	for (size_t i = 0; i < box->count; i++) {
		const struct message *msg = &box->messages[i];

		fprintf(fp, "%u %s%s:%s\n", msg->uid, msg->ext, msg->ext[0] != '\0' ? " " : "",
		    msg->base);
	}
	if (fflush(fp) != 0 || fsync(fileno(fp)) < 0) {
		fclose(fp);
		goto done;
	}
	fclose(fp);
	r = rename(lock_path, path);
done:
	free(lock_path);
	free(path);
	return r;
}

int
keywords_read(struct mailbox *box)
{
	char *path = xasprintf("%s/dovecot-keywords", box->dir);
	size_t len;
	char *data = read_file(path, &len), *line, *next;

	free(path);
	for (size_t i = 0; i < box->keyword_count; i++) {
		free(box->keywords[i]);
		box->keywords[i] = NULL;
	}
	box->keyword_count = 0;
	if (data == NULL)
		return errno == ENOENT ? 0 : -1;
	for (line = data; line != NULL && *line != '\0'; line = next) {
		char *end;
		unsigned long index;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		index = strtoul(line, &end, 10);
		if (*end != ' ' || end[1] == '\0' || index >= KEYWORDS_MAX)
			continue;
		free(box->keywords[index]);
		box->keywords[index] = xstrdup(end + 1);
		if (index + 1 > box->keyword_count)
			box->keyword_count = index + 1;
	}
	free(data);
	return 0;
}

int
keywords_write(struct mailbox *box)
{
	char *tmp = xasprintf("%s/dovecot-keywords.tmp.%ld", box->dir, (long)getpid());
	char *path = xasprintf("%s/dovecot-keywords", box->dir);
	FILE *fp = fopen(tmp, "we");
	int r = -1;

	if (fp != NULL) {
		for (size_t i = 0; i < box->keyword_count; i++)
			if (box->keywords[i] != NULL)
				fprintf(fp, "%zu %s\n", i, box->keywords[i]);
		if (fflush(fp) == 0 && fsync(fileno(fp)) == 0)
			r = 0;
		fclose(fp);
		if (r == 0)
			r = rename(tmp, path);
		if (r < 0)
			unlink(tmp);
	}
	free(tmp);
	free(path);
	return r;
}
