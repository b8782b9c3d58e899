/*
 * Asynchronous Dovecot authentication protocol client for smtpd (see
 * auth_client.h). The client sends
 *
 *   VERSION\t1\t3  CPID\tPID  AUTH\t1\tMECH\tservice=smtp\t...
 *
 * at once, then CONT\t1\tBASE64 for each challenge. authd replies
 * CONT\t1\tBASE64, OK\t1\tuser=NAME or FAIL\t1\t... with "temp" for a
 * temporary failure. authd sends its handshake (VERSION, MECH..., SPID,
 * CUID, COOKIE, DONE) after the client's VERSION, and offers SCRAM-
 * SHA-256-PLUS only to minor version 3 or later. For it, a challenge
 * carries channel_binding=TYPE, and the response to it carries the TLS
 * channel-binding data: CONT\t1\tBASE64\tchannel_binding=BASE64_DATA.
 * imapd/auth_client.c speaks the same protocol, but blocking.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth_client.h"
#include "auth_proto.h"
#include "ipc.h"
#include "log.h"
#include "userdb.h"
#include "util.h"

/* Maximum length of a line from authd, the same as authd's limit for requests. */
#define AUTH_LINE_MAX		16384
#define AUTH_MECHANISMS_MAX	512
#define AUTH_REQUEST_ID		1	/* one exchange per connection */

struct auth_client {
	struct event_base *base;
	char *socket_path;
	long long timeout;			/* seconds per reply */
	char mechanisms[AUTH_MECHANISMS_MAX];	/* " PLAIN LOGIN ", or "" */
	struct auth_request *probe;		/* a handshake for the mechanism list */
};

struct auth_request {
	struct auth_client *client;
	struct bufferevent *bev;
	struct event *timer;
	char mechanisms[AUTH_MECHANISMS_MAX];	/* collected from MECH lines until DONE */
	char cbind_type[32];			/* channel_binding= of the last challenge, or "" */
	auth_result_cb cb;			/* NULL for a probe */
	void *arg;
};

struct auth_client *
auth_client_new(struct event_base *base, const char *socket_path, long long timeout)
{
	struct auth_client *client = xcalloc(1, sizeof *client);

	client->base = base;
	client->socket_path = xstrdup(socket_path);
	client->timeout = timeout;
	return client;
}

static void
request_free(struct auth_request *request)
{
	if (request == NULL)
		return;
	if (request->client->probe == request)
		request->client->probe = NULL;
	if (request->bev != NULL)
		bufferevent_free(request->bev);
	if (request->timer != NULL)
		event_free(request->timer);
	free(request);
}

void
auth_client_free(struct auth_client *client)
{
	if (client == NULL)
		return;
	request_free(client->probe);
	free(client->socket_path);
	free(client);
}

const char *
auth_client_mechanisms(const struct auth_client *client)
{
	return client->mechanisms[0] == ' ' ? client->mechanisms + 1 : client->mechanisms;
}

int
auth_client_has_mechanism(const struct auth_client *client, const char *mechanism)
{
	char word[80];

	if (strlen(mechanism) > 64)
		return 0;
	snprintf(word, sizeof word, " %s ", mechanism);
	return strstr(client->mechanisms, word) != NULL;
}

/* Run the callback with a final RESULT and free the request. */
static void
request_finish(struct auth_request *request, enum auth_result result, const char *data)
{
	auth_result_cb cb = request->cb;
	void *arg = request->arg;

	request_free(request);
	if (cb != NULL)
		cb(arg, result, data);
}

static void
request_restart_timer(struct auth_request *request)
{
	struct timeval tv = { .tv_sec = (time_t)request->client->timeout };

	evtimer_add(request->timer, &tv);
}

/* A mechanism name from authd is used in replies: letters, digits, '-' and '_' only. */
static int
mechanism_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 64)
		return 0;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == len;
}

/*
 * Handle a handshake line. Returns 0 when the line is not one, 1 when
 * it is, 2 when it ended a probe, which is then freed.
 */
