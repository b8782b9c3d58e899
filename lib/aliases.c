/* The aliases file: parsing, target splitting and compilation to cdb. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aliases.h"
#include "cdbmap.h"
#include "log.h"
#include "util.h"

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *
trim(char *s)
{
	char *end;

	while (is_space(*s))
		s++;
	end = s + strlen(s);
	while (end > s && is_space(end[-1]))
		*--end = '\0';
	return s;
}

/*
 * Split one logical line into the lower-cased name and the value. The
 * name may be quoted ("name with space": value). Returns 0, or -1 with
 * a reason in ERR.
 */
static int
aliases_split_line(char *line, char **name, char **value, char *err, size_t errsize)
{
	char *p = line, *colon;

	if (*p == '"') {
		char *close = strchr(p + 1, '"');

		if (close == NULL) {
			snprintf(err, errsize, "unclosed quote in the alias name");
			return -1;
		}
		*close = '\0';
		*name = p + 1;
		colon = close + 1;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		if (*colon != ':') {
			snprintf(err, errsize, "missing ':' after the alias name");
			return -1;
		}
	} else {
		colon = strchr(p, ':');
		if (colon == NULL) {
			snprintf(err, errsize, "missing ':' after the alias name (expected \"name: target, ...\")");
			return -1;
		}
		*colon = '\0';
		*name = trim(p);
		if (strpbrk(*name, " \t") != NULL) {
			snprintf(err, errsize, "alias name \"%s\" contains whitespace: quote it", *name);
			return -1;
		}
	}

	if (**name == '\0') {
		snprintf(err, errsize, "empty alias name");
		return -1;
	}
	ascii_lower(*name);
	*value = trim(colon + 1);
	if (**value == '\0') {
		snprintf(err, errsize, "alias %s has no target", *name);
		return -1;
	}
	return 0;
}

static int
aliases_parse_logical(char *line, unsigned lineno, const char *path, alias_entry_cb entry,
    void *arg, char *err, size_t errsize)
{
	char reason[512];
	char *name, *value;

	if (aliases_split_line(line, &name, &value, reason, sizeof reason) < 0) {
		snprintf(err, errsize, "%s:%u: %s", path, lineno, reason);
		return -1;
	}
	if (entry(name, value, lineno, arg) < 0) {
		if (err[0] == '\0')
			snprintf(err, errsize, "%s:%u: alias %s rejected", path, lineno, name);
		return -1;
	}
	return 0;
}

/* Whether LINE is empty, whitespace or a comment. */
static int
line_is_blank_or_comment(const char *line)
{
	while (is_space(*line))
		line++;
	return *line == '\0' || *line == '#';
}

int
aliases_parse(const char *path, alias_entry_cb entry, void *arg, char *err, size_t errsize)
{
	char *line = NULL, *logical = NULL;
	size_t cap = 0;
	unsigned lineno = 0, logical_lineno = 0;
	int rc = 0;
	FILE *fp = fopen(path, "r");

	err[0] = '\0';
	if (fp == NULL) {
		snprintf(err, errsize, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}

	/* Comment lines are skipped even between an alias and its
	 * continuation lines; a line starting with whitespace continues. */
	while (getline(&line, &cap, fp) >= 0) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line_is_blank_or_comment(line))
			continue;

		if (line[0] == ' ' || line[0] == '\t') {
			if (logical == NULL) {
				snprintf(err, errsize, "%s:%u: continuation line without an alias before it",
				    path, lineno);
				rc = -1;
				break;
			}
			char *joined = xasprintf("%s %s", logical, trim(line));

			free(logical);
			logical = joined;
			continue;
		}

		if (logical != NULL) {
			rc = aliases_parse_logical(logical, logical_lineno, path, entry, arg, err, errsize);
			free(logical);
			logical = NULL;
			if (rc < 0)
				break;
		}
		logical = xstrdup(line);
		logical_lineno = lineno;
	}

	if (rc == 0 && ferror(fp)) {
		snprintf(err, errsize, "%s: read failed: %s", path, strerror(errno));
		rc = -1;
	}
	if (rc == 0 && logical != NULL)
		rc = aliases_parse_logical(logical, logical_lineno, path, entry, arg, err, errsize);
	free(logical);
	free(line);
	fclose(fp);
	return rc;
}

