/*
 * Blocking client for user lookups over the Dovecot auth-master protocol,
 * as Dovecot's lib-auth (auth-master.c) speaks it: the client sends
 * "VERSION\t1\t0" followed by its request without waiting, the server
 * greets with "VERSION\t1\t1" and "SPID\tPID", and every reply carries
 * the request id. One connection is kept open between lookups.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "userdb.h"
#include "util.h"

#define USERDB_PROTOCOL_MAJOR	1
#define USERDB_PROTOCOL_MINOR	0

/* Longest reply line accepted (Dovecot's client allows 8192 bytes). */
#define USERDB_LINE_MAX		16384

struct userdb_client {
	char *socket_path;
	int fd;			/* -1 when not connected */
	int version_sent;
	int handshake_done;	/* the server's SPID line was read */
	unsigned int last_id;
	char in[USERDB_LINE_MAX];
	size_t inlen;
	size_t consumed;	/* bytes of in[] returned as lines already */
};

struct userdb_client *
userdb_client_new(const char *socket_path)
{
	struct userdb_client *client = xcalloc(1, sizeof *client);

	client->socket_path = xstrdup(socket_path);
	client->fd = -1;
	return client;
}

static void
client_disconnect(struct userdb_client *client)
{
	if (client->fd >= 0)
		close(client->fd);
	client->fd = -1;
	client->version_sent = 0;
	client->handshake_done = 0;
	client->inlen = 0;
	client->consumed = 0;
}

void
userdb_client_free(struct userdb_client *client)
{
	if (client == NULL)
		return;
	client_disconnect(client);
	free(client->socket_path);
	free(client);
}

char *
userdb_tab_escape(const char *text)
{
	char *out = xmalloc(strlen(text) * 2 + 1);
	char *o = out;

	for (const char *p = text; *p != '\0'; p++) {
		char code = 0;

		switch (*p) {
		case '\001':
			code = '1';
			break;
		case '\t':
			code = 't';
			break;
		case '\r':
			code = 'r';
			break;
		case '\n':
			code = 'n';
			break;
		}
		if (code != 0) {
			*o++ = '\001';
			*o++ = code;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

void
userdb_tab_unescape(char *text)
{
	char *o = text;

	for (const char *p = text; *p != '\0'; p++) {
		if (*p != '\001') {
			*o++ = *p;
			continue;
		}
		p++;
		if (*p == '\0')
			break;
		switch (*p) {
		case '1':
			*o++ = '\001';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case '0':
			/* An escaped NUL cannot live in a C string: the value ends here. */
			*o = '\0';
			return;
		default:
			*o++ = *p;
			break;
		}
	}
	*o = '\0';
}

static int
parse_id(const char *text, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long value;

	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	value = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || value > max)
		return -1;
	*out = value;
	return 0;
}

static int
copy_field(char *dst, size_t dstsize, const char *value)
{
	return strlcpy_x(dst, value, dstsize) < dstsize ? 0 : -1;
}

int
userdb_entry_parse(char *fields, struct userdb_entry *out)
{
	char *save = NULL, *field;
	unsigned long number;

	memset(out, 0, sizeof *out);
	out->uid = (uid_t)-1;
	out->gid = (gid_t)-1;

	/* strtok_r would merge empty fields, so split by hand. */
	field = fields;
	save = strchr(field, '\t');
	if (save != NULL)
		*save++ = '\0';
	userdb_tab_unescape(field);
	if (*field == '\0' || copy_field(out->user, sizeof out->user, field) < 0)
		return -1;

	while (save != NULL) {
		field = save;
		save = strchr(field, '\t');
		if (save != NULL)
			*save++ = '\0';
		userdb_tab_unescape(field);

		if (strncmp(field, "uid=", 4) == 0) {
			if (parse_id(field + 4, (uid_t)-1 - 1, &number) < 0)
				return -1;
			out->uid = (uid_t)number;
		} else if (strncmp(field, "gid=", 4) == 0) {
			if (parse_id(field + 4, (gid_t)-1 - 1, &number) < 0)
				return -1;
			out->gid = (gid_t)number;
		} else if (strncmp(field, "home=", 5) == 0) {
			if (copy_field(out->home, sizeof out->home, field + 5) < 0)
				return -1;
		} else if (strncmp(field, "mail=", 5) == 0) {
			if (copy_field(out->mail, sizeof out->mail, field + 5) < 0)
				return -1;
		}
	}
	return 0;
}

/* Wait until FD is ready for EVENTS or DEADLINE (monotonic_msec) passes. */
static int
wait_ready(int fd, short events, long long deadline, char *err, size_t errsize)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		long long left = deadline - monotonic_msec();
		int n;

		if (left <= 0) {
			snprintf(err, errsize, "timed out");
			return -1;
		}
		n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR) {
			snprintf(err, errsize, "poll failed: %s", strerror(errno));
			return -1;
		}
	}
}

