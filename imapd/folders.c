/* The user's folders (see folders.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "folders.h"
#include "log.h"
#include "mailbox.h"
#include "util.h"

static const struct {
	const char *name;
	const char *attribute;
} special_folders[] = {
	{ "Drafts", "\\Drafts" },
	{ "Sent", "\\Sent" },
	{ "Trash", "\\Trash" },
	{ "Junk", "\\Junk" },
	{ "Archive", "\\Archive" },
};
#define SPECIAL_COUNT (sizeof special_folders / sizeof special_folders[0])

/* The value of a modified base64 character (',' in place of '/'), or -1. */
static int
mbase64_value(char c)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
	const char *hit = c != '\0' ? strchr(alphabet, c) : NULL;

	return hit != NULL ? (int)(hit - alphabet) : -1;
}

/*
 * Check one base64 run of modified UTF-7 (RFC 3501 section 5.1.3), from
 * P up to the closing '-'. It must decode to whole UTF-16 units with zero
 * padding bits, pair every surrogate, and encode no printable ASCII,
 * which is always written as itself. Returns the position of the '-',
 * or NULL when the run is invalid.
 */
static const char *
check_mbase64_run(const char *p)
{
	unsigned bits = 0, nbits = 0, high_surrogate = 0;

	for (; *p != '-'; p++) {
		int value = mbase64_value(*p);

		if (value < 0)
			return NULL;
		bits = (bits << 6) | (unsigned)value;
		nbits += 6;
		if (nbits < 16)
			continue;

		nbits -= 16;
		unsigned unit = (bits >> nbits) & 0xFFFF;

		bits &= (1U << nbits) - 1;
		if (high_surrogate) {
			if (unit < 0xDC00 || unit > 0xDFFF)
				return NULL;
			high_surrogate = 0;
		} else if (unit >= 0xD800 && unit <= 0xDBFF) {
			high_surrogate = 1;
		} else if ((unit >= 0xDC00 && unit <= 0xDFFF) || (unit >= 0x20 && unit <= 0x7e)) {
			return NULL;
		}
	}
	if (high_surrogate || nbits >= 6 || bits != 0)
		return NULL;
	return p;
}

/* Modified UTF-7: printable ASCII, '&' starting a base64 run ended by '-'. */
static int
valid_mutf7(const char *name)
{
	for (const char *p = name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c >= 0x7f)
			return 0;
		if (c != '&')
			continue;
		p++;
		if (*p == '-')
			continue;
		p = check_mbase64_run(p);
		if (p == NULL)
			return 0;
	}
	return 1;
}

int
folder_path(const char *maildir, char *name, char *out, size_t outsize)
{
	size_t len = strlen(name);

	if (ascii_casecmp(name, "INBOX") == 0) {
		strcpy(name, "INBOX");
		return snprintf(out, outsize, "%s", maildir) < (int)outsize ? 0 : -1;
	}
	if (len == 0 || len > MAILBOX_NAME_MAX || name[0] == FOLDER_SEPARATOR ||
	    name[len - 1] == FOLDER_SEPARATOR || strstr(name, "..") != NULL ||
	    strchr(name, '/') != NULL || name[0] == '~' || !valid_mutf7(name))
		return -1;
	return snprintf(out, outsize, "%s/.%s", maildir, name) < (int)outsize ? 0 : -1;
}

const char *
folder_special_use(const char *name)
{
	for (size_t i = 0; i < SPECIAL_COUNT; i++)
		if (strcmp(name, special_folders[i].name) == 0)
			return special_folders[i].attribute;
	return NULL;
}

static int
name_cmp(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;

	if (strcmp(x, "INBOX") == 0)
		return strcmp(y, "INBOX") == 0 ? 0 : -1;
	if (strcmp(y, "INBOX") == 0)
		return 1;
	return strcmp(x, y);
}

