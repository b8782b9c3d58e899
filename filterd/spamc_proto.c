/*
 * The SPAMC/1.5 exchange with spamd: one HEADERS request per connection.
 *
 * Request: "HEADERS SPAMC/1.5", "Content-length: N", an optional "User:",
 * an empty line, then the message with CRLF line ends (N counts them).
 * Reply, as spamd 4.0 sends it:
 *
 *   SPAMD/1.1 0 EX_OK
 *   Content-length: 615
 *   Spam: True ; 1000.0 / 5.0
 *
 *   <the message's header section as SpamAssassin rewrote it>
 *
 * HEADERS gives the score, the threshold and the classic X-Spam-Status
 * field (with the rule names, autolearn and version) in one round trip.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "scanner_io.h"
#include "spamc.h"
#include "util.h"

/* Buffers of this size live on the stack of a filterd worker thread (1 MiB). */
#define CHUNK_SIZE 16384
#define REPLY_LINE_MAX 1024
#define REPLY_HEADERS_MAX 32
/* spamd returns a header section; more than this is not a HEADERS reply. */
#define REPLY_BODY_MAX (64LL * 1024 * 1024)

/* Count the LFs in the spool file, each of which becomes CRLF on the wire. */
static int
count_line_ends(const struct filter_message *msg, off_t *count, char *err, size_t errsize)
{
	char buf[CHUNK_SIZE];
	off_t offset = 0;

	*count = 0;
	while (offset < msg->size) {
		size_t want = msg->size - offset < (off_t)sizeof buf ? (size_t)(msg->size - offset) : sizeof buf;
		ssize_t got = pread(msg->fd, buf, want, offset);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(err, errsize, "reading the spool file failed: %s",
			    got < 0 ? strerror(errno) : "shorter than its size");
			return -1;
		}
		for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + got - p))) != NULL; p++)
			(*count)++;
		offset += got;
	}
	return 0;
}

/*
 * Send the message with LF turned into CRLF. Returns 0, 1 when spamd
 * replied early (an error), or -1 with ERR set.
 */
static int
send_message(int fd, const struct filter_message *msg, long long deadline,
    char *err, size_t errsize)
{
	char in[CHUNK_SIZE], out[2 * CHUNK_SIZE];
	off_t offset = 0;

	while (offset < msg->size) {
		size_t want = msg->size - offset < (off_t)sizeof in ? (size_t)(msg->size - offset) : sizeof in;
		ssize_t got = pread(msg->fd, in, want, offset);
		size_t used = 0;
		int rc;

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(err, errsize, "reading the spool file failed: %s",
			    got < 0 ? strerror(errno) : "shorter than its size");
			return -1;
		}
		for (ssize_t i = 0; i < got; i++) {
			if (in[i] == '\n')
				out[used++] = '\r';
			out[used++] = in[i];
		}
		rc = scanner_send(fd, out, used, deadline, err, errsize);
		if (rc != 0)
			return rc;
		offset += got;
	}
	return 0;
}

static int
send_request(int fd, const struct filter_message *msg, long long deadline,
    char *err, size_t errsize)
{
	const char *user = config_string("spamd_user");
	char head[512];
	off_t line_ends;
	int len, rc;

	if (count_line_ends(msg, &line_ends, err, errsize) < 0)
		return -1;

	len = snprintf(head, sizeof head, "HEADERS SPAMC/1.5\r\nContent-length: %lld\r\n%s%s%s\r\n",
	    (long long)(msg->size + line_ends), user[0] != '\0' ? "User: " : "", user,
	    user[0] != '\0' ? "\r\n" : "");
	if (len < 0 || (size_t)len >= sizeof head) {
		snprintf(err, errsize, "spamd_user is too long");
		return -1;
	}

	rc = scanner_send(fd, head, (size_t)len, deadline, err, errsize);
	if (rc == 0)
		rc = send_message(fd, msg, deadline, err, errsize);
	if (rc < 0)
		return -1;

	/* spamd reads Content-length bytes, so the half-close only matters
	 * to a peer that reads up to the end of the stream. */
	shutdown(fd, SHUT_WR);
	return 0;
}

