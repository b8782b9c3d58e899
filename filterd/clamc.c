/*
 * The ClamAV check over clamd's command protocol (clamd(8), "z"
 * commands: each ends with a NUL, and so does the reply).
 *
 * INSTREAM: "zINSTREAM\0", then chunks, each a 4-byte big-endian length
 * and that many bytes, then a zero length. clamd replies
 * "stream: OK\0", "stream: NAME FOUND\0" or "... ERROR\0", and closes the
 * connection. Over its StreamMaxLength it replies
 * "INSTREAM size limit exceeded. ERROR" while the client is still sending.
 *
 * FILDES: "zFILDES\0", then one byte with the descriptor (SCM_RIGHTS) over
 * a Unix socket. clamd reads the file itself, so no size limit applies.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clamc.h"
#include "config.h"
#include "log.h"
#include "scanner_io.h"
#include "util.h"

/* Buffers of this size live on the stack of a filterd worker thread (1 MiB). */
#define CHUNK_SIZE 16384
#define REPLY_MAX 1024
#define VIRUS_NAME_MAX 128

int
clamc_init(char *err, size_t errsize)
{
	const char *path = config_string("clamd_socket");

	if (path[0] == '\0' && config_string("clamd_address")[0] == '\0') {
		snprintf(err, errsize, "clamd_socket and clamd_address are both empty; set one, "
		    "or take clamav out of filterd_checks");
		return -1;
	}
	if (config_bool("clamd_use_fildes") && path[0] == '\0') {
		snprintf(err, errsize, "clamd_use_fildes needs clamd_socket, since a descriptor "
		    "can only be passed over a Unix socket");
		return -1;
	}
	return scanner_check_target("clamd", path, config_string("clamd_address"), err, errsize);
}

/* Stream the spool file in chunks. Returns 0, SCANNER_PEER_REPLIED when
 * clamd replied before the end (over its size limit), or -1. */
static int
send_stream(int fd, const struct filter_message *msg, long long deadline,
    char *err, size_t errsize)
{
	unsigned char chunk[4 + CHUNK_SIZE];
	off_t offset = 0;
	int rc;

	rc = scanner_send(fd, "zINSTREAM", sizeof "zINSTREAM", deadline, err, errsize);
	while (rc == 0 && offset < msg->size) {
		size_t want = msg->size - offset < CHUNK_SIZE ? (size_t)(msg->size - offset) : CHUNK_SIZE;
		ssize_t got = pread(msg->fd, chunk + 4, want, offset);
		uint32_t length;

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(err, errsize, "reading the spool file failed: %s",
			    got < 0 ? strerror(errno) : "shorter than its size");
			return -1;
		}
		length = htonl((uint32_t)got);
		memcpy(chunk, &length, 4);
		rc = scanner_send(fd, chunk, 4 + (size_t)got, deadline, err, errsize);
		offset += got;
	}
	if (rc == 0)
		rc = scanner_send(fd, "\0\0\0\0", 4, deadline, err, errsize);
	return rc;
}

static int
send_descriptor(int fd, const struct filter_message *msg, long long deadline,
    char *err, size_t errsize)
{
	int rc = scanner_send(fd, "zFILDES", sizeof "zFILDES", deadline, err, errsize);

	if (rc == 0)
		rc = scanner_send_fd(fd, msg->fd, deadline, err, errsize);
	return rc;
}

/* Read the reply up to its NUL or the end of the stream. */
static int
read_reply(int fd, char *reply, size_t replysize, long long deadline, char *err, size_t errsize)
{
	size_t used = 0;

	for (;;) {
		ssize_t got = scanner_recv(fd, reply + used, replysize - 1 - used, deadline, err, errsize);

		if (got < 0)
			return -1;
		used += (size_t)got;
		reply[used] = '\0';
		if (got == 0 || memchr(reply, '\0', used) != NULL)
			break;
		if (used == replysize - 1) {
			snprintf(err, errsize, "reply longer than %zu bytes", replysize - 1);
			return -1;
		}
	}
	if (used == 0) {
		snprintf(err, errsize, "connection closed without a reply");
		return -1;
	}

	/* The reply ends at its NUL, or at the end of the stream without one. */
	used = strlen(reply);
	while (used > 0 && reply[used - 1] == '\n')
		reply[--used] = '\0';
	return 0;
}

static int
virus_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    strchr("._-:/+", c) != NULL;
}

