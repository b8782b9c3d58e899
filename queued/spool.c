/* The spool directories, queue ids and start-up recovery. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envelope.h"
#include "log.h"
#include "privsep.h"
#include "spool.h"
#include "util.h"

#define ENVELOPE_FILE_MAX (16 * 1024 * 1024)

static const char *const spool_dirs[] = { "data", "tmp", "queue", "deferred", "deferred-data",
	"corrupt", "spare" };

static void
create_owned_dir(const char *path, uid_t uid, gid_t gid)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		fatal("create spool directory %s", path);
	if (privsep_is_root() && chown(path, uid, gid) < 0)
		fatal("chown spool directory %s", path);
	if (chmod(path, 0700) < 0)
		fatal("chmod spool directory %s", path);
}

void
spool_create(const char *path, uid_t uid, gid_t gid)
{
	char *parent = xstrdup(path);
	char *slash = strrchr(parent, '/');

	if (slash != NULL && slash != parent) {
		*slash = '\0';
		if (mkdir_p(parent, 0755) < 0)
			fatal("create %s", parent);
	}
	free(parent);

	create_owned_dir(path, uid, gid);
	for (size_t i = 0; i < sizeof spool_dirs / sizeof spool_dirs[0]; i++) {
		char *sub = xasprintf("%s/%s", path, spool_dirs[i]);

		create_owned_dir(sub, uid, gid);
		free(sub);
	}
}

int
spool_lock(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		fatal("open queue_directory %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		fatal("lock queue_directory %s (is another queued running on it?)", path);
	return fd;
}

static int
open_dir_at(int dir_fd, const char *name, const char *spool_path)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		fatal("open spool directory %s/%s", spool_path, name);
	return fd;
}

void
spool_open(struct spool *spool, const char *path)
{
	spool->path = xstrdup(path);
	spool->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (spool->dir_fd < 0)
		fatal("open queue_directory %s", path);
	spool->data_fd = open_dir_at(spool->dir_fd, "data", path);
	spool->tmp_fd = open_dir_at(spool->dir_fd, "tmp", path);
	spool->queue_fd = open_dir_at(spool->dir_fd, "queue", path);
	spool->deferred_fd = open_dir_at(spool->dir_fd, "deferred", path);
	spool->deferred_data_fd = open_dir_at(spool->dir_fd, "deferred-data", path);
	spool->corrupt_fd = open_dir_at(spool->dir_fd, "corrupt", path);
	spool->spare_fd = open_dir_at(spool->dir_fd, "spare", path);
	spool->spares = NULL;
}

void
spool_close(struct spool *spool)
{
	close(spool->data_fd);
	close(spool->tmp_fd);
	close(spool->queue_fd);
	close(spool->deferred_fd);
	close(spool->deferred_data_fd);
	close(spool->corrupt_fd);
	close(spool->spare_fd);
	spare_free(spool);
	close(spool->dir_fd);
	free(spool->path);
	spool->path = NULL;
}

void
spool_new_id(char id[QUEUE_ID_MAX])
{
	static unsigned counter;
	static long long last_usec;
	long long usec = now_usec();

	/* The counter distinguishes ids made within one microsecond, and
	 * O_EXCL in spool_create_data catches the rest (a clock set back). */
	if (usec != last_usec)
		counter = 0;
	last_usec = usec;
	snprintf(id, QUEUE_ID_MAX, "%013llX%03X", (unsigned long long)usec & 0xFFFFFFFFFFFFFULL,
	    counter++ & 0xFFF);
}

