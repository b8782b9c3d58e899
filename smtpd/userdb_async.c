/*
 * Asynchronous user lookups in authd's userdb over the Dovecot
 * auth-master protocol, on smtpd's event loop. lib/userdb.c speaks the
 * same protocol, but it blocks. This client shares one connection
 * between every session and matches replies to requests by their id.
 * So a slow authd delays only the sessions that wait for it.
 *
 * Lookup results (found or not found, but not failures) are cached for
 * smtpd_userdb_cache_time in a fixed table of USERDB_CACHE_SLOTS entries,
 * one slot per hash of the name. A busy session to the same mailboxes
 * therefore does not query authd again for every RCPT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "userdb.h"
#include "userdb_async.h"
#include "util.h"

/* Longest reply line accepted, as in lib/userdb.c. */
#define USERDB_LINE_MAX 16384

#define USERDB_CACHE_SLOTS 4096

/* One cached lookup result: the name, found (1) or not (0), and its expiry time. */
struct userdb_cache_entry {
	char *user;
	int result;
	time_t expires;
};

struct userdb_request {
	TAILQ_ENTRY(userdb_request) entry;
	struct userdb_async *client;
	unsigned id;
	struct event *timer;
	userdb_async_cb cb;
	void *arg;
	char *user;		/* for the cache */
};

struct userdb_async {
	struct event_base *base;
	char *socket_path;
	long long timeout;		/* seconds per request */
	struct bufferevent *bev;	/* NULL when not connected */
	unsigned last_id;
	TAILQ_HEAD(, userdb_request) requests;
	long long cache_time;		/* seconds; 0 turns the cache off */
	struct userdb_cache_entry *cache;
};

struct userdb_async *
userdb_async_new(struct event_base *base, const char *socket_path, long long timeout)
{
	struct userdb_async *client = xcalloc(1, sizeof *client);

	client->base = base;
	client->socket_path = xstrdup(socket_path);
	client->timeout = timeout;
	TAILQ_INIT(&client->requests);
	client->cache_time = config_time("smtpd_userdb_cache_time");
	if (client->cache_time > 0)
		client->cache = xcalloc(USERDB_CACHE_SLOTS, sizeof *client->cache);
	return client;
}

/* Return the slot of the cache for USER. */
static size_t
cache_slot(const char *user)
{
	return hash_fnv1a(user) % USERDB_CACHE_SLOTS;
}

/* Return the cached result for USER: 1 found, 0 not found, -1 none. */
static int
cache_get(const struct userdb_async *client, const char *user)
{
	const struct userdb_cache_entry *entry;

	if (client->cache == NULL)
		return -1;
	entry = &client->cache[cache_slot(user)];
	if (entry->user == NULL || strcmp(entry->user, user) != 0 ||
	    entry->expires <= time(NULL))
		return -1;
	return entry->result;
}

static void
cache_put(struct userdb_async *client, const char *user, int result)
{
	struct userdb_cache_entry *entry;

	if (client->cache == NULL)
		return;
	entry = &client->cache[cache_slot(user)];
	free(entry->user);
	entry->user = xstrdup(user);
	entry->result = result;
	entry->expires = time(NULL) + (time_t)client->cache_time;
}

static void
request_free(struct userdb_request *request)
{
	TAILQ_REMOVE(&request->client->requests, request, entry);
	event_free(request->timer);
	free(request->user);
	free(request);
}

/* Run the callback of REQUEST with RESULT and forget the request. */
static void
request_finish(struct userdb_request *request, int result, const char *error)
{
	userdb_async_cb cb = request->cb;
	void *arg = request->arg;

	if (result >= 0)
		cache_put(request->client, request->user, result);
	request_free(request);
	cb(arg, result, error);
}

static void
client_disconnect(struct userdb_async *client)
{
	if (client->bev != NULL) {
		bufferevent_free(client->bev);
		client->bev = NULL;
	}
}

/* Fail every request in flight, because the connection is gone. */
static void
client_fail_all(struct userdb_async *client, const char *error)
{
	unsigned last_failed = client->last_id;
	struct userdb_request *request;

	client_disconnect(client);

	/* A callback may start a lookup on a new connection: that one stays. */
	while ((request = TAILQ_FIRST(&client->requests)) != NULL && request->id <= last_failed)
		request_finish(request, -1, error);
}

void
userdb_async_free(struct userdb_async *client)
{
	if (client == NULL)
		return;
	client_disconnect(client);
	while (!TAILQ_EMPTY(&client->requests))
		request_free(TAILQ_FIRST(&client->requests));
	if (client->cache != NULL)
		for (size_t i = 0; i < USERDB_CACHE_SLOTS; i++)
			free(client->cache[i].user);
	free(client->cache);
	free(client->socket_path);
	free(client);
}

static struct userdb_request *
request_find(struct userdb_async *client, unsigned id)
{
	struct userdb_request *request;

	TAILQ_FOREACH(request, &client->requests, entry)
		if (request->id == id)
			return request;
	return NULL;
}

