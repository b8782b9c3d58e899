/*
 * Virtual users from a Dovecot-style passwd-file, one user a line:
 *
 *   user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields
 *
 * extra_fields is a space-separated list of key=value items, where
 * userdb_KEY items become userdb fields (userdb_mail=maildir:~/Maildir).
 * As in Dovecot's db-passwd-file.c, an empty eighth field starts the old
 * format, in which the rest of the line is the mail location. The file is
 * reread whenever its inode, size or modification time changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "authd.h"
#include "log.h"
#include "util.h"

static char *passwd_path;
static struct passwd_entry *entries;
static size_t entry_count;
static struct passwd_entry **sorted;	/* entries by name without repeats, for bsearch */
static size_t sorted_count;
static struct stat loaded_stat;
static int file_present;
static char *refresh_error;

void
passwd_file_set_path(const char *path)
{
	free(passwd_path);
	passwd_path = xstrdup(path);
}

static void
entry_free(struct passwd_entry *entry)
{
	free(entry->name);
	free(entry->password);
	free(entry->uid);
	free(entry->gid);
	free(entry->home);
	if (entry->extra != NULL)
		for (char **item = entry->extra; *item != NULL; item++)
			free(*item);
	free(entry->extra);
}

static void
entries_free(struct passwd_entry *list, size_t count, struct passwd_entry **index)
{
	for (size_t i = 0; i < count; i++)
		entry_free(&list[i]);
	free(list);
	free(index);
}

/* Split TEXT at SEPARATOR into a new NULL-terminated array of copies. */
static char **
split(const char *text, char separator, int skip_empty)
{
	size_t count = 0, cap = 8;
	char **items = xcalloc(cap, sizeof *items);
	const char *start = text;

	for (;;) {
		const char *end = strchr(start, separator);
		size_t len = end != NULL ? (size_t)(end - start) : strlen(start);

		if (len > 0 || !skip_empty) {
			if (count + 2 > cap) {
				cap *= 2;
				items = xrealloc(items, cap * sizeof *items);
			}
			items[count++] = xstrndup(start, len);
		}
		if (end == NULL)
			break;
		start = end + 1;
	}
	items[count] = NULL;
	return items;
}

static void
free_strings(char **items)
{
	for (char **item = items; *item != NULL; item++)
		free(*item);
	free(items);
}

static char *
join_from(char **fields, size_t first)
{
	size_t len = 0;
	char *out, *o;

	for (size_t i = first; fields[i] != NULL; i++)
		len += strlen(fields[i]) + 1;
	out = xmalloc(len + 1);
	o = out;
	for (size_t i = first; fields[i] != NULL; i++) {
		if (i > first)
			*o++ = ':';
		o = stpcpy(o, fields[i]);
	}
	*o = '\0';
	return out;
}

static size_t
count_fields(char **fields)
{
	size_t n = 0;

	while (fields[n] != NULL)
		n++;
	return n;
}

/* Fill ENTRY from one line. 0, or -1 when the line has no user name. */
static int
entry_parse(char *line, int lineno, struct passwd_entry *entry)
{
	char **fields = split(line, ':', 0);
	size_t n = count_fields(fields);
	char *extra = NULL;

	memset(entry, 0, sizeof *entry);
	if (fields[0][0] == '\0') {
		free_strings(fields);
		return -1;
	}
	entry->name = xstrdup(fields[0]);
	ascii_lower(entry->name);
	entry->password = xstrdup(n > 1 ? fields[1] : "");
	entry->uid = xstrdup(n > 2 ? fields[2] : "");
	entry->gid = xstrdup(n > 3 ? fields[3] : "");
	entry->home = xstrdup(n > 5 ? fields[5] : "");
	entry->line = lineno;

	if (n > 7 && fields[7][0] == '\0') {
		if (n > 8) {
			char *location = join_from(fields, 8);

			if (*location != '\0')
				extra = xasprintf("userdb_mail=%s", location);
			free(location);
		}
	} else if (n > 7) {
		extra = join_from(fields, 7);
	}
	entry->extra = split(extra != NULL ? extra : "", ' ', 1);
	free(extra);
	free_strings(fields);
	return 0;
}