/* Buffered reading of spamd's reply. */
struct reply_reader {
	int fd;
	long long deadline;
	char buf[8192];
	size_t start, end;
};

static int
reader_fill(struct reply_reader *reader, char *err, size_t errsize)
{
	char cause[192];
	ssize_t got;

	if (reader->start == reader->end)
		reader->start = reader->end = 0;
	if (reader->end == sizeof reader->buf)
		return 0;
	got = scanner_recv(reader->fd, reader->buf + reader->end,
	    sizeof reader->buf - reader->end, reader->deadline, cause, sizeof cause);
	if (got < 0)
		snprintf(err, errsize, "spamd: %s", cause);
	if (got > 0)
		reader->end += (size_t)got;
	return (int)(got < 0 ? -1 : got > 0);
}

/* Read one CRLF-terminated line without its CRLF. Returns 0, or -1 with
 * ERR set at the end of the stream or on a line too long or not CRLF. */
static int
reader_line(struct reply_reader *reader, char *line, size_t linesize, char *err, size_t errsize)
{
	for (;;) {
		char *lf = memchr(reader->buf + reader->start, '\n', reader->end - reader->start);
		int rc;

		if (lf != NULL) {
			size_t len = (size_t)(lf - (reader->buf + reader->start));

			if (len == 0 || lf[-1] != '\r' || len > linesize) {
				snprintf(err, errsize, "spamd sent a malformed reply line");
				return -1;
			}
			memcpy(line, reader->buf + reader->start, len - 1);
			line[len - 1] = '\0';
			reader->start += len + 1;
			return 0;
		}
		if (reader->end - reader->start >= linesize) {
			snprintf(err, errsize, "spamd sent a reply line longer than %zu bytes", linesize);
			return -1;
		}
		if (reader->start > 0) {
			memmove(reader->buf, reader->buf + reader->start, reader->end - reader->start);
			reader->end -= reader->start;
			reader->start = 0;
		}
		rc = reader_fill(reader, err, errsize);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			snprintf(err, errsize, "spamd closed the connection in the middle of its reply");
			return -1;
		}
	}
}

/* Check "SPAMD/1.x 0 EX_OK". */
static int
parse_status_line(const char *line, char *err, size_t errsize)
{
	const char *p = line;
	char text[REPLY_LINE_MAX];

	if (strncmp(p, "SPAMD/1.", 8) != 0 || !isdigit((unsigned char)p[8]))
		goto malformed;
	for (p += 8; isdigit((unsigned char)*p); p++)
		;
	if (*p++ != ' ' || !isdigit((unsigned char)*p))
		goto malformed;
	if (strcmp(p, "0 EX_OK") == 0)
		return 0;

	snprintf(err, errsize, "spamd replied with an error: %s",
	    log_sanitize(text, sizeof text, line, strlen(line)));
	return -1;

malformed:
	snprintf(err, errsize, "spamd sent an invalid status line: %s",
	    log_sanitize(text, sizeof text, line, strlen(line)));
	return -1;
}

/* Copy a decimal number ("-0.0", "1000.0") at *P into OUT and move *P past it. */
static int
parse_number(const char **p, char *out, size_t outsize)
{
	const char *start = *p, *q = start;

	if (*q == '-')
		q++;
	if (!isdigit((unsigned char)*q))
		return -1;
	while (isdigit((unsigned char)*q))
		q++;
	if (*q == '.') {
		q++;
		if (!isdigit((unsigned char)*q))
			return -1;
		while (isdigit((unsigned char)*q))
			q++;
	}
	if ((size_t)(q - start) >= outsize)
		return -1;
	memcpy(out, start, (size_t)(q - start));
	out[q - start] = '\0';
	*p = q;
	return 0;
}