static void
alias_target_list_append(struct alias_target_list *list, enum alias_target_type type,
    const char *text)
{
	if (list->count == list->capacity) {
		list->capacity = list->capacity ? list->capacity * 2 : 8;
		list->targets = xrealloc(list->targets, list->capacity * sizeof *list->targets);
	}
	list->targets[list->count].type = type;
	list->targets[list->count].text = xstrdup(text);
	list->count++;
}

void
alias_target_list_free(struct alias_target_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->targets[i].text);
	free(list->targets);
	memset(list, 0, sizeof *list);
}

/* Remove the quotes around a wholly quoted item, undoing backslash
 * escapes inside. "john doe"@example.org is left as it is. */
static void
unquote_item(char *item)
{
	size_t len = strlen(item), n = 0;

	if (len < 2 || item[0] != '"' || item[len - 1] != '"')
		return;
	for (size_t i = 1; i < len - 1; i++) {
		if (item[i] == '\\' && i + 1 < len - 1)
			i++;
		item[n++] = item[i];
	}
	item[n] = '\0';
}

static int
classify_item(char *item, struct alias_target_list *out, char *err, size_t errsize)
{
	char *text;

	item = trim(item);
	unquote_item(item);
	item = trim(item);
	if (*item == '\0')
		return 0;

	if (*item == '|') {
		text = trim(item + 1);
		if (*text == '\0') {
			snprintf(err, errsize, "empty command after '|'");
			return -1;
		}
		alias_target_list_append(out, ALIAS_TARGET_COMMAND, text);
	} else if (ascii_ncasecmp(item, ":include:", 9) == 0) {
		text = trim(item + 9);
		if (*text != '/') {
			snprintf(err, errsize, ":include: needs an absolute path, not \"%s\"", text);
			return -1;
		}
		alias_target_list_append(out, ALIAS_TARGET_INCLUDE, text);
	} else if (*item == '/') {
		alias_target_list_append(out, ALIAS_TARGET_FILE, item);
	} else if (*item == '\\') {
		text = trim(item + 1);
		if (*text == '\0') {
			snprintf(err, errsize, "empty user name after '\\'");
			return -1;
		}
		alias_target_list_append(out, ALIAS_TARGET_LOCAL, text);
	} else {
		alias_target_list_append(out, ALIAS_TARGET_ADDRESS, item);
	}
	return 0;
}

/* Split at separators outside double quotes. SEPARATORS is "," for an
 * alias value, ",\n" for an include file. */