static int
compare_entries(const void *a, const void *b)
{
	const struct passwd_entry *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int
compare_name(const void *key, const void *element)
{
	const struct passwd_entry *const *entry = element;

	return strcmp(key, (*entry)->name);
}

/*
 * Build the sorted index. Of two entries with the same name the first in
 * the file wins, as in Dovecot, and the later one is dropped with a warning.
 */
static struct passwd_entry **
index_build(struct passwd_entry *list, size_t *count)
{
	struct passwd_entry **index = xcalloc(*count, sizeof *index);
	size_t unique = 0;

	for (size_t i = 0; i < *count; i++)
		index[i] = &list[i];
	qsort(index, *count, sizeof *index, compare_entries);
	for (size_t i = 0; i < *count; i++) {
		if (unique > 0 && strcmp(index[unique - 1]->name, index[i]->name) == 0) {
			struct passwd_entry *first = index[unique - 1], *later = index[i];

			if (later->line < first->line) {
				index[unique - 1] = later;
				later = first;
			}
			log_warn("%s:%d: user %s is already defined on line %d; this entry is ignored",
			    passwd_path, later->line, later->name, index[unique - 1]->line);
			continue;
		}
		index[unique++] = index[i];
	}
	*count = unique;
	return index;
}

/* Record and log (once per distinct reason) why the file could not be read. */
static void
set_refresh_error(const char *operation, int error)
{
	char *message = xasprintf("passwd-file %s: %s failed: %s", passwd_path, operation,
	    strerror(error));

	if (refresh_error == NULL || strcmp(refresh_error, message) != 0)
		log_error("%s", message);
	free(refresh_error);
	refresh_error = message;
}

static void
clear_refresh_error(void)
{
	free(refresh_error);
	refresh_error = NULL;
}

/* Read the whole file into a new list. 0, or -1 with errno set. */
static int
file_read(FILE *fp, struct passwd_entry **list_out, size_t *count_out)
{
	struct passwd_entry *list = NULL;
	size_t count = 0, cap = 0, linecap = 0;
	char *line = NULL;
	int lineno = 0;

	errno = 0;
	while (getline(&line, &linecap, fp) >= 0) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#' || line[0] == ':')
			continue;
		if (count == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			list = xrealloc(list, cap * sizeof *list);
		}
		if (entry_parse(line, lineno, &list[count]) == 0)
			count++;
	}
	free(line);
	if (ferror(fp)) {
		entries_free(list, count, NULL);
		return -1;
	}
	*list_out = list;
	*count_out = count;
	return 0;
}

static int
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	    a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void
entries_replace(struct passwd_entry *list, size_t count, struct passwd_entry **index,
    size_t index_count)
{
	entries_free(entries, entry_count, sorted);
	entries = list;
	entry_count = count;
	sorted = index;
	sorted_count = index_count;
}

int
passwd_file_refresh(int force)
{
	struct passwd_entry *list = NULL, **index;
	struct stat st;
	size_t count = 0, unique;
	FILE *fp;

	if (stat(passwd_path, &st) < 0) {
		if (errno != ENOENT) {
			set_refresh_error("stat", errno);
			return -1;
		}
		/* A missing file means no virtual users, as in Dovecot. */
		if (file_present || force)
			log_warn("passwd-file %s not found: there are no virtual users", passwd_path);
		file_present = 0;
		entries_replace(NULL, 0, NULL, 0);
		clear_refresh_error();
		return 0;
	}
	if (!force && file_present && refresh_error == NULL && same_file(&st, &loaded_stat))
		return 0;

	fp = fopen(passwd_path, "r");
	if (fp == NULL) {
		set_refresh_error("open", errno);
		return -1;
	}
	/* Compare the opened file, not the path, with the next stat. */
	if (fstat(fileno(fp), &st) < 0 || file_read(fp, &list, &count) < 0) {
		set_refresh_error("read", errno);
		fclose(fp);
		return -1;
	}
	fclose(fp);

	unique = count;
	index = index_build(list, &unique);
	entries_replace(list, count, index, unique);
	loaded_stat = st;
	file_present = 1;
	clear_refresh_error();
	log_info("passwd-file %s: loaded %zu users", passwd_path, unique);
	return 0;
}

const struct passwd_entry *
passwd_file_find(const char *name)
{
	struct passwd_entry **found;

	if (sorted == NULL)
		return NULL;
	found = bsearch(name, sorted, sorted_count, sizeof *sorted, compare_name);
	return found != NULL ? *found : NULL;
}

const struct passwd_entry *const *
passwd_file_users(size_t *count)
{
	*count = sorted_count;
	return (const struct passwd_entry *const *)sorted;
}

const char *
passwd_file_error(void)
{
	return refresh_error;
}