static int
handle_handshake(struct auth_request *request, const char *command, char *rest)
{
	struct auth_client *client = request->client;

	if (strcmp(command, "MECH") == 0) {
		size_t used = strlen(request->mechanisms);

		rest[strcspn(rest, "\t")] = '\0';
		if (mechanism_name_valid(rest) &&
		    used + strlen(rest) + 2 < sizeof request->mechanisms)
			snprintf(request->mechanisms + used, sizeof request->mechanisms - used,
			    "%s%s ", used == 0 ? " " : "", rest);
		return 1;
	}
	if (strcmp(command, "DONE") == 0) {
		if (strcmp(client->mechanisms, request->mechanisms) != 0)
			log_info("auth: mechanisms of %s: %s", client->socket_path,
			    request->mechanisms[0] != '\0' ? request->mechanisms + 1 : "none");
		strlcpy_x(client->mechanisms, request->mechanisms, sizeof client->mechanisms);
		if (request->cb != NULL)
			return 1;
		request_free(request);
		return 2;
	}
	return strcmp(command, "VERSION") == 0 || strcmp(command, "SPID") == 0 ||
	    strcmp(command, "CUID") == 0 || strcmp(command, "COOKIE") == 0;
}

/*
 * Handle one line. Returns 0 while the request lives, 1 once it is
 * finished and freed.
 */
static int
handle_line(struct auth_request *request, char *line)
{
	char *command = line, *id_text, *rest, *end;
	unsigned long id;

	rest = strchr(line, '\t');
	if (rest != NULL)
		*rest++ = '\0';
	else
		rest = line + strlen(line);
	switch (handle_handshake(request, command, rest)) {
	case 1:
		return 0;
	case 2:
		return 1;
	}

	id_text = rest;
	rest = strchr(id_text, '\t');
	if (rest != NULL)
		*rest++ = '\0';
	else
		rest = id_text + strlen(id_text);
	errno = 0;
	id = strtoul(id_text, &end, 10);
	if (errno != 0 || *end != '\0' || id != AUTH_REQUEST_ID)
		return 0;

	if (strcmp(command, "CONT") == 0) {
		char *fields = strchr(rest, '\t');

		request->cbind_type[0] = '\0';
		if (fields != NULL) {
			const char *type;

			*fields++ = '\0';
			type = auth_proto_field(fields, "channel_binding");
			log_sanitize(request->cbind_type, sizeof request->cbind_type, type,
			    strlen(type));
		}
		/* The client's response is due now, and smtpd_timeout bounds
		 * that wait: smtpd_auth_timeout covers authd's replies only. */
		evtimer_del(request->timer);
		request->cb(request->arg, AUTH_RESULT_CONTINUE, rest);
		return 0;
	}
	if (strcmp(command, "OK") == 0) {
		char *user = xstrdup(auth_proto_field(rest, "user"));

		userdb_tab_unescape(user);
		if (user[0] == '\0')
			request_finish(request, AUTH_RESULT_TEMPFAIL, "authd sent OK without a user");
		else
			request_finish(request, AUTH_RESULT_OK, user);
		free(user);
		return 1;
	}
	if (strcmp(command, "FAIL") == 0) {
		int temporary = auth_proto_has_field(rest, "temp");
		char *reason = xstrdup(auth_proto_field(rest, "reason"));

		userdb_tab_unescape(reason);
		request_finish(request, temporary ? AUTH_RESULT_TEMPFAIL : AUTH_RESULT_FAIL, reason);
		free(reason);
		return 1;
	}
	return 0;
}

static void
request_read_cb(struct bufferevent *bev, void *arg)
{
	struct auth_request *request = arg;
	struct evbuffer *input = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(input, &len, EVBUFFER_EOL_LF)) != NULL) {
		int finished = handle_line(request, line);

		explicit_bzero(line, len);
		free(line);
		if (finished)
			return;
	}
	if (evbuffer_get_length(input) > AUTH_LINE_MAX) {
		log_warn("auth: reply line longer than %d bytes from %s", AUTH_LINE_MAX,
		    request->client->socket_path);
		request_finish(request, AUTH_RESULT_TEMPFAIL, "reply line too long");
	}
}