char **
folders_list(const char *maildir)
{
	DIR *dir = opendir(maildir);
	struct dirent *de;
	char **names = xcalloc(2, sizeof *names);
	size_t count = 1, cap = 2;

	names[0] = xstrdup("INBOX");
	if (dir == NULL)
		return names;
	while ((de = readdir(dir)) != NULL) {
		char path[PATH_MAX], name[MAILBOX_NAME_MAX + 1];
		struct stat st;

		if (de->d_name[0] != '.' || strlen(de->d_name + 1) >= sizeof name)
			continue;
		strcpy(name, de->d_name + 1);
		if (folder_path(maildir, name, path, sizeof path) < 0 || strcmp(name, "INBOX") == 0)
			continue;
		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (count + 1 >= cap) {
			cap *= 2;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[count++] = xstrdup(name);
		names[count] = NULL;
	}
	closedir(dir);
	qsort(names, count, sizeof *names, name_cmp);
	return names;
}

void
folders_free(char **names)
{
	if (names == NULL)
		return;
	for (size_t i = 0; names[i] != NULL; i++)
		free(names[i]);
	free(names);
}

/*
 * The subscriptions file. Dovecot 2.3.19 writes "V\t2", an empty line,
 * and one name per line with TAB as the hierarchy separator. Older
 * versions wrote bare names with the separator, so both forms are read.
 */
char **
subscriptions_read(const char *maildir)
{
	char path[PATH_MAX], line[1024];
	char **names = xcalloc(1, sizeof *names);
	size_t count = 0;
	FILE *fp;

	snprintf(path, sizeof path, "%s/subscriptions", maildir);
	if ((fp = fopen(path, "re")) == NULL)
		return names;
	while (fgets(line, sizeof line, fp) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || strncmp(line, "V\t", 2) == 0)
			continue;
		for (char *p = line; *p != '\0'; p++)
			if (*p == '\t')
				*p = FOLDER_SEPARATOR;
		names = xrealloc(names, (count + 2) * sizeof *names);
		names[count++] = xstrdup(line);
		names[count] = NULL;
	}
	fclose(fp);
	return names;
}

static int
subscriptions_write(const char *maildir, char **names)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	FILE *fp;
	int r = -1;

	snprintf(path, sizeof path, "%s/subscriptions", maildir);
	snprintf(tmp, sizeof tmp, "%s/subscriptions.tmp.%ld", maildir, (long)getpid());
	if ((fp = fopen(tmp, "we")) == NULL)
		return -1;
	fputs("V\t2\n\n", fp);
	for (size_t i = 0; names[i] != NULL; i++) {
		for (const char *p = names[i]; *p != '\0'; p++)
			fputc(*p == FOLDER_SEPARATOR ? '\t' : *p, fp);
		fputc('\n', fp);
	}
	if (fflush(fp) == 0 && fsync(fileno(fp)) == 0)
		r = 0;
	fclose(fp);
	if (r == 0)
		r = rename(tmp, path);
	if (r < 0)
		unlink(tmp);
	return r;
}

int
subscriptions_change(const char *maildir, const char *name, int subscribe)
{
	char **names = subscriptions_read(maildir);
	size_t count = 0, found = (size_t)-1;
	int r;

	for (; names[count] != NULL; count++)
		if (strcmp(names[count], name) == 0)
			found = count;
	if (subscribe && found == (size_t)-1) {
		names = xrealloc(names, (count + 2) * sizeof *names);
		names[count++] = xstrdup(name);
		names[count] = NULL;
	} else if (!subscribe && found != (size_t)-1) {
		free(names[found]);
		memmove(names + found, names + found + 1, (count - found) * sizeof *names);
	}
	r = subscriptions_write(maildir, names);
	folders_free(names);
	return r;
}

void
folders_init(const char *maildir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/subscriptions", maildir);
	if (access(path, F_OK) == 0)
		return;
	for (size_t i = 0; i < SPECIAL_COUNT; i++) {
		snprintf(path, sizeof path, "%s/.%s", maildir, special_folders[i].name);
		if (maildir_create(path, 1) < 0)
			log_warn("cannot create %s: %s", path, strerror(errno));
		subscriptions_change(maildir, special_folders[i].name, 1);
	}
}

int
folder_match(const char *pattern, const char *name)
{
	for (; *pattern != '\0'; pattern++, name++) {
		if (*pattern == '*' || *pattern == '%') {
			for (const char *p = name;; p++) {
				if (folder_match(pattern + 1, p))
					return 1;
				if (*p == '\0' || (*pattern == '%' && *p == FOLDER_SEPARATOR))
					return 0;
			}
		}
		if (*name != *pattern)
			return 0;
	}
	return *name == '\0';
}
