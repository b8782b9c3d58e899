/*
 * Reading certificate and key files, directly or through the key reader.
 *
 * The key reader is a child forked as root before the daemon drops its
 * privileges. It keeps root only to open the files named by the tls_*
 * parameters at the time it started. It reads one request byte from its
 * socketpair, then sends every file in the order of that list, each as
 * a 4-byte errno, a 4-byte length and the text. It never reads anything
 * else and never touches network input, so an attacker who controls
 * the daemon after the drop can make it reread the same files and no
 * others. It exits when the daemon closes its end.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "log.h"
#include "privsep.h"
#include "tls.h"
#include "tls_files.h"
#include "util.h"

/* How long the daemon waits for the key reader's reply, in milliseconds. */
#define KEYREADER_TIMEOUT_MS	10000

static struct {
	int fd;			/* the daemon's end of the socketpair, or -1 */
	pid_t pid;
	struct tls_files paths;	/* the list the child serves, data unused */
	int stopped;		/* keyreader_stop ended it after a broken reply */
} keyreader = { .fd = -1 };

int
tls_sni_item_parse(const char *item, char **name, char **cert, char **key)
{
	const char *equals = strchr(item, '=');
	const char *slash = strchr(item, '/');
	const char *path = item;
	const char *colon;

	*name = *cert = *key = NULL;

	/* A name has no slash, so "=" after the first "/" is part of a path. */
	if (equals != NULL && (slash == NULL || equals < slash)) {
		*name = strndup(item, (size_t)(equals - item));
		path = equals + 1;
	}

	colon = strchr(path, ':');
	if (colon != NULL) {
		*cert = strndup(path, (size_t)(colon - path));
		if (colon[1] != '\0')
			*key = xstrdup(colon + 1);
	} else {
		*cert = xstrdup(path);
	}

	if (*cert == NULL || (*cert)[0] == '\0' || (*name != NULL && (*name)[0] == '\0')) {
		free(*name);
		free(*cert);
		free(*key);
		*name = *cert = *key = NULL;
		return -1;
	}
	return 0;
}

static void
files_add(struct tls_files *set, const char *path)
{
	if (path == NULL || path[0] == '\0' || tls_files_find(set, path) != NULL)
		return;
	set->files = xrealloc(set->files, (set->count + 1) * sizeof *set->files);
	memset(&set->files[set->count], 0, sizeof set->files[set->count]);
	set->files[set->count].path = xstrdup(path);
	set->count++;
}

void
tls_files_collect(struct tls_files *set)
{
	char *const *items = config_list("tls_sni_certificates");

	memset(set, 0, sizeof *set);
	files_add(set, config_string("tls_cert_file"));
	files_add(set, config_string("tls_key_file"));

	for (size_t i = 0; items[i] != NULL; i++) {
		char *name, *cert, *key;

		if (tls_sni_item_parse(items[i], &name, &cert, &key) < 0)
			continue;	/* tls_server_load reports it */
		files_add(set, cert);
		files_add(set, key);
		free(name);
		free(cert);
		free(key);
	}
}

const struct tls_file *
tls_files_find(const struct tls_files *set, const char *path)
{
	for (size_t i = 0; i < set->count; i++)
		if (strcmp(set->files[i].path, path) == 0)
			return &set->files[i];
	return NULL;
}

static void
file_clear(struct tls_file *file)
{
	if (file->data != NULL) {
		OPENSSL_cleanse(file->data, file->length);
		free(file->data);
	}
	file->data = NULL;
	file->length = 0;
	file->error = 0;
}

void
tls_files_free(struct tls_files *set)
{
	for (size_t i = 0; i < set->count; i++) {
		file_clear(&set->files[i]);
		free(set->files[i].path);
	}
	free(set->files);
	memset(set, 0, sizeof *set);
}

/*
 * Read PATH into FILE, or set FILE->error. The open is nonblocking
 * because open(2) of a FIFO waits for a writer, which would stall the
 * daemon or the key reader. A FIFO, device or directory is then rejected
 * with EINVAL after fstat. Symlinks are followed, since Let's Encrypt's
 * live/ directory consists of them.
 */