int
spamc_parse_spam_header(const char *value, struct spamd_verdict *verdict)
{
	const char *p = value;

	if (strncmp(p, "True ; ", 7) == 0) {
		verdict->spam = 1;
		p += 7;
	} else if (strncmp(p, "False ; ", 8) == 0) {
		verdict->spam = 0;
		p += 8;
	} else {
		return -1;
	}

	if (parse_number(&p, verdict->score, sizeof verdict->score) < 0)
		return -1;
	if (strncmp(p, " / ", 3) != 0)
		return -1;
	p += 3;
	if (parse_number(&p, verdict->threshold, sizeof verdict->threshold) < 0)
		return -1;
	return *p == '\0' ? 0 : -1;
}

/* Read the reply headers up to the empty line: the Spam: line into
 * VERDICT, the body length into LENGTH. */
static int
read_reply_headers(struct reply_reader *reader, struct spamd_verdict *verdict,
    long long *length, char *err, size_t errsize)
{
	char line[REPLY_LINE_MAX], text[REPLY_LINE_MAX];
	int have_spam = 0;

	*length = -1;
	for (int n = 0; ; n++) {
		char *colon;

		if (reader_line(reader, line, sizeof line, err, errsize) < 0)
			return -1;
		if (line[0] == '\0')
			break;
		if (n == REPLY_HEADERS_MAX) {
			snprintf(err, errsize, "spamd sent more than %d reply headers", REPLY_HEADERS_MAX);
			return -1;
		}

		colon = strchr(line, ':');
		if (colon == NULL || colon[1] != ' ') {
			snprintf(err, errsize, "spamd sent an invalid reply header: %s",
			    log_sanitize(text, sizeof text, line, strlen(line)));
			return -1;
		}
		*colon = '\0';

		if (ascii_casecmp(line, "Spam") == 0) {
			if (spamc_parse_spam_header(colon + 2, verdict) < 0) {
				snprintf(err, errsize, "spamd sent an invalid Spam header: %s",
				    log_sanitize(text, sizeof text, colon + 2, strlen(colon + 2)));
				return -1;
			}
			have_spam = 1;
		} else if (ascii_casecmp(line, "Content-length") == 0) {
			char *end;

			errno = 0;
			*length = strtoll(colon + 2, &end, 10);
			if (!isdigit((unsigned char)colon[2]) || *end != '\0' || errno != 0 ||
			    *length > REPLY_BODY_MAX) {
				snprintf(err, errsize, "spamd sent an invalid Content-length: %s",
				    log_sanitize(text, sizeof text, colon + 2, strlen(colon + 2)));
				return -1;
			}
		}
	}

	if (!have_spam || *length < 0) {
		snprintf(err, errsize, "spamd's reply has no %s header",
		    have_spam ? "Content-length" : "Spam");
		return -1;
	}
	return 0;
}

/* Collects the X-Spam-Status field from the header section in the reply
 * body, one line at a time. */
struct status_collector {
	char line[REPLY_LINE_MAX];
	size_t linelen;
	int in_status;		/* the last field started was X-Spam-Status */
	int header_done;	/* the empty line has been seen */
	struct spamd_verdict *verdict;
};

/* Append TEXT to the status, after a fold (LF) when FOLD is set.
 * Returns -1, appending nothing, when it does not fit. */
static int
append_status(struct spamd_verdict *verdict, int fold, const char *text, size_t len)
{
	size_t used = strlen(verdict->status);

	if (used + (fold ? 1 : 0) + len + 1 > sizeof verdict->status)
		return -1;

	if (fold)
		verdict->status[used++] = '\n';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		verdict->status[used++] = (c >= 0x20 && c < 0x7f) || c == '\t' ? (char)c : '?';
	}
	verdict->status[used] = '\0';
	return 0;
}

static int
is_blank(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (text[i] != ' ' && text[i] != '\t')
			return 0;
	return 1;
}

