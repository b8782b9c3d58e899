/* IPC messages: fields, and their encoding into frames. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "ipc_frame.h"
#include "log.h"
#include "util.h"

struct ipc_msg *
ipc_msg_new(const char *type)
{
	struct ipc_msg *msg = xcalloc(1, sizeof *msg);

	msg->type = xstrdup(type);
	msg->fd = -1;
	return msg;
}

void
ipc_msg_free(struct ipc_msg *msg)
{
	if (msg == NULL)
		return;
	for (size_t i = 0; i < msg->nfields; i++) {
		free(msg->fields[i].key);
		free(msg->fields[i].value);
	}
	free(msg->fields);
	free(msg->type);
	if (msg->fd >= 0)
		close(msg->fd);
	free(msg);
}

static int
ipc_text_valid(const char *text)
{
	return strpbrk(text, "\r\n") == NULL;
}

int
ipc_msg_add(struct ipc_msg *msg, const char *key, const char *value)
{
	if (!ipc_text_valid(key) || strchr(key, '=') != NULL || !ipc_text_valid(value)) {
		errno = EINVAL;
		return -1;
	}
	if (msg->nfields == msg->capacity) {
		msg->capacity = msg->capacity ? msg->capacity * 2 : 8;
		msg->fields = xrealloc(msg->fields, msg->capacity * sizeof *msg->fields);
	}
	msg->fields[msg->nfields].key = xstrdup(key);
	msg->fields[msg->nfields].value = xstrdup(value);
	msg->nfields++;
	return 0;
}

int
ipc_msg_addf(struct ipc_msg *msg, const char *key, const char *fmt, ...)
{
	va_list ap;
	char *value;
	int rc;

	va_start(ap, fmt);
	if (vasprintf(&value, fmt, ap) < 0)
		fatal("vasprintf");
	va_end(ap);
	rc = ipc_msg_add(msg, key, value);
	free(value);
	return rc;
}

const char *
ipc_msg_get(const struct ipc_msg *msg, const char *key)
{
	return ipc_msg_get_nth(msg, key, 0);
}

long long
ipc_msg_get_int(const struct ipc_msg *msg, const char *key, long long default_value)
{
	const char *text = ipc_msg_get(msg, key);
	char *end;
	long long value;

	if (text == NULL || *text == '\0')
		return default_value;
	errno = 0;
	value = strtoll(text, &end, 10);
	if (*end != '\0' || errno != 0)
		return default_value;
	return value;
}

size_t
ipc_msg_count(const struct ipc_msg *msg, const char *key)
{
	size_t n = 0;

	for (size_t i = 0; i < msg->nfields; i++)
		if (strcmp(msg->fields[i].key, key) == 0)
			n++;
	return n;
}

const char *
ipc_msg_get_nth(const struct ipc_msg *msg, const char *key, size_t n)
{
	for (size_t i = 0; i < msg->nfields; i++)
		if (strcmp(msg->fields[i].key, key) == 0 && n-- == 0)
			return msg->fields[i].value;
	return NULL;
}

int
ipc_msg_take_fd(struct ipc_msg *msg)
{
	int fd = msg->fd;

	msg->fd = -1;
	return fd;
}

int
ipc_msg_encode(const struct ipc_msg *msg, char **out, size_t *outlen)
{
	size_t len = strlen(msg->type) + 1;
	uint32_t word;
	char *buf, *p;

	for (size_t i = 0; i < msg->nfields; i++)
		len += strlen(msg->fields[i].key) + 1 + strlen(msg->fields[i].value) + 1;
	if (len > IPC_MAX_FRAME) {
		errno = EMSGSIZE;
		return -1;
	}

	/* One more byte for the NUL that the last sprintf writes. */
	buf = xmalloc(IPC_HEADER_SIZE + len + 1);
	word = htonl((uint32_t)len);
	memcpy(buf, &word, 4);
	word = htonl(msg->fd >= 0 ? IPC_FLAG_FD : 0);
	memcpy(buf + 4, &word, 4);

	p = buf + IPC_HEADER_SIZE;
	p += sprintf(p, "%s\n", msg->type);
	for (size_t i = 0; i < msg->nfields; i++)
		p += sprintf(p, "%s=%s\n", msg->fields[i].key, msg->fields[i].value);

	*out = buf;
	*outlen = IPC_HEADER_SIZE + len;
	return 0;
}

struct ipc_msg *
ipc_msg_decode(const char *body, size_t len)
{
	struct ipc_msg *msg = NULL;
	const char *p = body, *end = body + len;

	if (len == 0 || body[len - 1] != '\n' || memchr(body, '\0', len) != NULL)
		return NULL;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line = xstrndup(p, (size_t)(nl - p));

		p = nl + 1;
		if (msg == NULL) {
			if (*line == '\0' || strchr(line, '=') != NULL) {
				free(line);
				return NULL;
			}
			msg = ipc_msg_new(line);
			free(line);
			continue;
		}
		char *eq = strchr(line, '=');
		if (eq == NULL || eq == line) {
			free(line);
			ipc_msg_free(msg);
			return NULL;
		}
		*eq = '\0';
		if (ipc_msg_add(msg, line, eq + 1) < 0) {
			free(line);
			ipc_msg_free(msg);
			return NULL;
		}
		free(line);
	}
	return msg;
}