static void
file_read(struct tls_file *file)
{
	struct stat st;
	ssize_t n;
	size_t used = 0;
	int fd;

	file_clear(file);
	fd = open(file->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		file->error = errno;
		return;
	}
	if (fstat(fd, &st) < 0)
		file->error = errno;
	else if (!S_ISREG(st.st_mode))
		file->error = EINVAL;
	else if (st.st_size > TLS_FILE_MAX)
		file->error = EFBIG;
	if (file->error != 0) {
		close(fd);
		return;
	}

	file->data = xmalloc((size_t)st.st_size + 1);
	while (used < (size_t)st.st_size) {
		n = read(fd, file->data + used, (size_t)st.st_size - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	file->data[used] = '\0';
	file->length = used;
}

/* Read exactly LEN bytes, waiting at most KEYREADER_TIMEOUT_MS for each part. */
static int
read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	unsigned char *p = buf;

	while (len > 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (timeout_ms >= 0) {
			int rc = poll(&pfd, 1, timeout_ms);

			if (rc < 0 && errno == EINTR)
				continue;
			if (rc <= 0) {
				errno = rc == 0 ? ETIMEDOUT : errno;
				return -1;
			}
		}
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			errno = n == 0 ? EPIPE : errno;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Collect the key reader if it has exited; reloads fail from then on. */
static void
keyreader_reap(void)
{
	int status;

	if (keyreader.pid > 0 && waitpid(keyreader.pid, &status, WNOHANG) == keyreader.pid) {
		log_warn("key reader pid %ld exited (status 0x%x): TLS reloads need a restart",
		    (long)keyreader.pid, (unsigned)status);
		keyreader.pid = 0;
	}
}

/*
 * Give up the key reader after a reply that failed part way. The rest of
 * that reply could still arrive and would be taken for the next one, so
 * the socket cannot be used again. The daemon has dropped root and
 * cannot kill the reader: the reader exits on its next read or write of
 * the closed socket, or by its parent-death signal when the daemon stops.
 */
static void
keyreader_stop(void)
{
	close(keyreader.fd);
	keyreader.fd = -1;
	keyreader.stopped = 1;
	log_warn("key reader pid %ld stopped after a failed reply: TLS reloads need a restart",
	    (long)keyreader.pid);
}

static int
keyreader_fetch(struct tls_files *set, char *err, size_t errsize)
{
	const char request = 'R';
	struct tls_file scratch = { 0 };

	if (write_all(keyreader.fd, &request, 1) < 0) {
		snprintf(err, errsize, "cannot reach the key reader: %s", strerror(errno));
		keyreader_reap();
		return -1;
	}

	for (size_t i = 0; i < keyreader.paths.count; i++) {
		const char *path = keyreader.paths.files[i].path;
		struct tls_file *file = (struct tls_file *)tls_files_find(set, path);
		uint32_t header[2];

		if (file == NULL) {
			/* Served but no longer configured: read and discard it. */
			scratch.path = (char *)path;
			file = &scratch;
		}
		file_clear(file);
		if (read_exact(keyreader.fd, header, sizeof header, KEYREADER_TIMEOUT_MS) < 0)
			goto failed;
		if (header[1] > TLS_FILE_MAX) {
			errno = EPROTO;
			goto failed;
		}
		file->data = xmalloc(header[1] + 1);
		file->length = header[1];
		if (read_exact(keyreader.fd, file->data, header[1], KEYREADER_TIMEOUT_MS) < 0)
			goto failed;
		file->data[header[1]] = '\0';
		if (header[0] != 0) {
			file_clear(file);
			file->error = (int)header[0];
		}
		if (file == &scratch)
			file_clear(&scratch);
	}

	/* A path configured after the key reader started cannot be read. */
	for (size_t i = 0; i < set->count; i++)
		if (tls_files_find(&keyreader.paths, set->files[i].path) == NULL)
			set->files[i].error = EACCES;
	return 0;

failed:
	snprintf(err, errsize, "no reply from the key reader: %s", strerror(errno));
	file_clear(&scratch);
	keyreader_stop();
	return -1;
}

int
tls_files_read(struct tls_files *set, char *err, size_t errsize)
{
	if (keyreader.stopped) {
		keyreader_reap();
		snprintf(err, errsize, "the key reader stopped after an earlier failure: restart the daemon to reload TLS certificates");
		return -1;
	}
	if (keyreader.fd >= 0)
		return keyreader_fetch(set, err, errsize);

	for (size_t i = 0; i < set->count; i++)
		file_read(&set->files[i]);
	return 0;
}

/* The key reader's loop: one request byte in, every file out. */
static void __attribute__((noreturn))
keyreader_serve(int fd)
{
	char request;

	while (read_exact(fd, &request, 1, -1) == 0) {
		for (size_t i = 0; i < keyreader.paths.count; i++) {
			struct tls_file *file = &keyreader.paths.files[i];
			uint32_t header[2];

			file_read(file);
			header[0] = (uint32_t)file->error;
			header[1] = file->data != NULL ? (uint32_t)file->length : 0;
			if (write_all(fd, header, sizeof header) < 0 ||
			    (header[1] > 0 && write_all(fd, file->data, header[1]) < 0))
				_exit(1);
			file_clear(file);
		}
	}
	_exit(0);
}

/* Close every descriptor but stderr and KEEP in the key reader. */
static void
close_other_descriptors(int keep)
{
	if (keep > 3)
		close_range(3, (unsigned)keep - 1, 0);
	close_range((unsigned)keep + 1, ~0U, 0);
	if (keep != 0)
		close(0);
	if (keep != 1)
		close(1);
}

int
tls_keyreader_start(char *err, size_t errsize)
{
	pid_t parent = getpid();
	int pair[2];
	pid_t pid;

	if (!privsep_is_root() || keyreader.fd >= 0)
		return 0;

	tls_files_collect(&keyreader.paths);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		snprintf(err, errsize, "socketpair for the key reader failed: %s", strerror(errno));
		return -1;
	}

	pid = fork();
	if (pid < 0) {
		snprintf(err, errsize, "fork of the key reader failed: %s", strerror(errno));
		close(pair[0]);
		close(pair[1]);
		return -1;
	}
	if (pid == 0) {
		sigset_t none;

		/*
		 * Die with the daemon, and leave reloads and stops to it. An
		 * inherited SIGTERM handler (libevent's writes to a pipe this
		 * child closes) or a blocked SIGTERM would keep the parent-death
		 * signal from ending the child, so both are reset first.
		 */
		signal(SIGTERM, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(0);
		signal(SIGHUP, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		log_close_syslog();
		close_other_descriptors(pair[1]);
		keyreader_serve(pair[1]);
	}

	close(pair[1]);
	keyreader.fd = pair[0];
	keyreader.pid = pid;
	log_debug("key reader started: pid=%ld files=%zu", (long)pid, keyreader.paths.count);
	return 0;
}