static void
request_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct auth_request *request = arg;

	if (what & BEV_EVENT_ERROR)
		log_warn("auth: connection to %s failed: %s", request->client->socket_path,
		    strerror(errno));
	else if (request->cb != NULL)
		log_warn("auth: %s closed the connection during an exchange",
		    request->client->socket_path);
	request_finish(request, AUTH_RESULT_TEMPFAIL, "lost the connection to authd");
}

static void
request_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_request *request = arg;

	log_warn("auth: no reply from %s within %llds", request->client->socket_path,
	    request->client->timeout);
	request_finish(request, AUTH_RESULT_TEMPFAIL, "authd timed out");
}

/* Connect and send the client handshake. Returns NULL with ERR set. */
static struct auth_request *
request_new(struct auth_client *client, auth_result_cb cb, void *arg, char *err,
    size_t errsize)
{
	struct auth_request *request;
	int sock = ipc_connect(client->socket_path);

	if (sock < 0) {
		snprintf(err, errsize, "cannot connect to %s: %s", client->socket_path,
		    strerror(errno));
		return NULL;
	}
	set_nonblocking(sock);

	request = xcalloc(1, sizeof *request);
	request->client = client;
	request->cb = cb;
	request->arg = arg;
	request->bev = bufferevent_socket_new(client->base, sock, BEV_OPT_CLOSE_ON_FREE);
	if (request->bev == NULL) {
		close(sock);
		free(request);
		snprintf(err, errsize, "cannot set up a connection to %s", client->socket_path);
		return NULL;
	}
	request->timer = evtimer_new(client->base, request_timeout_cb, request);
	bufferevent_setcb(request->bev, request_read_cb, NULL, request_event_cb, request);
	bufferevent_enable(request->bev, EV_READ | EV_WRITE);
	evbuffer_add_printf(bufferevent_get_output(request->bev), "VERSION\t1\t3\nCPID\t%ld\n",
	    (long)getpid());
	request_restart_timer(request);
	return request;
}

void
auth_client_refresh_mechanisms(struct auth_client *client)
{
	char err[256];

	if (client->probe != NULL)
		return;
	client->probe = request_new(client, NULL, NULL, err, sizeof err);
	if (client->probe == NULL)
		log_warn("auth: cannot fetch the mechanism list: %s", err);
}

struct auth_request *
auth_client_begin(struct auth_client *client, const struct auth_request_params *params,
    auth_result_cb cb, void *arg, char *err, size_t errsize)
{
	struct auth_request *request = request_new(client, cb, arg, err, errsize);
	struct evbuffer *output;

	if (request == NULL)
		return NULL;
	output = bufferevent_get_output(request->bev);
	evbuffer_add_printf(output, "AUTH\t%d\t%s\tservice=smtp", AUTH_REQUEST_ID,
	    params->mechanism);
	if (params->tls)
		evbuffer_add_printf(output, "\tsecured=tls");
	else if (params->secured)
		evbuffer_add_printf(output, "\tsecured");
	if (params->remote_ip != NULL && params->remote_ip[0] != '\0')
		evbuffer_add_printf(output, "\trip=%s", params->remote_ip);
	if (params->local_ip != NULL && params->local_ip[0] != '\0')
		evbuffer_add_printf(output, "\tlip=%s", params->local_ip);
	if (params->initial_response != NULL)
		evbuffer_add_printf(output, "\tresp=%s", params->initial_response);
	evbuffer_add(output, "\n", 1);
	return request;
}

const char *
auth_request_channel_binding_type(const struct auth_request *request)
{
	return request->cbind_type[0] != '\0' ? request->cbind_type : NULL;
}

void
auth_client_continue(struct auth_request *request, const char *response,
    const char *cbind_data)
{
	struct evbuffer *output = bufferevent_get_output(request->bev);

	evbuffer_add_printf(output, "CONT\t%d\t%s", AUTH_REQUEST_ID, response);
	if (cbind_data != NULL)
		evbuffer_add_printf(output, "\tchannel_binding=%s", cbind_data);
	evbuffer_add(output, "\n", 1);
	request_restart_timer(request);
}

void
auth_client_cancel(struct auth_request *request)
{
	request_free(request);
}
