/* Read-only lookups in tinycdb files (compiled alias maps). */
#ifndef ESTAFETA_CDBMAP_H
#define ESTAFETA_CDBMAP_H

#include <stddef.h>

struct cdbmap;

/* Open PATH. NULL with errno set if it cannot be opened or is not a cdb. */
struct cdbmap *cdbmap_open(const char *path);
void cdbmap_close(struct cdbmap *map);

/*
 * Look up KEY. Returns 1 and a new NUL-terminated copy of the value in
 * *VALUE, 0 if not found, -1 on a read error.
 */
int cdbmap_lookup(struct cdbmap *map, const char *key, char **value);

/* Reopen if the file on disk changed since it was opened (newaliases). */
void cdbmap_refresh(struct cdbmap **map, const char *path);

/*
 * Build PATH atomically (PATH.tmp, fsync, rename) from KEYS/VALUES.
 * Returns 0 or -1 with errno set.
 */
struct cdbmap_writer;
struct cdbmap_writer *cdbmap_create(const char *path);
int cdbmap_add(struct cdbmap_writer *w, const char *key, const char *value);
int cdbmap_commit(struct cdbmap_writer *w);	/* frees W */
void cdbmap_abort(struct cdbmap_writer *w);	/* frees W, removes the temp file */

#endif
