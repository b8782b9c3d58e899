/* Blocking client of the Dovecot authentication protocol (see auth_client.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth_client.h"
#include "auth_proto.h"
#include "tls.h"
#include "userdb.h"
#include "util.h"

#define AUTH_LINE_MAX	16384
/* Protocol 1.3 (Dovecot 2.4) carries channel binding data, so authd offers -PLUS mechanisms. */
#define AUTH_PROTOCOL_MINOR	3

struct auth_client {
	int fd;
	int timeout_ms;
	unsigned last_id;
	char cookie[129];
	char mechs[256];	/* " PLAIN LOGIN " */
	SSL *ssl;		/* the authenticating connection's TLS, or NULL */
	char cbind_type[32];	/* channel binding type authd asked for, "" when none */
	char in[AUTH_LINE_MAX];
	size_t inlen;
};

/* Read one LF-terminated line into a new string. NULL on EOF, timeout or overflow. */
static char *
read_line(struct auth_client *client)
{
	long long deadline = now_usec() + (long long)client->timeout_ms * 1000;

	for (;;) {
		char *lf = memchr(client->in, '\n', client->inlen);
		struct pollfd pfd = { .fd = client->fd, .events = POLLIN };
		long long left;
		ssize_t n;

		if (lf != NULL) {
			size_t len = (size_t)(lf - client->in);
			char *line = xstrndup(client->in, len);

			memmove(client->in, lf + 1, client->inlen - len - 1);
			client->inlen -= len + 1;
			return line;
		}
		if (client->inlen == sizeof client->in)
			return NULL;
		left = (deadline - now_usec()) / 1000;
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return NULL;
		n = read(client->fd, client->in + client->inlen, sizeof client->in - client->inlen);
		if (n <= 0)
			return NULL;
		client->inlen += (size_t)n;
	}
}

static int
read_handshake(struct auth_client *client, char *err, size_t errsize)
{
	for (;;) {
		char *line = read_line(client);
		char *fields[4];
		size_t n = 0;

		if (line == NULL) {
			snprintf(err, errsize, "no handshake from authd");
			return -1;
		}
		for (char *p = line, *tab; n < 4; p = tab + 1) {
			fields[n++] = p;
			tab = strchr(p, '\t');
			if (tab == NULL)
				break;
			*tab = '\0';
		}
		if (strcmp(fields[0], "VERSION") == 0 && (n < 2 || strcmp(fields[1], "1") != 0)) {
			snprintf(err, errsize, "authd speaks an unsupported protocol version");
			free(line);
			return -1;
		}
		if (strcmp(fields[0], "MECH") == 0 && n >= 2 &&
		    strlen(client->mechs) + strlen(fields[1]) + 2 < sizeof client->mechs) {
			strcat(client->mechs, fields[1]);
			strcat(client->mechs, " ");
		}
		if (strcmp(fields[0], "COOKIE") == 0 && n >= 2)
			strlcpy_x(client->cookie, fields[1], sizeof client->cookie);
		if (strcmp(fields[0], "DONE") == 0) {
			free(line);
			break;
		}
		free(line);
	}
	if (client->cookie[0] == '\0') {
		snprintf(err, errsize, "authd sent no COOKIE in its handshake");
		return -1;
	}
	return 0;
}

struct auth_client *
auth_client_connect(const char *path, int timeout_ms, char *err, size_t errsize)
{
	struct auth_client *client = xcalloc(1, sizeof *client);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char hello[64];

	client->timeout_ms = timeout_ms;
	strcpy(client->mechs, " ");
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(err, errsize, "auth socket path too long: %s", path);
		free(client);
		return NULL;
	}
	strcpy(sun.sun_path, path);
	client->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (client->fd < 0 || connect(client->fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		snprintf(err, errsize, "connect to %s: %s", path, strerror(errno));
		auth_client_free(client);
		return NULL;
	}
	snprintf(hello, sizeof hello, "VERSION\t1\t%d\nCPID\t%ld\n", AUTH_PROTOCOL_MINOR,
	    (long)getpid());
	if (write_all(client->fd, hello, strlen(hello)) < 0) {
		snprintf(err, errsize, "write to %s: %s", path, strerror(errno));
		auth_client_free(client);
		return NULL;
	}
	if (read_handshake(client, err, errsize) < 0) {
		auth_client_free(client);
		return NULL;
	}
	return client;
}

void
auth_client_free(struct auth_client *client)
{
	if (client == NULL)
		return;
	if (client->fd >= 0)
		close(client->fd);
	explicit_bzero(client->in, sizeof client->in);
	free(client);
}

const char *
auth_client_cookie(const struct auth_client *client)
{
	return client->cookie;
}

int
auth_client_has_mech(const struct auth_client *client, const char *mech)
{
	char word[64];

	snprintf(word, sizeof word, " %s ", mech);
	return strstr(client->mechs, word) != NULL;
}

