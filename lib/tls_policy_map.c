/*
 * The smtp_tls_policy_maps text file: parsing and lookups.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_policy_map.h"
#include "util.h"

/* Maximum size of a policy map file, our own limit: a larger file is rejected. */
#define MAP_FILE_MAX	(4 * 1024 * 1024)

static char **
words_split(const char *list)
{
	char **words = NULL;
	size_t count = 0;
	const char *p = list;

	while (*p != '\0') {
		size_t length = strcspn(p, ":");

		if (length > 0) {
			words = xrealloc(words, (count + 2) * sizeof *words);
			words[count] = xstrndup(p, length);
			ascii_lower(words[count]);
			words[++count] = NULL;
		}
		p += length;
		if (*p == ':')
			p++;
	}
	return words;
}

static void
words_free(char **words)
{
	for (size_t i = 0; words != NULL && words[i] != NULL; i++)
		free(words[i]);
	free(words);
}

/* Parse the fields of one line (KEY LEVEL [match=...]) into ENTRY. */
static int
entry_parse(char *line, struct tls_policy_entry *entry, char *reason, size_t reasonsize)
{
	char *save = NULL;
	char *key = strtok_r(line, " \t", &save);
	char *level = strtok_r(NULL, " \t", &save);
	char *attribute;
	int secure = 0;

	memset(entry, 0, sizeof *entry);
	if (level == NULL) {
		snprintf(reason, reasonsize, "expected \"DOMAIN LEVEL [match=NAME:NAME]\"");
		return -1;
	}
	if (strcmp(level, "secure") == 0) {
		secure = 1;
		entry->level = TLS_LEVEL_VERIFY;
	} else if (tls_level_parse(level) >= 0) {
		entry->level = (enum tls_level)tls_level_parse(level);
	} else {
		snprintf(reason, reasonsize, "invalid level \"%.32s\": expected none, may, encrypt, dane, verify or secure",
		    level);
		return -1;
	}

	while ((attribute = strtok_r(NULL, " \t", &save)) != NULL) {
		if (strncmp(attribute, "match=", 6) != 0 || attribute[6] == '\0') {
			snprintf(reason, reasonsize, "invalid attribute \"%.64s\": expected match=NAME:NAME", attribute);
			words_free(entry->match);
			entry->match = NULL;
			return -1;
		}
		words_free(entry->match);
		entry->match = words_split(attribute + 6);
	}
	if (entry->match == NULL && secure)
		entry->match = words_split("nexthop:dot-nexthop");

	entry->key = xstrdup(key);
	ascii_lower(entry->key);
	return 0;
}

int
tls_policy_map_parse(const char *text, const char *name, struct tls_policy_map *map, char *err,
    size_t errsize)
{
	const char *p = text;
	int line_number = 0;

	memset(map, 0, sizeof *map);
	while (*p != '\0') {
		size_t length = strcspn(p, "\n");
		char *line = xstrndup(p, length);
		char *start = line + strspn(line, " \t\r");
		char reason[200];
		struct tls_policy_entry entry;

		line_number++;
		p += length;
		if (*p == '\n')
			p++;
		start[strcspn(start, "\r")] = '\0';
		if (*start == '\0' || *start == '#') {
			free(line);
			continue;
		}
		if (entry_parse(start, &entry, reason, sizeof reason) < 0) {
			snprintf(err, errsize, "%s:%d: %s", name, line_number, reason);
			free(line);
			tls_policy_map_free(map);
			return -1;
		}
		map->entries = xrealloc(map->entries, (map->count + 1) * sizeof *map->entries);
		map->entries[map->count++] = entry;
		free(line);
	}
	return 0;
}

int
tls_policy_map_load(const char *path, struct tls_policy_map *map, char *err, size_t errsize)
{
	FILE *fp = fopen(path, "r");
	char *text;
	size_t length;
	int rc;

	memset(map, 0, sizeof *map);
	if (fp == NULL) {
		snprintf(err, errsize, "cannot open smtp_tls_policy_maps file %s: %s", path, strerror(errno));
		return -1;
	}
	text = xmalloc(MAP_FILE_MAX + 1);
	length = fread(text, 1, MAP_FILE_MAX + 1, fp);
	fclose(fp);
	if (length > MAP_FILE_MAX) {
		snprintf(err, errsize, "%s: larger than %d bytes", path, MAP_FILE_MAX);
		free(text);
		return -1;
	}
	text[length] = '\0';
	rc = tls_policy_map_parse(text, path, map, err, errsize);
	free(text);
	return rc;
}

void
tls_policy_map_free(struct tls_policy_map *map)
{
	for (size_t i = 0; i < map->count; i++) {
		free(map->entries[i].key);
		words_free(map->entries[i].match);
	}
	free(map->entries);
	memset(map, 0, sizeof *map);
}

static const struct tls_policy_entry *
find_key(const struct tls_policy_map *map, const char *key)
{
	for (size_t i = 0; i < map->count; i++) {
		if (ascii_casecmp(map->entries[i].key, key) == 0)
			return &map->entries[i];
	}
	return NULL;
}

const struct tls_policy_entry *
tls_policy_map_find(const struct tls_policy_map *map, const char *nexthop)
{
	const struct tls_policy_entry *entry = find_key(map, nexthop);
	const char *dot;

	if (entry != NULL)
		return entry;

	/* "[host]:port" also matches a "[host]" line. */
	if (nexthop[0] == '[') {
		const char *close = strchr(nexthop, ']');
		char key[300];

		if (close == NULL || (size_t)(close - nexthop) + 2 > sizeof key)
			return NULL;
		memcpy(key, nexthop, (size_t)(close - nexthop) + 1);
		key[close - nexthop + 1] = '\0';
		return find_key(map, key);
	}

	for (dot = strchr(nexthop, '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
		entry = find_key(map, dot);
		if (entry != NULL)
			return entry;
	}
	return NULL;
}

/* Copy NAME into BUFFER at *USED and return the copy, or NULL when full. */
static const char *
buffer_add(char *buffer, size_t buffersize, size_t *used, const char *prefix, const char *name)
{
	int length = snprintf(buffer + *used, buffersize - *used, "%s%s", prefix, name);
	const char *copy = buffer + *used;

	if (length < 0 || (size_t)length >= buffersize - *used)
		return NULL;
	*used += (size_t)length + 1;
	return copy;
}

size_t
tls_policy_match_names(const struct tls_policy_entry *entry, const char *nexthop,
    const char *host, const char **out, size_t outsize, char *buffer, size_t buffersize)
{
	size_t count = 0, used = 0;

	if (outsize == 0)
		return 0;
	for (size_t i = 0; entry->match != NULL && entry->match[i] != NULL && count + 1 < outsize; i++) {
		const char *word = entry->match[i];
		const char *name;

		if (strcmp(word, "hostname") == 0)
			name = buffer_add(buffer, buffersize, &used, "", host);
		else if (strcmp(word, "nexthop") == 0)
			name = buffer_add(buffer, buffersize, &used, "", nexthop);
		else if (strcmp(word, "dot-nexthop") == 0)
			name = buffer_add(buffer, buffersize, &used, ".", nexthop);
		else
			name = buffer_add(buffer, buffersize, &used, "", word);
		if (name == NULL)
			break;
		out[count++] = name;
	}
	out[count] = NULL;
	return count;
}