static int
client_connect(struct userdb_client *client, char *err, size_t errsize)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlcpy_x(sun.sun_path, client->socket_path, sizeof sun.sun_path) >=
	    sizeof sun.sun_path) {
		snprintf(err, errsize, "socket path %s is too long", client->socket_path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errsize, "socket failed: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		snprintf(err, errsize, "connect to %s failed: %s", client->socket_path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	set_nonblocking(fd);
	client->fd = fd;
	return 0;
}

static int
client_send(struct userdb_client *client, const char *text, long long deadline,
    char *err, size_t errsize)
{
	size_t len = strlen(text);

	while (len > 0) {
		ssize_t n = send(client->fd, text, len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (wait_ready(client->fd, POLLOUT, deadline, err, errsize) < 0)
				return -1;
			continue;
		}
		if (n < 0) {
			snprintf(err, errsize, "write to %s failed: %s", client->socket_path,
			    strerror(errno));
			return -1;
		}
		text += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Return the next line, without its LF, in *LINE. The line stays valid
 * until the next call. Returns 0, or -1 with ERR on end of file, error,
 * timeout or a line longer than USERDB_LINE_MAX.
 */
static int
client_read_line(struct userdb_client *client, long long deadline, char **line,
    char *err, size_t errsize)
{
	if (client->consumed > 0) {
		memmove(client->in, client->in + client->consumed,
		    client->inlen - client->consumed);
		client->inlen -= client->consumed;
		client->consumed = 0;
	}

	for (;;) {
		char *lf = memchr(client->in, '\n', client->inlen);
		ssize_t n;

		if (lf != NULL) {
			*lf = '\0';
			*line = client->in;
			client->consumed = (size_t)(lf - client->in) + 1;
			return 0;
		}
		if (client->inlen == sizeof client->in) {
			snprintf(err, errsize, "reply from %s is longer than %d bytes",
			    client->socket_path, USERDB_LINE_MAX);
			return -1;
		}
		if (wait_ready(client->fd, POLLIN, deadline, err, errsize) < 0)
			return -1;
		n = recv(client->fd, client->in + client->inlen,
		    sizeof client->in - client->inlen, 0);
		if (n == 0) {
			snprintf(err, errsize, "connection closed by %s", client->socket_path);
			return -1;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			snprintf(err, errsize, "read from %s failed: %s", client->socket_path,
			    strerror(errno));
			return -1;
		}
		client->inlen += (size_t)n;
	}
}

/*
 * Read the server's greeting up to its SPID line. A Dovecot auth client
 * socket (the wrong one) greets with CUID and MECH lines instead.
 */
static int
client_read_handshake(struct userdb_client *client, long long deadline, char *err,
    size_t errsize)
{
	char *line;

	while (!client->handshake_done) {
		if (client_read_line(client, deadline, &line, err, errsize) < 0)
			return -1;
		if (strncmp(line, "VERSION\t", 8) == 0) {
			if (strtol(line + 8, NULL, 10) != USERDB_PROTOCOL_MAJOR) {
				snprintf(err, errsize,
				    "%s speaks auth-master protocol version %.20s, expected %d",
				    client->socket_path, line + 8, USERDB_PROTOCOL_MAJOR);
				return -1;
			}
		} else if (strncmp(line, "SPID\t", 5) == 0) {
			client->handshake_done = 1;
		} else if (strncmp(line, "CUID\t", 5) == 0 || strncmp(line, "MECH\t", 5) == 0) {
			snprintf(err, errsize,
			    "%s is an authentication client socket, not a userdb (auth-master) socket",
			    client->socket_path);
			return -1;
		}
	}
	return 0;
}

/*
 * Read replies until the one for request ID. Returns 1 (USER, fields in
 * *FIELDS), 0 (NOTFOUND), -2 (FAIL, so the server replied and the
 * connection stays usable) or -1 (I/O or protocol error). ERR has the reason.
 */
static int
client_read_reply(struct userdb_client *client, unsigned int id, long long deadline,
    char **fields, char *err, size_t errsize)
{
	char idtext[16];
	size_t idlen = (size_t)snprintf(idtext, sizeof idtext, "%u", id);

	for (;;) {
		char *line, *cmd_end, *rest;

		if (client_read_line(client, deadline, &line, err, errsize) < 0)
			return -1;
		cmd_end = strchr(line, '\t');
		if (cmd_end == NULL)
			continue;
		*cmd_end = '\0';
		rest = cmd_end + 1;
		if (strncmp(rest, idtext, idlen) != 0 || (rest[idlen] != '\t' && rest[idlen] != '\0'))
			continue;	/* a reply to an earlier, abandoned request */
		rest += idlen;
		if (*rest == '\t')
			rest++;

		if (strcmp(line, "USER") == 0) {
			*fields = rest;
			return 1;
		}
		if (strcmp(line, "NOTFOUND") == 0)
			return 0;
		if (strcmp(line, "FAIL") == 0) {
			char *reason = strstr(rest, "reason=");

			if (reason != NULL) {
				reason += 7;
				reason[strcspn(reason, "\t")] = '\0';
				userdb_tab_unescape(reason);
			}
			snprintf(err, errsize, "lookup failed on %s: %s", client->socket_path,
			    reason != NULL ? reason : "temporary failure");
			return -2;
		}
		snprintf(err, errsize, "unexpected reply \"%.40s\" from %s", line,
		    client->socket_path);
		return -1;
	}
}

static int
has_protocol_separator(const char *text)
{
	return strpbrk(text, "\t\r\n\001") != NULL;
}

/*
 * Send "COMMAND\tID\tARGS" on the current or a new connection and read
 * its reply. Returns as client_read_reply does, with the USER fields parsed into
 * OUT. *REUSED is set when the connection was open before, because then
 * an I/O error may only mean a stale connection.
 */
static int
client_exchange_once(struct userdb_client *client, const char *command, const char *args,
    long long deadline, struct userdb_entry *out, int *reused, char *err, size_t errsize)
{
	char request[1024];
	char *fields = NULL;
	unsigned int id;
	int rc;

	*reused = client->fd >= 0;
	if (client->fd < 0 && client_connect(client, err, errsize) < 0)
		return -1;

	id = ++client->last_id;
	if (id == 0)
		id = ++client->last_id;
	snprintf(request, sizeof request, "%s%s\t%u\t%s\n",
	    client->version_sent ? "" : "VERSION\t1\t0\n", command, id, args);
	if (client_send(client, request, deadline, err, errsize) < 0)
		return -1;
	client->version_sent = 1;

	if (client_read_handshake(client, deadline, err, errsize) < 0)
		return -1;
	rc = client_read_reply(client, id, deadline, &fields, err, errsize);
	if (rc <= 0)
		return rc;
	if (userdb_entry_parse(fields, out) < 0) {
		snprintf(err, errsize, "invalid USER reply to %s from %s", command,
		    client->socket_path);
		return -1;
	}
	return 1;
}

/* Run one exchange, and again on a new connection if the kept one was stale. */
static int
client_exchange(struct userdb_client *client, const char *command, const char *args,
    int timeout_ms, int retry, struct userdb_entry *out, char *err, size_t errsize)
{
	long long deadline = monotonic_msec() + timeout_ms;
	int rc, reused;

	rc = client_exchange_once(client, command, args, deadline, out, &reused, err, errsize);
	if (rc == -1 && retry && reused && monotonic_msec() < deadline) {
		/* The server may have closed the idle connection: retry on a new one. */
		client_disconnect(client);
		rc = client_exchange_once(client, command, args, deadline, out, &reused, err,
		    errsize);
	}
	if (rc == -1)
		client_disconnect(client);
	return rc;
}

int
userdb_client_connect(struct userdb_client *client, char *err, size_t errsize)
{
	if (client->fd >= 0)
		return 0;
	return client_connect(client, err, errsize);
}

int
userdb_lookup(struct userdb_client *client, const char *user, const char *service,
    int timeout_ms, struct userdb_entry *out, char *err, size_t errsize)
{
	char args[1024];
	int rc;

	/* Such a name cannot exist, and sending it would break the framing. */
	if (*user == '\0' || has_protocol_separator(user) || strlen(user) > 512)
		return 0;
	if (has_protocol_separator(service) || strlen(service) > 64) {
		snprintf(err, errsize, "invalid service name");
		return -1;
	}

	snprintf(args, sizeof args, "%s\tservice=%s", user, service);
	rc = client_exchange(client, "USER", args, timeout_ms, 1, out, err, errsize);
	return rc < 0 ? -1 : rc;
}

int
userdb_request(struct userdb_client *client, pid_t client_pid, unsigned auth_id,
    const char *cookie, int timeout_ms, struct userdb_entry *out, char *err, size_t errsize)
{
	char args[256];
	int rc;

	if (*cookie == '\0' || strspn(cookie, "0123456789abcdefABCDEF") != strlen(cookie) ||
	    strlen(cookie) > 128) {
		snprintf(err, errsize, "invalid cookie");
		return 0;
	}

	snprintf(args, sizeof args, "%ld\t%u\t%s", (long)client_pid, auth_id, cookie);
	/*
	 * No retry: a REQUEST that reached authd before the connection broke
	 * has used up the login, so sending it again could only fail.
	 */
	rc = client_exchange(client, "REQUEST", args, timeout_ms, 0, out, err, errsize);
	if (rc == 0)
		snprintf(err, errsize, "authenticated user not found on %s", client->socket_path);
	return rc == -2 ? 0 : rc;
}