static void
collect_line(struct status_collector *collector)
{
	char *line = collector->line;
	size_t len = collector->linelen;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0) {
		collector->header_done = 1;
		return;
	}

	if (line[0] == ' ' || line[0] == '\t') {
		/* A field longer than the buffer keeps its first lines whole,
		 * and a blank continuation line would end the header section
		 * once the fields are written with LF line ends. */
		if (collector->in_status && !is_blank(line, len) &&
		    append_status(collector->verdict, 1, line, len) < 0)
			collector->in_status = 0;
		return;
	}

	collector->in_status = len > 14 && ascii_ncasecmp(line, "X-Spam-Status:", 14) == 0 &&
	    collector->verdict->status[0] == '\0';
	if (collector->in_status) {
		size_t skip = 14;

		while (skip < len && (line[skip] == ' ' || line[skip] == '\t'))
			skip++;
		if (skip == len || append_status(collector->verdict, 0, line + skip, len - skip) < 0)
			collector->in_status = 0;
	}
}

static void
collect_bytes(struct status_collector *collector, const char *data, size_t len)
{
	for (size_t i = 0; i < len && !collector->header_done; i++) {
		if (data[i] == '\n') {
			collect_line(collector);
			collector->linelen = 0;
			continue;
		}
		/* Only the start of a longer line matters. */
		if (collector->linelen < sizeof collector->line)
			collector->line[collector->linelen++] = data[i];
	}
}

/* Read exactly LENGTH body bytes. More bytes already received are an error,
 * but the end of the stream is not awaited. */
static int
read_reply_body(struct reply_reader *reader, struct spamd_verdict *verdict, long long length,
    char *err, size_t errsize)
{
	struct status_collector collector = { .verdict = verdict };
	long long left = length;

	verdict->status[0] = '\0';
	for (;;) {
		size_t have = reader->end - reader->start;
		size_t take = (long long)have < left ? have : (size_t)left;
		int rc;

		collect_bytes(&collector, reader->buf + reader->start, take);
		reader->start += take;
		left -= (long long)take;
		if (reader->end > reader->start) {
			snprintf(err, errsize, "spamd sent more than its Content-length of %lld bytes", length);
			return -1;
		}
		if (left == 0)
			break;

		rc = reader_fill(reader, err, errsize);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			snprintf(err, errsize, "spamd closed the connection after %lld of %lld bytes",
			    length - left, length);
			return -1;
		}
	}

	/* A last header line without its line end. */
	if (collector.linelen > 0)
		collect_line(&collector);
	return 0;
}

int
spamc_query(const struct filter_message *msg, struct spamd_verdict *verdict,
    char *err, size_t errsize)
{
	long long deadline = scanner_deadline(config_time("spamd_timeout"));
	struct reply_reader *reader;
	char line[REPLY_LINE_MAX], cause[256];
	long long length;
	int fd, rc;

	memset(verdict, 0, sizeof *verdict);
	fd = scanner_connect("spamd", config_string("spamd_socket"), config_string("spamd_address"),
	    deadline, err, errsize);
	if (fd < 0)
		return -1;

	rc = send_request(fd, msg, deadline, cause, sizeof cause);
	if (rc < 0) {
		snprintf(err, errsize, "spamd: sending the request failed: %s", cause);
		close(fd);
		return -1;
	}

	reader = xcalloc(1, sizeof *reader);
	reader->fd = fd;
	reader->deadline = deadline;
	rc = reader_line(reader, line, sizeof line, cause, sizeof cause);
	if (rc == 0)
		rc = parse_status_line(line, cause, sizeof cause);
	if (rc == 0)
		rc = read_reply_headers(reader, verdict, &length, cause, sizeof cause);
	if (rc == 0)
		rc = read_reply_body(reader, verdict, length, cause, sizeof cause);
	if (rc < 0)
		snprintf(err, errsize, "%s", cause);

	free(reader);
	close(fd);
	return rc;
}