static int
split_items(const char *value, const char *separators, struct alias_target_list *out,
    char *err, size_t errsize)
{
	char *copy = xstrdup(value), *item = copy;
	int quoted = 0, rc = 0;

	for (char *p = copy;; p++) {
		if (quoted && *p == '\\' && p[1] != '\0') {
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		if (*p != '\0' && (quoted || strchr(separators, *p) == NULL))
			continue;

		if (*p == '\0' && quoted) {
			snprintf(err, errsize, "unclosed quote in \"%s\"", value);
			rc = -1;
			break;
		}
		int last = *p == '\0';

		*p = '\0';
		if (classify_item(item, out, err, errsize) < 0) {
			rc = -1;
			break;
		}
		if (last)
			break;
		item = p + 1;
	}
	free(copy);
	return rc;
}

int
aliases_split(const char *value, struct alias_target_list *out, char *err, size_t errsize)
{
	return split_items(value, ",", out, err, errsize);
}

int
aliases_split_include(const char *text, struct alias_target_list *out, char *err,
    size_t errsize)
{
	char *copy = xstrdup(text), *line = copy, *next;
	int rc = 0;

	/* Blank out comment lines first so that quotes inside them do not count. */
	for (; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			next++;
		if (line_is_blank_or_comment(line)) {
			size_t len = next != NULL ? (size_t)(next - line - 1) : strlen(line);

			memset(line, ' ', len);
		}
	}
	rc = split_items(copy, ",\n", out, err, errsize);
	free(copy);
	return rc;
}

/* One alias read for compilation, in file order. */
struct alias_record {
	char *name;
	char *value;
	unsigned lineno;
	size_t order;
};

struct alias_records {
	struct alias_record *items;
	size_t count;
	size_t capacity;
	char *err;
	size_t errsize;
	const char *path;
};

static int
collect_alias(const char *name, const char *value, unsigned lineno, void *arg)
{
	struct alias_records *records = arg;
	struct alias_target_list targets = { 0 };
	char reason[512];

	if (aliases_split(value, &targets, reason, sizeof reason) < 0) {
		snprintf(records->err, records->errsize, "%s:%u: alias %s: %s", records->path,
		    lineno, name, reason);
		return -1;
	}
	alias_target_list_free(&targets);

	if (records->count == records->capacity) {
		records->capacity = records->capacity ? records->capacity * 2 : 64;
		records->items = xrealloc(records->items, records->capacity * sizeof *records->items);
	}
	records->items[records->count] = (struct alias_record){
		.name = xstrdup(name),
		.value = xstrdup(value),
		.lineno = lineno,
		.order = records->count,
	};
	records->count++;
	return 0;
}

static int
compare_by_name(const void *a, const void *b)
{
	const struct alias_record *x = a, *y = b;
	int rc = strcmp(x->name, y->name);

	if (rc != 0)
		return rc;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Mark every later definition of a name as a duplicate (value NULL). */
static void
drop_duplicates(struct alias_records *records)
{
	qsort(records->items, records->count, sizeof *records->items, compare_by_name);
	for (size_t i = 1; i < records->count; i++) {
		struct alias_record *first = &records->items[i - 1];
		struct alias_record *later = &records->items[i];

		if (strcmp(first->name, later->name) != 0)
			continue;
		log_warn("%s:%u: duplicate alias %s: the definition on line %u is used",
		    records->path, later->lineno, later->name, first->lineno);
		free(later->value);
		later->value = NULL;
		later->lineno = first->lineno;
	}
}

static void
alias_records_free(struct alias_records *records)
{
	for (size_t i = 0; i < records->count; i++) {
		free(records->items[i].name);
		free(records->items[i].value);
	}
	free(records->items);
}

int
aliases_compile(const char *source, const char *cdb_path, char *err, size_t errsize)
{
	struct alias_records records = {
		.err = err,
		.errsize = errsize,
		.path = source,
	};
	struct cdbmap_writer *writer;
	int rc = -1;

	err[0] = '\0';
	if (aliases_parse(source, collect_alias, &records, err, errsize) < 0)
		goto done;
	drop_duplicates(&records);

	writer = cdbmap_create(cdb_path);
	if (writer == NULL) {
		snprintf(err, errsize, "%s.tmp: cannot create: %s", cdb_path, strerror(errno));
		goto done;
	}
	for (size_t i = 0; i < records.count; i++) {
		if (records.items[i].value == NULL)
			continue;
		if (cdbmap_add(writer, records.items[i].name, records.items[i].value) < 0) {
			snprintf(err, errsize, "%s.tmp: write failed: %s", cdb_path, strerror(errno));
			cdbmap_abort(writer);
			goto done;
		}
	}
	if (cdbmap_commit(writer) < 0) {
		snprintf(err, errsize, "%s: cannot write: %s", cdb_path, strerror(errno));
		goto done;
	}
	rc = 0;

done:
	alias_records_free(&records);
	return rc;
}