static int
has_suffix(const char *text, size_t len, const char *suffix)
{
	size_t suffixlen = strlen(suffix);

	return len >= suffixlen && memcmp(text + len - suffixlen, suffix, suffixlen) == 0;
}

int
clamc_parse_reply(const char *reply, char *virus, size_t virussize)
{
	const char *colon = strstr(reply, ": ");
	size_t len = strlen(reply);

	virus[0] = '\0';
	if (colon == NULL || has_suffix(reply, len, " ERROR"))
		return -1;
	if (strcmp(colon, ": OK") == 0)
		return 0;
	if (!has_suffix(reply, len, " FOUND"))
		return -1;

	/* "stream: NAME FOUND": the name is one word, since clamd's
	 * signature names have no spaces. */
	const char *name = colon + 2;
	size_t namelen = len - strlen(" FOUND") - (size_t)(name - reply);

	if (namelen == 0 || namelen >= virussize || namelen > VIRUS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < namelen; i++)
		if (!virus_name_char(name[i]))
			return -1;
	memcpy(virus, name, namelen);
	virus[namelen] = '\0';
	return 0;
}

/* Ask clamd about MSG; the reply text goes into REPLY. */
static int
clamc_query(const struct filter_message *msg, char *reply, size_t replysize,
    char *err, size_t errsize)
{
	long long deadline = scanner_deadline(config_time("clamd_timeout"));
	char cause[192];
	int fd, rc;

	fd = scanner_connect("clamd", config_string("clamd_socket"), config_string("clamd_address"),
	    deadline, err, errsize);
	if (fd < 0)
		return -1;

	if (config_bool("clamd_use_fildes"))
		rc = send_descriptor(fd, msg, deadline, cause, sizeof cause);
	else
		rc = send_stream(fd, msg, deadline, cause, sizeof cause);
	if (rc < 0) {
		snprintf(err, errsize, "clamd: sending the message failed: %s", cause);
		close(fd);
		return -1;
	}

	rc = read_reply(fd, reply, replysize, deadline, cause, sizeof cause);
	if (rc < 0)
		snprintf(err, errsize, "clamd: %s", cause);
	close(fd);
	return rc;
}

/*
 * Ask clamd about MSG with FILDES. clamd's reads of the passed descriptor
 * move the file offset that smtpd's descriptor shares (clamd 1.4.6), so
 * the offset is put back once clamd has replied.
 * NOTE: after a timeout clamd may still be reading, and so still moving
 * that offset, while smtpd goes on with the failure policy.
 */
static int
clamc_query_fildes(const struct filter_message *msg, char *reply, size_t replysize,
    char *err, size_t errsize)
{
	off_t offset = lseek(msg->fd, 0, SEEK_CUR);
	int rc;

	if (offset < 0) {
		snprintf(err, errsize, "lseek on the spool file failed: %s", strerror(errno));
		return -1;
	}

	rc = clamc_query(msg, reply, replysize, err, errsize);

	if (lseek(msg->fd, offset, SEEK_SET) < 0) {
		snprintf(err, errsize, "lseek on the spool file failed: %s", strerror(errno));
		return -1;
	}
	return rc;
}

int
clamc_check(const struct filter_message *msg, struct filter_result *result,
    char *err, size_t errsize)
{
	char reply[REPLY_MAX], virus[VIRUS_NAME_MAX + 1], text[200], reason[200];
	int rc;

	if (msg->fd < 0)
		return 0;

	if (config_bool("clamd_use_fildes"))
		rc = clamc_query_fildes(msg, reply, sizeof reply, err, errsize);
	else
		rc = clamc_query(msg, reply, sizeof reply, err, errsize);
	if (rc < 0)
		return -1;
	if (clamc_parse_reply(reply, virus, sizeof virus) < 0) {
		snprintf(err, errsize, "clamd replied: %s",
		    log_sanitize(text, sizeof text, reply, strlen(reply)));
		return -1;
	}

	if (virus[0] == '\0') {
		filter_result_log(result, "virus=none");
		return 0;
	}

	filter_result_log(result, "virus=%s", virus);
	snprintf(reason, sizeof reason, "virus=%s", virus);
	if (strcmp(config_string("virus_action"), "discard") == 0) {
		filter_result_action(result, FILTER_DISCARD, NULL, reason);
	} else {
		char smtp_reply[FILTER_REPLY_MAX];

		snprintf(smtp_reply, sizeof smtp_reply,
		    "554 5.7.1 Message rejected: virus found (%s)", virus);
		filter_result_action(result, FILTER_REJECT, smtp_reply, reason);
	}
	return 0;
}
