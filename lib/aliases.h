/*
 * The aliases file (/etc/aliases syntax, as in Postfix's and sendmail's
 * aliases(5)) and its compiled form, alias_database plus ".cdb":
 *
 *   # comment
 *   name: target, target, ...
 *       continuation lines start with whitespace
 *
 * A target is an address (user or user@domain), "|command", "/file"
 * (a path ending in '/' names a Maildir), ":include:/path" (more targets
 * read from that file) or "\user" (that user's own mailbox, no further
 * alias or .forward expansion). Double quotes protect commas and spaces:
 * "|/usr/bin/filter -a, -b". Keys are stored lower-cased; values are
 * stored as written, continuation lines joined with one space.
 */
#ifndef ESTAFETA_ALIASES_H
#define ESTAFETA_ALIASES_H

#include <stddef.h>

enum alias_target_type {
	ALIAS_TARGET_ADDRESS,
	ALIAS_TARGET_COMMAND,
	ALIAS_TARGET_FILE,
	ALIAS_TARGET_INCLUDE,
	ALIAS_TARGET_LOCAL,
};

struct alias_target {
	enum alias_target_type type;
	char *text;		/* without the '|', ":include:" or '\' prefix */
};

struct alias_target_list {
	struct alias_target *targets;
	size_t count;
	size_t capacity;
};

/*
 * Called once per alias with the lower-cased NAME, the raw VALUE and the
 * line number where the alias starts. Returning -1 stops the parse.
 */
typedef int (*alias_entry_cb)(const char *name, const char *value, unsigned lineno,
    void *arg);

/*
 * Read the aliases file at PATH and call ENTRY for every alias. Returns
 * 0, or -1 with "PATH:LINE: reason" (or "PATH: reason") in ERR.
 */
int aliases_parse(const char *path, alias_entry_cb entry, void *arg, char *err,
    size_t errsize);

/*
 * Split the right-hand side VALUE into targets, appended to OUT (which
 * starts zeroed). Returns 0, or -1 with a reason in ERR for an unclosed
 * quote, an empty command or a relative :include: path.
 */
int aliases_split(const char *value, struct alias_target_list *out, char *err,
    size_t errsize);

/*
 * Split the text of an :include: file: targets separated by commas or
 * line ends, lines starting with '#' ignored. Same results as
 * aliases_split.
 */
int aliases_split_include(const char *text, struct alias_target_list *out, char *err,
    size_t errsize);

void alias_target_list_free(struct alias_target_list *list);

/*
 * Compile the aliases file SOURCE into CDB_PATH (written to CDB_PATH.tmp,
 * fsynced and renamed into place, so readers never see a partial map).
 * Every right-hand side is checked with aliases_split. A duplicate name
 * is logged as a warning and its first definition is kept (Postfix
 * 3.7's postalias does the same). Returns 0, or -1 with the reason in
 * ERR; on failure the old CDB_PATH is left untouched.
 */
int aliases_compile(const char *source, const char *cdb_path, char *err, size_t errsize);

#endif
