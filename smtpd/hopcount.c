/*
 * Mail loop detection by hop count, like Postfix's hopcount_limit
 * (default 50), which counts Received: fields only (cleanup(8)).
 * Delivered-To: fields count too here, because deliverd adds one when
 * it forwards a message, a hop that adds no Received: field.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "hopcount.h"
#include "log.h"
#include "smtpd.h"

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
	scan->mid_line = 1;
	if (c == '\n') {
		scan->header_ended = 1;
		return;
	}
	scan->in_name = c != ' ' && c != '\t';
	scan->name_length = 0;
}

void
hopcount_scan(struct hop_scan *scan, const char *buf, size_t len)
{
	for (size_t i = 0; i < len && !scan->header_ended; i++) {
		char c = buf[i];

		if (!scan->mid_line) {
			start_line(scan, c);
			if (scan->header_ended)
				return;
		}

		if (c == '\n') {
			/* A line without a colon is not a field, so the body starts there. */
			if (scan->in_name)
				scan->header_ended = 1;
			scan->mid_line = 0;
		} else if (scan->in_name && c == ':') {
			if (is_hop_field(scan->name, scan->name_length))
				scan->hops++;
			scan->in_name = 0;
		} else if (scan->in_name && scan->name_length < sizeof scan->name) {
			scan->name[scan->name_length++] = c;
		}
	}
}

const char *
hopcount_check(struct session *s, char *reply, size_t replysize)
{
	const struct transaction *tx = &s->tx;
	long limit = (long)config_int("hopcount_limit");

	if (tx->hops.hops <= limit)
		return NULL;

	log_warn("%s: more than hopcount_limit = %ld Received: and Delivered-To: fields, so the message is looping",
	    tx->queue_id, limit);
	snprintf(reply, replysize, "554 5.4.6 Error: too many hops");
	return reply;
}
