/* Sender address ownership after AUTH (see sender_login.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cdbmap.h"
#include "domain.h"
#include "log.h"
#include "sender_login.h"
#include "util.h"

struct map_entry {
	char *key;		/* lower-cased address or "@domain" */
	char *logins;		/* comma- or blank-separated login names */
};

struct sender_login_map {
	char *path;
	char delimiter;
	int is_cdb;
	struct cdbmap *cdb;

	/* The text map, sorted by key, and the file it was read from. */
	struct map_entry *entries;
	size_t nentries;
	struct stat loaded;
	int load_failed;
};

struct sender_login_map *
sender_login_map_new(const char *path, char recipient_delimiter)
{
	struct sender_login_map *map = xcalloc(1, sizeof *map);
	size_t len = strlen(path);

	map->path = xstrdup(path);
	map->delimiter = recipient_delimiter;
	map->is_cdb = len > 4 && strcmp(path + len - 4, ".cdb") == 0;
	return map;
}

static void
entries_free(struct sender_login_map *map)
{
	for (size_t i = 0; i < map->nentries; i++) {
		free(map->entries[i].key);
		free(map->entries[i].logins);
	}
	free(map->entries);
	map->entries = NULL;
	map->nentries = 0;
}

void
sender_login_map_free(struct sender_login_map *map)
{
	if (map == NULL)
		return;
	entries_free(map);
	cdbmap_close(map->cdb);
	free(map->path);
	free(map);
}

static int
entry_compare(const void *a, const void *b)
{
	return strcmp(((const struct map_entry *)a)->key, ((const struct map_entry *)b)->key);
}

/* Add the "KEY LOGINS" line LINE; comments and blank lines are skipped. */
static void
parse_line(struct sender_login_map *map, char *line, size_t *capacity, unsigned lineno)
{
	char *key = line + strspn(line, " \t");
	char *logins;

	key[strcspn(key, "\r\n")] = '\0';
	if (*key == '\0' || *key == '#')
		return;
	logins = key + strcspn(key, " \t");
	if (*logins != '\0')
		*logins++ = '\0';
	logins += strspn(logins, " \t");
	if (*logins == '\0') {
		log_warn("%s:%u: no login names after \"%.100s\"; line skipped", map->path, lineno,
		    key);
		return;
	}

	if (map->nentries == *capacity) {
		*capacity = *capacity == 0 ? 64 : *capacity * 2;
		map->entries = xrealloc(map->entries, *capacity * sizeof *map->entries);
	}
	map->entries[map->nentries].key = xstrdup(key);
	ascii_lower(map->entries[map->nentries].key);
	map->entries[map->nentries].logins = xstrdup(logins);
	map->nentries++;
}

/* Read the text map again when the file changed. Returns 0 or -1. */
static int
text_refresh(struct sender_login_map *map)
{
	struct stat st;
	size_t capacity = 0, linesize = 0;
	char *line = NULL;
	unsigned lineno = 0;
	FILE *fp;

	if (stat(map->path, &st) < 0) {
		if (!map->load_failed)
			log_warn("smtpd_sender_login_maps %s: %s", map->path, strerror(errno));
		map->load_failed = 1;
		return -1;
	}
	if (!map->load_failed && map->loaded.st_ino == st.st_ino &&
	    map->loaded.st_mtim.tv_sec == st.st_mtim.tv_sec &&
	    map->loaded.st_mtim.tv_nsec == st.st_mtim.tv_nsec && map->loaded.st_size == st.st_size)
		return 0;

	fp = fopen(map->path, "r");
	if (fp == NULL) {
		log_warn("smtpd_sender_login_maps %s: %s", map->path, strerror(errno));
		map->load_failed = 1;
		return -1;
	}
	entries_free(map);
	while (getline(&line, &linesize, fp) >= 0)
		parse_line(map, line, &capacity, ++lineno);
	free(line);
	fclose(fp);

	qsort(map->entries, map->nentries, sizeof *map->entries, entry_compare);
	map->loaded = st;
	map->load_failed = 0;
	log_info("smtpd_sender_login_maps %s: %zu entries loaded", map->path, map->nentries);
	return 0;
}

/* The logins listed for KEY in a new string: 1 found, 0 not, -1 error. */
static int
map_lookup(struct sender_login_map *map, const char *key, char **logins)
{
	struct map_entry probe = { .key = (char *)key }, *found;

	if (map->is_cdb) {
		cdbmap_refresh(&map->cdb, map->path);
		if (map->cdb == NULL) {
			log_warn("smtpd_sender_login_maps %s: cannot open: %s", map->path,
			    strerror(errno));
			return -1;
		}
		return cdbmap_lookup(map->cdb, key, logins);
	}

	if (text_refresh(map) < 0)
		return -1;
	found = bsearch(&probe, map->entries, map->nentries, sizeof *map->entries, entry_compare);
	if (found == NULL)
		return 0;
	*logins = xstrdup(found->logins);
	return 1;
}

/* Whether LOGIN is in the comma- or blank-separated LIST (case-insensitive). */
static int
list_contains(const char *list, const char *login)
{
	const char *separators = ", \t";
	size_t login_len = strlen(login);

	for (const char *item = list + strspn(list, separators); *item != '\0';
	    item += strspn(item, separators)) {
		size_t len = strcspn(item, separators);

		if (len == login_len && ascii_ncasecmp(item, login, len) == 0)
			return 1;
		item += len;
	}
	return 0;
}

/* The default owner: the virtual user USER@DOMAIN, or the system user USER of a local domain. */
static int
default_owner(const char *login, const char *user, const char *domain)
{
	const char *at = strchr(login, '@');

	if (at != NULL)
		return (size_t)(at - login) == strlen(user) &&
		    ascii_ncasecmp(login, user, strlen(user)) == 0 && ascii_casecmp(at + 1, domain) == 0;
	return domain_classify(domain) == DOMAIN_LOCAL && ascii_casecmp(login, user) == 0;
}

int
sender_login_owns(struct sender_login_map *map, const char *login,
    const struct mailaddr *address)
{
	char local[sizeof address->local], user[sizeof address->local];
	char detail[sizeof address->local], keys[3][ADDR_MAX * 4 + 8];
	size_t nkeys = 0;

	if (addr_is_null(address))
		return 1;

	strlcpy_x(local, address->local, sizeof local);
	ascii_lower(local);
	addr_split_detail(local, map->delimiter, user, sizeof user, detail, sizeof detail);

	snprintf(keys[nkeys++], sizeof keys[0], "%s@%s", local, address->domain);
	if (detail[0] != '\0')
		snprintf(keys[nkeys++], sizeof keys[0], "%s@%s", user, address->domain);
	snprintf(keys[nkeys++], sizeof keys[0], "@%s", address->domain);

	for (size_t i = 0; map->path[0] != '\0' && i < nkeys; i++) {
		char *logins = NULL;
		int rc = map_lookup(map, keys[i], &logins);

		if (rc < 0)
			return -1;
		if (rc > 0) {
			int owned = list_contains(logins, login);

			free(logins);
			return owned;
		}
	}
	return default_owner(login, user, address->domain);
}
