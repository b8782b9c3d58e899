/* Lookups in and atomic builds of tinycdb files. */
#include <cdb.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdbmap.h"
#include "util.h"

struct cdbmap {
	struct cdb cdb;
	int fd;
	struct stat st;		/* the file as opened, to notice a rebuild */
};

struct cdbmap_writer {
	struct cdb_make make;
	int fd;
	char *path;
	char *temp_path;
};

struct cdbmap *
cdbmap_open(const char *path)
{
	struct cdbmap *map;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;

	map = xcalloc(1, sizeof *map);
	map->fd = fd;
	if (fstat(fd, &map->st) < 0 || cdb_init(&map->cdb, fd) < 0) {
		int saved_errno = errno ? errno : EINVAL;

		close(fd);
		free(map);
		errno = saved_errno;
		return NULL;
	}
	return map;
}

void
cdbmap_close(struct cdbmap *map)
{
	if (map == NULL)
		return;
	cdb_free(&map->cdb);
	close(map->fd);
	free(map);
}

int
cdbmap_lookup(struct cdbmap *map, const char *key, char **value)
{
	unsigned len;
	char *copy;
	int rc = cdb_find(&map->cdb, key, (unsigned)strlen(key));

	if (rc <= 0)
		return rc < 0 ? -1 : 0;

	len = cdb_datalen(&map->cdb);
	copy = xmalloc((size_t)len + 1);
	if (cdb_read(&map->cdb, copy, len, cdb_datapos(&map->cdb)) < 0) {
		free(copy);
		return -1;
	}
	copy[len] = '\0';
	*value = copy;
	return 1;
}

/* Whether the file at PATH is no longer the one MAP has open: newaliases
 * renames a new file into place, so the inode changes. */
static int
cdbmap_changed(const struct cdbmap *map, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return 0;
	return st.st_ino != map->st.st_ino || st.st_dev != map->st.st_dev ||
	    st.st_mtim.tv_sec != map->st.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != map->st.st_mtim.tv_nsec ||
	    st.st_size != map->st.st_size;
}

void
cdbmap_refresh(struct cdbmap **map, const char *path)
{
	struct cdbmap *fresh;

	if (*map != NULL && !cdbmap_changed(*map, path))
		return;

	/* A failed reopen keeps the old map: stale aliases are better than none. */
	fresh = cdbmap_open(path);
	if (fresh == NULL)
		return;
	cdbmap_close(*map);
	*map = fresh;
}

struct cdbmap_writer *
cdbmap_create(const char *path)
{
	struct cdbmap_writer *w = xcalloc(1, sizeof *w);

	w->path = xstrdup(path);
	w->temp_path = xasprintf("%s.tmp", path);
	w->fd = open(w->temp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (w->fd < 0)
		goto fail;
	if (cdb_make_start(&w->make, w->fd) < 0) {
		int saved_errno = errno;

		close(w->fd);
		unlink(w->temp_path);
		errno = saved_errno;
		goto fail;
	}
	return w;

fail:
	free(w->temp_path);
	free(w->path);
	free(w);
	return NULL;
}

int
cdbmap_add(struct cdbmap_writer *w, const char *key, const char *value)
{
	return cdb_make_add(&w->make, key, (unsigned)strlen(key), value,
	    (unsigned)strlen(value)) < 0 ? -1 : 0;
}

static void
cdbmap_writer_free(struct cdbmap_writer *w)
{
	free(w->temp_path);
	free(w->path);
	free(w);
}

/* fsync the directory that contains PATH, so that a rename into it is durable. */
static int
fsync_parent_directory(const char *path)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	int rc;

	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	rc = fsync_directory(dir);
	free(dir);
	return rc;
}

int
cdbmap_commit(struct cdbmap_writer *w)
{
	int saved_errno;
	int fd = w->fd;

	w->fd = -1;
	if (cdb_make_finish(&w->make) < 0 || fsync(fd) < 0) {
		saved_errno = errno;
		close(fd);
		goto fail;
	}
	if (close(fd) < 0 || rename(w->temp_path, w->path) < 0) {
		saved_errno = errno;
		goto fail;
	}

	saved_errno = fsync_parent_directory(w->path) < 0 ? errno : 0;
	cdbmap_writer_free(w);
	errno = saved_errno;
	return saved_errno != 0 ? -1 : 0;

fail:
	unlink(w->temp_path);
	cdbmap_writer_free(w);
	errno = saved_errno;
	return -1;
}

void
cdbmap_abort(struct cdbmap_writer *w)
{
	if (w == NULL)
		return;
	close(w->fd);
	unlink(w->temp_path);
	cdbmap_writer_free(w);
}
