/* The message content in SMTP form: CRLF, dot-stuffing, line length. */
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "outbound_data.h"

void
outbound_data_init(struct outbound_data *data)
{
	data->line_length = 0;
	data->in_header = 1;
	data->at_line_start = 1;
	data->broken_lines = 0;
	data->stuffed_dots = 0;
	data->pending_cr = 0;
}

/* Output collected before it goes to the evbuffer in one call. */
struct chunk {
	char bytes[8192];
	size_t length;
};

static void
put(struct chunk *chunk, struct evbuffer *out, const char *bytes, size_t length)
{
	if (chunk->length + length > sizeof chunk->bytes) {
		evbuffer_add(out, chunk->bytes, chunk->length);
		chunk->length = 0;
	}
	memcpy(chunk->bytes + chunk->length, bytes, length);
	chunk->length += length;
}

static void
end_line(struct outbound_data *data, struct chunk *chunk, struct evbuffer *out)
{
	if (data->at_line_start)
		data->in_header = 0;	/* the empty line after the header */
	put(chunk, out, "\r\n", 2);
	data->line_length = 0;
	data->at_line_start = 1;
}

/* Append octet C of a line: break the line at OUTBOUND_LINE_MAX and
 * dot-stuff it when it starts with ".". */
static void
put_octet(struct outbound_data *data, struct chunk *chunk, struct evbuffer *out, char c)
{
	if (data->line_length >= OUTBOUND_LINE_MAX) {
		put(chunk, out, data->in_header ? "\r\n " : "\r\n", data->in_header ? 3 : 2);
		data->line_length = data->in_header ? 1 : 0;
		data->at_line_start = !data->in_header;
		data->broken_lines++;
	}
	if (data->at_line_start && c == '.') {
		put(chunk, out, ".", 1);
		data->line_length++;
		data->stuffed_dots++;
	}
	put(chunk, out, &c, 1);
	data->line_length++;
	data->at_line_start = 0;
}

/*
 * A CR of the spool file waits in data->pending_cr for the next octet,
 * which may come in the next call. Before LF it is dropped, because
 * end_line sends CRLF. Any other CR becomes a space, as Postfix's
 * cleanup_replace_stray_cr_lf = yes does (the default in Postfix 3.7.11).
 * SMTP allows CR only in CRLF (RFC 5321 section 2.3.8), and a receiver
 * that ends lines at a bare CR would read "<CR>.<CR>" as the end of
 * the data and the octets after it as commands (SMTP smuggling).
 * NOTE: Postfix replaces at queue time, before signing. Here filterd's
 * DKIM signature covers the queued body with the CR, so a signed message
 * with a bare CR in its body may fail verification at the receiver.
 */
void
outbound_data_add(struct outbound_data *data, struct evbuffer *out, const char *buf,
    size_t len)
{
	struct chunk chunk = { .length = 0 };

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		if (data->pending_cr) {
			data->pending_cr = 0;
			if (c != '\n')
				put_octet(data, &chunk, out, ' ');
		}

		if (c == '\n')
			end_line(data, &chunk, out);
		else if (c == '\r')
			data->pending_cr = 1;
		else
			put_octet(data, &chunk, out, c);
	}
	evbuffer_add(out, chunk.bytes, chunk.length);
}

void
outbound_data_finish(struct outbound_data *data, struct evbuffer *out)
{
	struct chunk chunk = { .length = 0 };

	if (data->pending_cr) {
		data->pending_cr = 0;
		put_octet(data, &chunk, out, ' ');
	}
	if (!data->at_line_start)
		put(&chunk, out, "\r\n", 2);
	put(&chunk, out, ".\r\n", 3);
	evbuffer_add(out, chunk.bytes, chunk.length);
}

/* Add LEN octets at BUF to DATA and count the output into TOTAL. */
static void
measure(struct outbound_data *data, struct evbuffer *scratch, const char *buf, size_t len,
    long long *total)
{
	outbound_data_add(data, scratch, buf, len);
	*total += (long long)evbuffer_get_length(scratch);
	evbuffer_drain(scratch, evbuffer_get_length(scratch));
}

long long
outbound_data_wire_size(int fd, const char *converted, size_t converted_len)
{
	char buf[64 * 1024];
	struct evbuffer *scratch = evbuffer_new();
	struct outbound_data data;
	long long total = 0;
	off_t offset = 0;
	ssize_t n = 0;

	if (scratch == NULL)
		return -1;
	outbound_data_init(&data);
	if (converted != NULL) {
		measure(&data, scratch, converted, converted_len, &total);
	} else {
		while ((n = pread(fd, buf, sizeof buf, offset)) > 0) {
			measure(&data, scratch, buf, (size_t)n, &total);
			offset += n;
		}
	}
	outbound_data_finish(&data, scratch);
	total += (long long)evbuffer_get_length(scratch);
	evbuffer_free(scratch);
	if (n < 0)
		return -1;

	/* outbound_data_finish ends with ".\r\n", which SIZE leaves out. */
	return total - (long long)data.stuffed_dots - 3;
}

int
outbound_data_has_8bit(int fd)
{
	unsigned char buf[65536];
	off_t offset = 0;
	ssize_t n;

	while ((n = pread(fd, buf, sizeof buf, offset)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] > 127)
				return 1;
		offset += n;
	}
	return n < 0 ? -1 : 0;
}

int
outbound_data_header_has_8bit(int fd)
{
	unsigned char buf[65536];
	off_t offset = 0;
	int at_line_start = 1;
	ssize_t n;

	while ((n = pread(fd, buf, sizeof buf, offset)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] > 127)
				return 1;
			if (buf[i] == '\n' && at_line_start)
				return 0;	/* the empty line ends the header */
			if (buf[i] != '\r')
				at_line_start = buf[i] == '\n';
		}
		offset += n;
	}
	return n < 0 ? -1 : 0;
}
