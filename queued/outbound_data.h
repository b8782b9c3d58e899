/*
 * The message content as the SMTP client sends it (RFC 5321 section
 * 4.5.2 and 4.5.3.1.6): LF becomes CRLF, a CR without LF after it
 * becomes a space, a line starting with "." gets another, and lines longer than 998 octets are broken, in the header
 * with a folding space so the field goes on, as Postfix does with
 * smtp_line_length_limit = 998 (Postfix 3.7 smtp(8)).
 */
#ifndef ESTAFETA_QUEUED_OUTBOUND_DATA_H
#define ESTAFETA_QUEUED_OUTBOUND_DATA_H

#include <stddef.h>

#include <event2/buffer.h>

#define OUTBOUND_LINE_MAX 998	/* octets before CRLF (RFC 5321 section 4.5.3.1.6) */

struct outbound_data {
	size_t line_length;	/* octets sent on the current line */
	int in_header;		/* no empty line seen yet */
	int at_line_start;
	size_t broken_lines;	/* lines broken because they were too long */
	size_t stuffed_dots;	/* dots added before lines that start with "." */
	int pending_cr;		/* the last octet added was a CR */
};

void outbound_data_init(struct outbound_data *data);

/* Append LEN octets of the spool file to OUT in SMTP form. */
void outbound_data_add(struct outbound_data *data, struct evbuffer *out,
    const char *buf, size_t len);

/* Append the end of the data (with a CRLF first if the last line had none). */
void outbound_data_finish(struct outbound_data *data, struct evbuffer *out);

/*
 * Return the message size as the SIZE parameter counts it (RFC 1870
 * section 3): the octets sent as message content, CRLF line ends
 * included, without dot-stuffing and the final ".". The content is the
 * CONVERTED_LEN octets at CONVERTED, or the file FD when CONVERTED is
 * NULL. Returns -1 on a read error.
 */
long long outbound_data_wire_size(int fd, const char *converted, size_t converted_len);

/* Return 1 if the file FD has an octet above 127, 0 if not, or -1 on a
 * read error. */
int outbound_data_has_8bit(int fd);

/* Return the same as outbound_data_has_8bit for the header only (up to
 * the first empty line). */
int outbound_data_header_has_8bit(int fd);

#endif
