/*
 * The hop count of a message: its Received: and Delivered-To: fields,
 * each added by one host or delivery it went through. A message with
 * more than hopcount_limit of them is taken to be in a mail loop.
 */
#ifndef ESTAFETA_SMTPD_HOPCOUNT_H
#define ESTAFETA_SMTPD_HOPCOUNT_H

#include <stddef.h>

struct session;

/* Octets of a field name kept for the comparison: "Delivered-To" and room. */
#define HOPCOUNT_NAME_KEPT 16

/* The count of hop fields in a header section, fed as it is written.
 * All zero is the state before the first octet. */
struct hop_scan {
	char name[HOPCOUNT_NAME_KEPT];
	size_t name_length;
	int in_name;		/* reading the field name of the current line */
	int mid_line;		/* 0 at the start of a line */
	int header_ended;
	long hops;
};

/* Count the hop fields in the next LEN octets of the header section. */
void hopcount_scan(struct hop_scan *scan, const char *buf, size_t len);

/*
 * Check the hops counted in the transaction on S, smtpd's own Received:
 * field included. Returns NULL when the message may be queued, or REPLY
 * set to 554 5.4.6 for too many hops.
 */
const char *hopcount_check(struct session *s, char *reply, size_t replysize);

#endif