const char *
auth_client_mechanisms(const struct auth_client *client)
{
	static char list[sizeof client->mechs];
	size_t len;

	strlcpy_x(list, client->mechs + 1, sizeof list);
	len = strlen(list);
	if (len > 0)
		list[len - 1] = '\0';
	return list;
}

void
auth_client_set_tls(struct auth_client *client, SSL *ssl)
{
	client->ssl = ssl;
}

static int
send_line(struct auth_client *client, char *line)
{
	int r = write_all(client->fd, line, strlen(line));

	explicit_bzero(line, strlen(line));
	free(line);
	return r;
}

unsigned
auth_client_begin(struct auth_client *client, const char *mech, const char *resp,
    const char *rip, const char *lip, int secured)
{
	unsigned id = ++client->last_id;
	char *line;

	const char *transport = "";

	if (client->ssl != NULL)
		transport = "\tsecured=tls";
	else if (secured)
		transport = "\tsecured";
	client->cbind_type[0] = '\0';
	line = xasprintf("AUTH\t%u\t%s\tservice=imap%s%s%s%s%s%s%s\n", id, mech, transport,
	    rip[0] != '\0' ? "\trip=" : "", rip,
	    lip[0] != '\0' ? "\tlip=" : "", lip,
	    resp != NULL ? "\tresp=" : "", resp != NULL ? resp : "");
	if (send_line(client, line) < 0)
		return 0;
	return id;
}

/*
 * The "\tchannel_binding=BASE64" field with the data of the type authd
 * asked for, or "" when it asked for none. When the data cannot be had
 * (no TLS, or tls-unique on TLS 1.3), the field is left out and authd
 * fails the attempt.
 */
static char *
channel_binding_field(struct auth_client *client)
{
	unsigned char data[TLS_CHANNEL_BINDING_MAX];
	char encoded[4 * ((TLS_CHANNEL_BINDING_MAX + 2) / 3) + 1];
	enum tls_channel_binding_type type;
	int len = -1;

	if (client->cbind_type[0] == '\0' || client->ssl == NULL)
		return xstrdup("");
	if (strcmp(client->cbind_type, "tls-exporter") == 0 ||
	    strcmp(client->cbind_type, "tls-unique") == 0) {
		type = client->cbind_type[4] == 'e' ? TLS_CB_EXPORTER : TLS_CB_UNIQUE;
		len = tls_channel_binding(client->ssl, type, data, sizeof data);
	}
	client->cbind_type[0] = '\0';
	if (len <= 0)
		return xstrdup("");
	EVP_EncodeBlock((unsigned char *)encoded, data, len);
	return xasprintf("\tchannel_binding=%s", encoded);
}

int
auth_client_continue(struct auth_client *client, unsigned id, const char *resp)
{
	char *cbind = channel_binding_field(client);
	char *line = xasprintf("CONT\t%u\t%s%s\n", id, resp, cbind);

	free(cbind);
	return send_line(client, line);
}

enum auth_reply_kind
auth_client_reply(struct auth_client *client, unsigned id, char **data)
{
	char *line, *kind, *rest, *idtext;
	enum auth_reply_kind result = AUTH_REPLY_ERROR;

	*data = NULL;
	while ((line = read_line(client)) != NULL) {
		kind = line;
		idtext = strchr(kind, '\t');
		if (idtext == NULL) {
			free(line);
			continue;
		}
		*idtext++ = '\0';
		rest = strchr(idtext, '\t');
		if (rest != NULL)
			*rest++ = '\0';
		else
			rest = idtext + strlen(idtext);
		if (strtoul(idtext, NULL, 10) != id) {
			free(line);
			continue;
		}
		if (strcmp(kind, "CONT") == 0) {
			char *params = strchr(rest, '\t');

			/* CONT\tID\tBASE64[\tchannel_binding=TYPE] */
			if (params != NULL) {
				*params++ = '\0';
				strlcpy_x(client->cbind_type, auth_proto_field(params, "channel_binding"),
				    sizeof client->cbind_type);
			}
			result = AUTH_REPLY_CONT;
			*data = xstrdup(rest);
		} else if (strcmp(kind, "OK") == 0) {
			char *user = xstrdup(auth_proto_field(rest, "user"));

			userdb_tab_unescape(user);
			result = user[0] != '\0' ? AUTH_REPLY_OK : AUTH_REPLY_ERROR;
			*data = user;
		} else if (strcmp(kind, "FAIL") == 0) {
			char *copy = xstrdup(rest);

			result = auth_proto_has_field(rest, "temp") ?
			    AUTH_REPLY_TEMPFAIL : AUTH_REPLY_FAIL;
			*data = xstrdup(auth_proto_field(copy, "reason"));
			free(copy);
		}
		free(line);
		return result;
	}
	return AUTH_REPLY_ERROR;
}
