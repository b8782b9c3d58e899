/*
 * Mail loop detection by hop count, like Postfix's hopcount_limit
 * (default 50), which counts Received: fields only (cleanup(8)).
 * Delivered-To: fields count too here, because deliverd adds one when
 * it forwards a message, a hop that adds no Received: field.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "hopcount.h"
#include "log.h"
#include "smtpd.h"

/* Octets of a field name kept for the comparison: "Delivered-To" and room. */
#define NAME_MAX_KEPT 16

/* The header section scan, which reads the spool file in chunks. */
struct hop_scan {
	char name[NAME_MAX_KEPT];
	size_t name_length;
	int in_name;		/* reading the field name of the current line */
	int at_line_start;
	int header_ended;
	long hops;
};

/* Return whether NAME (LENGTH octets, maybe with spaces before the
 * colon, as the obsolete syntax of RFC 5322 section 4.5 allows) is a
 * hop field. */
static int
is_hop_field(const char *name, size_t length)
{
	while (length > 0 && (name[length - 1] == ' ' || name[length - 1] == '\t'))
		length--;
	return (length == 8 && strncasecmp(name, "Received", 8) == 0) ||
	    (length == 12 && strncasecmp(name, "Delivered-To", 12) == 0);
}

/* Start a line with octet C: an empty line ends the header section, a
 * space or tab continues the field before, anything else starts a name. */
static void
start_line(struct hop_scan *scan, char c)
{
	scan->at_line_start = 0;
	if (c == '\n') {
		scan->header_ended = 1;
		return;
	}
	scan->in_name = c != ' ' && c != '\t';
	scan->name_length = 0;
}

/* Scan LEN octets at BUF of the header section. */
static void
scan_octets(struct hop_scan *scan, const char *buf, size_t len)
{
	for (size_t i = 0; i < len && !scan->header_ended; i++) {
		char c = buf[i];

		if (scan->at_line_start) {
			start_line(scan, c);
			if (scan->header_ended)
				return;
		}

		if (c == '\n') {
			/* A line without a colon is not a field, so the body starts there. */
			if (scan->in_name)
				scan->header_ended = 1;
			scan->at_line_start = 1;
		} else if (scan->in_name && c == ':') {
			if (is_hop_field(scan->name, scan->name_length))
				scan->hops++;
			scan->in_name = 0;
		} else if (scan->in_name && scan->name_length < sizeof scan->name) {
			scan->name[scan->name_length++] = c;
		}
	}
}

/*
 * Count the hop fields in the first SIZE octets of FD, at most LIMIT + 1
 * of them. Returns the count, or -1 with errno set on a read error.
 */
static long
count_hops(int fd, long long size, long limit)
{
	struct hop_scan scan = { .at_line_start = 1 };
	char buf[16384];
	long long offset = 0;

	while (offset < size && !scan.header_ended && scan.hops <= limit) {
		size_t want = size - offset < (long long)sizeof buf ? (size_t)(size - offset) : sizeof buf;
		ssize_t n = pread(fd, buf, want, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		scan_octets(&scan, buf, (size_t)n);
		offset += n;
	}
	return scan.hops;
}

const char *
hopcount_check(struct session *s, char *reply, size_t replysize)
{
	const struct transaction *tx = &s->tx;
	long limit = (long)config_int("hopcount_limit");
	long hops = count_hops(tx->spool_fd, tx->spool_bytes, limit);

	if (hops < 0) {
		log_error("%s: reading the queue file for the hop count failed: %s", tx->queue_id,
		    strerror(errno));
		snprintf(reply, replysize, "451 4.3.0 Error: queue file read error, try again later");
		return reply;
	}
	if (hops <= limit)
		return NULL;

	log_warn("%s: more than hopcount_limit = %ld Received: and Delivered-To: fields, so the message is looping",
	    tx->queue_id, limit);
	snprintf(reply, replysize, "554 5.4.6 Error: too many hops");
	return reply;
}