int
spool_id_valid(const char *id)
{
	size_t len = strlen(id);

	if (len < 12 || len > 20)
		return 0;
	for (const char *p = id; *p != '\0'; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')))
			return 0;
	return 1;
}

int
spool_create_data(struct spool *spool, char id[QUEUE_ID_MAX], int *client_fd, int *own_fd)
{
	for (int tries = 0; tries < 100; tries++) {
		spool_new_id(id);
		*client_fd = spare_open(spool, spool->data_fd, id, SPARE_FOR_DATA, O_RDWR);
		if (*client_fd < 0 && errno == EEXIST)
			continue;
		if (*client_fd < 0)
			*client_fd = openat(spool->data_fd, id, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
			    0600);
		if (*client_fd < 0 && errno == EEXIST)
			continue;
		if (*client_fd < 0)
			return -1;

		*own_fd = fcntl(*client_fd, F_DUPFD_CLOEXEC, 0);
		if (*own_fd < 0) {
			int saved = errno;

			close(*client_fd);
			unlinkat(spool->data_fd, id, 0);
			errno = saved;
			return -1;
		}
		return 0;
	}
	errno = EEXIST;
	return -1;
}

off_t
spool_data_written(int own_fd)
{
	return lseek(own_fd, 0, SEEK_CUR);
}

/* Copy the first SIZE bytes of FROM to TO, a new file, leaving TO's
 * offset at SIZE as the client's was. 0, or -1 with errno set (EIO when
 * FROM is shorter). */
static int
copy_file_start(int from, int to, off_t size)
{
	char buf[65536];
	off_t offset = 0;

	while (offset < size) {
		size_t want = size - offset < (off_t)sizeof buf ? (size_t)(size - offset) : sizeof buf;
		ssize_t n = pread(from, buf, want, offset);

		if (n == 0)
			errno = EIO;
		if (n <= 0 || write_all(to, buf, (size_t)n) < 0)
			return -1;
		offset += n;
	}
	return 0;
}

int
spool_take_data(const struct spool *spool, const char *id, int own_fd, off_t size)
{
	char copy_name[QUEUE_ID_MAX + 8];
	int fd, saved;

	/* The ".copy" name is no queue id, so recovery removes a copy that
	 * a crash left behind, as it does any data file without an
	 * envelope. */
	snprintf(copy_name, sizeof copy_name, "%s.copy", id);
	unlinkat(spool->data_fd, copy_name, 0);
	fd = openat(spool->data_fd, copy_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0 && copy_file_start(own_fd, fd, size) == 0 &&
	    renameat(spool->data_fd, copy_name, spool->data_fd, id) == 0) {
		close(own_fd);
		return fd;
	}

	saved = errno;
	if (fd >= 0) {
		close(fd);
		unlinkat(spool->data_fd, copy_name, 0);
	}
	close(own_fd);
	errno = saved;
	return -1;
}

int
spool_cut(int fd, off_t size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -1;
	if (st.st_size > size && ftruncate(fd, size) < 0)
		return -1;
	return 0;
}

int
spool_open_data(const struct spool *spool, const struct envelope *env)
{
	int expected = spool_data_dir(spool, env->in_deferred);
	int fd = openat(expected, env->id, O_RDONLY | O_CLOEXEC);

	if (fd >= 0 || errno != ENOENT)
		return fd;

	/* The commit thread may be moving the file from data/ to
	 * deferred-data/ right now, because in_deferred is set when the move
	 * is submitted. So the expected directory is tried again after the
	 * other one: a file found in neither place has arrived by the third
	 * look. A move that failed leaves the file in data/, where the
	 * second look finds it. */
	fd = openat(spool_data_dir(spool, !env->in_deferred), env->id, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		fd = openat(expected, env->id, O_RDONLY | O_CLOEXEC);
	return fd;
}

void
spool_remove_data(const struct spool *spool, const char *id)
{
	if (unlinkat(spool->data_fd, id, 0) < 0 && errno != ENOENT)
		log_warn("%s: remove data file: %s", id, strerror(errno));
}

/* Read a whole small file at DIR_FD/NAME into a new buffer. */
static char *
read_file_at(int dir_fd, const char *name, size_t *len)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	ssize_t n;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || st.st_size > ENVELOPE_FILE_MAX) {
		close(fd);
		errno = EFBIG;
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		errno = EIO;
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

/* A directory stream on a copy of DIR_FD, from its first entry (the
 * copy shares the file offset, so it is rewound). NULL on error. */
static DIR *
open_dir_stream(int dir_fd)
{
	int fd = dup(dir_fd);
	DIR *dir;

	if (fd < 0)
		return NULL;
	dir = fdopendir(fd);
	if (dir == NULL) {
		close(fd);
		return NULL;
	}
	rewinddir(dir);
	return dir;
}

/* Call VISIT for every entry of the spool directory DIR_FD (NAME, for
 * the error) except those whose names start with a dot. */
static void
visit_entries(struct spool *spool, int dir_fd, const char *name,
    void (*visit)(struct spool *, const char *entry, void *arg), void *arg)
{
	DIR *dir = open_dir_stream(dir_fd);
	struct dirent *de;

	if (dir == NULL)
		fatal("read spool directory %s/%s", spool->path, name);
	while ((de = readdir(dir)) != NULL)
		if (de->d_name[0] != '.')
			visit(spool, de->d_name, arg);
	closedir(dir);
}

/* The names of a message's envelope and data directories, for logs. */
static const char *
envelope_dir_name(int deferred)
{
	return deferred ? "deferred" : "queue";
}

static const char *
data_dir_name(int deferred)
{
	return deferred ? "deferred-data" : "data";
}

static int
exists_at(int dir_fd, const char *name)
{
	struct stat st;

	return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Move the envelope NAME from queue/, or from deferred/ when DEFERRED is
 * set, to corrupt/. */
static void
move_to_corrupt(struct spool *spool, int deferred, const char *name, const char *why)
{
	log_error("%s: unreadable envelope (%s) in %s/; moved to %s/corrupt", name, why,
	    envelope_dir_name(deferred), spool->path);
	if (renameat(spool_envelope_dir(spool, deferred), name, spool->corrupt_fd, name) < 0)
		log_error("%s: move to corrupt/: %s", name, strerror(errno));
}

/* Load the envelope NAME from queue/, or from deferred/ when DEFERRED is
 * set. Returns the envelope, or NULL when it was unreadable (already
 * logged and moved to corrupt/). */
static struct envelope *
load_envelope(struct spool *spool, int deferred, const char *name)
{
	struct envelope *env;
	const char *why;
	char *text;
	size_t len;

	text = read_file_at(spool_envelope_dir(spool, deferred), name, &len);
	if (text == NULL) {
		move_to_corrupt(spool, deferred, name, strerror(errno));
		return NULL;
	}
	env = envelope_parse(text, len, &why);
	free(text);
	if (env == NULL) {
		move_to_corrupt(spool, deferred, name, why);
		return NULL;
	}
	if (strcmp(env->id, name) != 0) {
		envelope_free(env);
		move_to_corrupt(spool, deferred, name, "id does not match the file name");
		return NULL;
	}

	/* place_data_files left the data file in the other directory only
	 * if it could not move it, and readers look there too. */
	if (!exists_at(spool_data_dir(spool, deferred), name) &&
	    !exists_at(spool_data_dir(spool, !deferred), name)) {
		envelope_free(env);
		move_to_corrupt(spool, deferred, name, "data file missing");
		return NULL;
	}
	env->in_deferred = deferred;
	return env;
}

/*
 * Return whether ENV's data file, in data/ or deferred-data/, contains
 * the SIZE bytes whose CRC-32 ENV records. A large file has no CRC,
 * because it was synced before its envelope was written (data_synced).
 * Nor has an update of an envelope written before data_crc existed, and
 * its data file has been on disk since that earlier commit. For those
 * the size is all there is to check.
 */
static int
data_file_matches(const struct spool *spool, const struct envelope *env)
{
	char buf[65536];
	unsigned long crc = 0;
	off_t offset = 0;
	struct stat st;
	ssize_t n;
	int fd = openat(spool->data_fd, env->id, O_RDONLY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		fd = openat(spool->deferred_data_fd, env->id, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || st.st_size != env->size) {
		close(fd);
		return 0;
	}
	if (!env->have_data_crc) {
		close(fd);
		return env->data_synced || env->seq > 0;
	}
	while (offset < env->size && (n = pread(fd, buf, sizeof buf, offset)) > 0) {
		crc = envelope_crc(crc, buf, (size_t)n);
		offset += n;
	}
	close(fd);
	return offset == env->size && crc == env->data_crc;
}

/* Parse DIR_FD/NAME; NULL if it is missing, not a complete envelope, or
 * the envelope of another message (a file reused before a crash). */
static struct envelope *
parse_envelope_at(int dir_fd, const char *name)
{
	struct envelope *env;
	const char *why;
	size_t len;
	char *text = read_file_at(dir_fd, name, &len);

	if (text == NULL)
		return NULL;
	env = envelope_parse(text, len, &why);
	free(text);
	if (env != NULL && strcmp(env->id, name) != 0) {
		envelope_free(env);
		return NULL;
	}
	return env;
}

/* The newer of A and B (either may be NULL); the other is freed. */
static struct envelope *
newer_envelope(struct envelope *a, struct envelope *b)
{
	if (a == NULL || (b != NULL && b->seq > a->seq)) {
		envelope_free(a);
		return b;
	}
	envelope_free(b);
	return a;
}

/*
 * Decide the fate of tmp/NAME. A commit is acknowledged once its
 * envelope is complete in tmp/ (commit.h). So a tmp/ envelope whose
 * checksums match may be a committed message whose rename never reached
 * the disk, or an update newer than the copy in queue/ or deferred/.
 * Either way it goes into place, queue/ for a new message and deferred/
 * for an update, unless a copy there has the same or a higher seq.
 * Anything else in tmp/ was never acknowledged. Returns the log text for
 * what was done.
 */
static const char *
recover_tmp_envelope(struct spool *spool, const char *name)
{
	struct envelope *tmp = parse_envelope_at(spool->tmp_fd, name), *placed = NULL;
	const char *outcome = NULL;
	int deferred;

	if (tmp == NULL || !tmp->checksummed)
		outcome = "removed unfinished envelope file";
	if (outcome == NULL)
		placed = newer_envelope(parse_envelope_at(spool->queue_fd, name),
		    parse_envelope_at(spool->deferred_fd, name));
	if (outcome == NULL && placed != NULL && placed->seq >= tmp->seq)
		outcome = "removed envelope file older than the committed one";
	if (outcome == NULL && placed == NULL && !data_file_matches(spool, tmp))
		outcome = "removed envelope file whose data file is incomplete";

	if (outcome == NULL) {
		deferred = tmp->seq > 0;
		if (renameat(spool->tmp_fd, name, spool_envelope_dir(spool, deferred), name) == 0) {
			outcome = placed != NULL ? "recovered envelope update from tmp/" :
			    "recovered committed envelope from tmp/";
		} else {
			/* Kept in tmp/ with its data file (place_data_files), for
			 * the next start. */
			log_error("%s: could not move the envelope out of tmp/: %s", name,
			    strerror(errno));
			outcome = "envelope kept in tmp/";
		}
	} else {
		unlinkat(spool->tmp_fd, name, 0);
	}
	envelope_free(tmp);
	envelope_free(placed);
	return outcome;
}

static void
recover_tmp_entry(struct spool *spool, const char *name, void *unused)
{
	log_info("%s: %s", name, recover_tmp_envelope(spool, name));
}

/*
 * Keep one of queue/NAME and deferred/NAME, which a crash during a move
 * can leave both (commit.h): the one with the higher seq, which is the
 * copy in deferred/ unless that one is unreadable. An unreadable copy is
 * left for load_envelope, which moves it to corrupt/.
 */
static void
keep_newer_copy(struct spool *spool, const char *name)
{
	struct envelope *queued = parse_envelope_at(spool->queue_fd, name);
	struct envelope *deferred = parse_envelope_at(spool->deferred_fd, name);
	int older = -1;		/* 0: the copy in queue/, 1: the one in deferred/ */

	if (deferred != NULL && (queued == NULL || deferred->seq >= queued->seq))
		older = 0;
	else if (deferred != NULL)
		older = 1;
	envelope_free(queued);
	envelope_free(deferred);
	if (older < 0)
		return;

	log_warn("%s: envelope in both queue/ and deferred/ after an interrupted move; "
	    "removed the older one in %s/", name, envelope_dir_name(older));
	if (unlinkat(spool_envelope_dir(spool, older), name, 0) < 0)
		log_error("%s: remove %s/%s: %s", name, envelope_dir_name(older), name,
		    strerror(errno));
}

/* Resolve queue/NAME if deferred/NAME exists too. */
static void
check_both_copies(struct spool *spool, const char *name, void *unused)
{
	if (exists_at(spool->deferred_fd, name))
		keep_newer_copy(spool, name);
}

/* Move the data file NAME from the data directory of DEFERRED to the
 * other one, where its envelope is, or remove it when a copy is there
 * already (a crash during a move can leave the file under both names). */
static void
move_data_to_envelope(struct spool *spool, int deferred, const char *name)
{
	int from_fd = spool_data_dir(spool, deferred);
	int to_fd = spool_data_dir(spool, !deferred);

	if (exists_at(to_fd, name)) {
		log_warn("%s: data file in both data/ and deferred-data/; removed the one in %s/",
		    name, data_dir_name(deferred));
		if (unlinkat(from_fd, name, 0) < 0)
			log_error("%s: remove %s/%s: %s", name, data_dir_name(deferred), name,
			    strerror(errno));
		return;
	}
	if (renameat(from_fd, name, to_fd, name) < 0) {
		log_error("%s: move the data file from %s/ to %s/: %s; it is read where it is", name,
		    data_dir_name(deferred), data_dir_name(!deferred), strerror(errno));
		return;
	}
	log_warn("%s: data file in %s/ but envelope in %s/ after an interrupted move; "
	    "moved the data file to %s/", name, data_dir_name(deferred),
	    envelope_dir_name(!deferred), data_dir_name(!deferred));
}

/* Check the file NAME in the data directory of *DEFERRED. It stays when
 * its envelope is in the matching envelope directory and moves when the
 * envelope is in the other one. Without an envelope it belongs to an
 * uncommitted message and is removed. */
static void
place_data_file(struct spool *spool, const char *name, void *arg)
{
	int deferred = *(int *)arg;

	if (exists_at(spool_envelope_dir(spool, deferred), name))
		return;
	/* A committed envelope that recovery could not move out of tmp/. */
	if (exists_at(spool->tmp_fd, name))
		return;
	if (exists_at(spool_envelope_dir(spool, !deferred), name)) {
		move_data_to_envelope(spool, deferred, name);
		return;
	}
	log_info("%s: removed uncommitted data file", name);
	unlinkat(spool_data_dir(spool, deferred), name, 0);
}

/* A growing array of loaded envelopes, from queue/ or deferred/. */
struct envelope_list {
	struct envelope **items;
	size_t count, capacity;
	int deferred;		/* the directory being loaded */
};

/* Load the envelope NAME into the envelope_list ARG. */
static void
load_entry(struct spool *spool, const char *name, void *arg)
{
	struct envelope_list *list = arg;
	struct envelope *env = load_envelope(spool, list->deferred, name);

	if (env == NULL)
		return;
	if (list->count == list->capacity) {
		list->capacity = list->capacity ? list->capacity * 2 : 256;
		list->items = xrealloc(list->items, list->capacity * sizeof *list->items);
	}
	list->items[list->count++] = env;
}

static int
compare_arrival(const void *a, const void *b)
{
	const struct envelope *left = *(struct envelope *const *)a;
	const struct envelope *right = *(struct envelope *const *)b;

	return (left->arrival_usec > right->arrival_usec) - (left->arrival_usec < right->arrival_usec);
}

size_t
spool_recover(struct spool *spool, void (*load)(struct envelope *env, void *arg), void *arg)
{
	struct envelope_list list = { NULL, 0, 0, 0 };
	int in_queue = 0, in_deferred = 1;

	/* Envelopes first, since where a data file belongs depends on where
	 * its envelope ended up. */
	visit_entries(spool, spool->tmp_fd, "tmp", recover_tmp_entry, NULL);
	visit_entries(spool, spool->queue_fd, envelope_dir_name(0), check_both_copies, NULL);
	visit_entries(spool, spool->data_fd, data_dir_name(0), place_data_file,
	    &in_queue);
	visit_entries(spool, spool->deferred_data_fd, data_dir_name(1), place_data_file,
	    &in_deferred);

	visit_entries(spool, spool->queue_fd, envelope_dir_name(0), load_entry, &list);
	list.deferred = 1;
	visit_entries(spool, spool->deferred_fd, envelope_dir_name(1), load_entry, &list);

	/* Oldest first, so delivery and the queue listing follow arrival. */
	if (list.count > 0)
		qsort(list.items, list.count, sizeof *list.items, compare_arrival);
	for (size_t i = 0; i < list.count; i++)
		load(list.items[i], arg);
	free(list.items);
	return list.count;
}
