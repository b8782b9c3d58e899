/*
 * Reading the message from standard input, as Postfix's sendmail does.
 * CRLF line ends become LF, and a CR elsewhere stays. Leading "From "
 * lines (mbox separators, also ">From ") are dropped. Unless -i was
 * given, a line with only "." ends the input.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sendmail.h"
#include "util.h"

static void
message_append(struct message *msg, size_t *capacity, const char *data, size_t len)
{
	if (msg->len + len + 1 > *capacity) {
		while (msg->len + len + 1 > *capacity)
			*capacity = *capacity == 0 ? 65536 : *capacity * 2;
		msg->data = xrealloc(msg->data, *capacity);
	}
	memcpy(msg->data + msg->len, data, len);
	msg->len += len;
	msg->data[msg->len] = '\0';
}

static int
is_from_line(const char *line, size_t len)
{
	size_t skip = 0;

	while (skip < len && line[skip] == '>')
		skip++;
	return len - skip >= 5 && memcmp(line + skip, "From ", 5) == 0;
}

int
message_read(FILE *in, int dot_ends, long long max_size, struct message *msg)
{
	size_t capacity = 0, linecap = 0;
	char *line = NULL;
	int at_start = 1;
	ssize_t n;

	memset(msg, 0, sizeof *msg);
	message_append(msg, &capacity, "", 0);

	errno = 0;
	while ((n = getline(&line, &linecap, in)) > 0) {
		size_t len = (size_t)n;

		/* The line without its end; a missing final LF is added. */
		if (line[len - 1] == '\n')
			len--;
		if (len > 0 && line[len - 1] == '\r')
			len--;

		if (at_start && is_from_line(line, len))
			continue;
		at_start = 0;
		if (dot_ends && len == 1 && line[0] == '.')
			break;

		if (max_size > 0 && (long long)(msg->len + len + 1) > max_size) {
			free(line);
			return MESSAGE_TOO_LARGE;
		}
		message_append(msg, &capacity, line, len);
		message_append(msg, &capacity, "\n", 1);
	}
	free(line);
	if (ferror(in))
		return MESSAGE_READ_ERROR;
	return 0;
}

void
message_free(struct message *msg)
{
	free(msg->data);
	memset(msg, 0, sizeof *msg);
}