/*
 * Handle one reply line: "USER\tID\t...", "NOTFOUND\tID" or
 * "FAIL\tID\treason=...". The greeting (VERSION, SPID) and replies to
 * requests that already timed out are skipped.
 */
static void
client_handle_line(struct userdb_async *client, char *line)
{
	char *command = line, *id_text, *end;
	struct userdb_request *request;
	unsigned long id;

	id_text = strchr(line, '\t');
	if (id_text == NULL)
		return;
	*id_text++ = '\0';
	if (strcmp(command, "VERSION") == 0 || strcmp(command, "SPID") == 0)
		return;

	errno = 0;
	id = strtoul(id_text, &end, 10);
	if (errno != 0 || (*end != '\t' && *end != '\0'))
		return;
	request = request_find(client, (unsigned)id);
	if (request == NULL)
		return;

	if (strcmp(command, "USER") == 0)
		request_finish(request, 1, NULL);
	else if (strcmp(command, "NOTFOUND") == 0)
		request_finish(request, 0, NULL);
	else if (strcmp(command, "FAIL") == 0) {
		char *reason = strstr(end, "reason=");
		char text[256];

		if (reason != NULL) {
			reason += 7;
			reason[strcspn(reason, "\t")] = '\0';
			userdb_tab_unescape(reason);
		}
		snprintf(text, sizeof text, "lookup failed on %s: %s", client->socket_path,
		    reason != NULL ? reason : "temporary failure");
		request_finish(request, -1, text);
	}
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct userdb_async *client = arg;
	struct evbuffer *input = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(input, &len, EVBUFFER_EOL_LF)) != NULL) {
		client_handle_line(client, line);
		free(line);
		if (client->bev != bev)
			return;
	}
	if (evbuffer_get_length(input) > USERDB_LINE_MAX) {
		log_warn("userdb: reply line longer than %d bytes from %s; reconnecting",
		    USERDB_LINE_MAX, client->socket_path);
		client_fail_all(client, "reply line too long");
	}
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct userdb_async *client = arg;

	if (what & BEV_EVENT_ERROR)
		log_warn("userdb: connection to %s failed: %s", client->socket_path,
		    strerror(errno));
	client_fail_all(client, "lost the connection to authd");
}

static int
client_connect(struct userdb_async *client, char *err, size_t errsize)
{
	int sock;

	if (client->bev != NULL)
		return 0;
	sock = ipc_connect(client->socket_path);
	if (sock < 0) {
		snprintf(err, errsize, "cannot connect to %s: %s", client->socket_path,
		    strerror(errno));
		return -1;
	}
	set_nonblocking(sock);
	client->bev = bufferevent_socket_new(client->base, sock, BEV_OPT_CLOSE_ON_FREE);
	if (client->bev == NULL) {
		close(sock);
		snprintf(err, errsize, "cannot set up a connection to %s", client->socket_path);
		return -1;
	}
	bufferevent_setcb(client->bev, client_read_cb, NULL, client_event_cb, client);
	bufferevent_enable(client->bev, EV_READ | EV_WRITE);
	bufferevent_write(client->bev, "VERSION\t1\t0\n", 12);
	return 0;
}

static void
request_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct userdb_request *request = arg;
	char text[256];

	snprintf(text, sizeof text, "no reply from %s within %llds", request->client->socket_path,
	    request->client->timeout);
	request_finish(request, -1, text);
}

/* A name with these characters cannot exist, and it would break the framing. */
static int
has_protocol_separator(const char *text)
{
	return strpbrk(text, "\t\r\n\001") != NULL;
}

struct userdb_request *
userdb_async_lookup(struct userdb_async *client, const char *user, userdb_async_cb cb,
    void *arg, int *result, char *err, size_t errsize)
{
	struct timeval tv = { .tv_sec = (time_t)client->timeout };
	struct userdb_request *request;

	if (*user == '\0' || has_protocol_separator(user) || strlen(user) > 512) {
		*result = 0;
		return NULL;
	}
	*result = cache_get(client, user);
	if (*result >= 0)
		return NULL;
	if (client_connect(client, err, errsize) < 0) {
		*result = -1;
		return NULL;
	}

	request = xcalloc(1, sizeof *request);
	request->client = client;
	request->id = ++client->last_id;
	if (request->id == 0)
		request->id = ++client->last_id;
	request->cb = cb;
	request->arg = arg;
	request->user = xstrdup(user);
	request->timer = evtimer_new(client->base, request_timeout_cb, request);
	evtimer_add(request->timer, &tv);
	TAILQ_INSERT_TAIL(&client->requests, request, entry);

	evbuffer_add_printf(bufferevent_get_output(client->bev), "USER\t%u\t%s\tservice=smtp\n",
	    request->id, user);
	return request;
}

void
userdb_async_cancel(struct userdb_request *request)
{
	if (request != NULL)
		request_free(request);
}
