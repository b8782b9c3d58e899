/*
 * A Maildir++ folder that deliverd creates (the quarantine folder), set
 * up the way imapd and Dovecot expect: a maildirfolder file in it, and
 * its name in the subscriptions file at the Maildir's root.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliverd.h"
#include "log.h"
#include "util.h"

#define SUBSCRIPTIONS_MAX (1024 * 1024)	/* a larger subscriptions file is left alone */

/* Read all of FD (at most SUBSCRIPTIONS_MAX bytes) into a new string.
 * NULL with errno set on failure. */
static char *
read_file(int fd, size_t *len)
{
	char *text = xmalloc(SUBSCRIPTIONS_MAX + 1);
	size_t used = 0;

	for (;;) {
		ssize_t n = pread(fd, text + used, SUBSCRIPTIONS_MAX + 1 - used, (off_t)used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(text);
			return NULL;
		}
		if (n == 0)
			break;
		used += (size_t)n;
		if (used > SUBSCRIPTIONS_MAX) {
			free(text);
			errno = EFBIG;
			return NULL;
		}
	}
	text[used] = '\0';
	*len = used;
	return text;
}

/* Whether the subscriptions TEXT lists NAME, a line of its own. */
static int
subscriptions_contain(const char *text, const char *name)
{
	size_t len = strlen(name);

	for (const char *line = text; *line != '\0';) {
		const char *nl = strchr(line, '\n');
		size_t line_len = nl != NULL ? (size_t)(nl - line) : strlen(line);

		if (line_len == len && memcmp(line, name, len) == 0)
			return 1;
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	return 0;
}

/*
 * Add FOLDER to ROOT/subscriptions unless it is listed. Dovecot 2.3
 * writes "V\t2", an empty line, then one name per line with TAB between
 * hierarchy levels. Older files have bare names with '.', and imapd
 * reads both. A missing file is left missing. Returns 0, or -1 with errno.
 */
static int
maildir_subscribe(const char *root, const char *folder)
{
	char path[PATH_MAX], name[300];
	size_t len = 0;
	char *text;
	int fd, rc = 0;

	if ((size_t)snprintf(path, sizeof path, "%s/subscriptions", root) >= sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	text = read_file(fd, &len);
	if (text == NULL) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}

	strlcpy_x(name, folder, sizeof name);
	if (strncmp(text, "V\t", 2) == 0)
		for (char *p = name; *p != '\0'; p++)
			if (*p == '.')
				*p = '\t';

	/* NOTE: imapd rewrites the file through a rename, so a SUBSCRIBE at
	 * the same moment can drop this line. The folder then stays unsubscribed. */
	if (!subscriptions_contain(text, name)) {
		char *line = xasprintf("%s%s\n", len > 0 && text[len - 1] != '\n' ? "\n" : "", name);

		if (write_all(fd, line, strlen(line)) < 0 || fsync(fd) < 0)
			rc = -1;
		free(line);
	}
	free(text);
	if (close(fd) < 0)
		rc = -1;
	return rc;
}

void
maildir_folder_setup(const char *root, const char *folder, const char *dir)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof path, "%s/maildirfolder", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		log_warn("cannot create %s: %s", path, strerror(errno));
	else
		close(fd);

	if (maildir_subscribe(root, folder) < 0)
		log_warn("cannot subscribe folder %s in %s/subscriptions: %s", folder, root,
		    strerror(errno));
}
