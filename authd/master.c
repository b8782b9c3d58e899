/*
 * The server side of the Dovecot auth-master protocol on userdb_socket,
 * as Dovecot's auth-master-connection.c serves it: LF-terminated lines of
 * TAB-separated, tab-escaped fields. The server greets with
 * "VERSION\t1\t1" and "SPID\tPID"; the client's first line must be
 * "VERSION\t1\t<minor>". Then:
 *
 *   USER\tID\tNAME[\tservice=S...]  ->  USER\tID\tNAME\tuid=U\tgid=G[\thome=H][\tKEY=VALUE...]
 *                                       NOTFOUND\tID | FAIL\tID\treason=TEXT
 *   LIST\tID[\tuser=MASK...]        ->  LIST\tID\tNAME ... then DONE\tID (or DONE\tID\tfail)
 *   PASS\tID\tNAME...               ->  FAIL\tID\treason=... (passwords are never sent here)
 *   REQUEST\tID\tCLIENT_PID\tAUTH_ID\tCOOKIE[\tparams]
 *                                   ->  USER\tID\tNAME\tuid=U\tgid=G... as for USER, once
 *                                       per login (handoff.c), or FAIL\tID\treason=TEXT
 *
 * Any other line, or a line longer than MASTER_LINE_MAX, ends the
 * connection, as Dovecot does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "authd.h"
#include "ipc.h"
#include "log.h"
#include "userdb.h"
#include "util.h"

#define MASTER_PROTOCOL_MAJOR	1
#define MASTER_PROTOCOL_MINOR	1
#define MASTER_LINE_MAX		8192

struct master_conn {
	struct master_conn *prev, *next;	/* in the list of open connections */
	struct bufferevent *bev;
	int version_received;
	int closing;		/* free once the output is flushed */
	uid_t peer_uid;
	pid_t peer_pid;
};

static struct master_conn *connections;

static void
conn_free(struct master_conn *conn)
{
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		connections = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	bufferevent_free(conn->bev);
	free(conn);
}

static void
conn_write_drained(struct bufferevent *bev, void *arg)
{
	struct master_conn *conn = arg;

	if (conn->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_free(conn);
}

/* Send what is pending, then close (the peer may have shut down its side only). */
static void
conn_close_after_flush(struct master_conn *conn)
{
	conn->closing = 1;
	bufferevent_disable(conn->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0)
		conn_free(conn);
}

static void
conn_reply(struct master_conn *conn, const char *line)
{
	bufferevent_write(conn->bev, line, strlen(line));
	bufferevent_write(conn->bev, "\n", 1);
}

static void
reply_user(struct master_conn *conn, const char *id, const struct user_record *record)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	char *escaped = userdb_tab_escape(record->name);

	evbuffer_add_printf(out, "USER\t%s\t%s\tuid=%u\tgid=%u", id, escaped,
	    (unsigned)record->uid, (unsigned)record->gid);
	free(escaped);
	if (record->home != NULL) {
		escaped = userdb_tab_escape(record->home);
		evbuffer_add_printf(out, "\thome=%s", escaped);
		free(escaped);
	}
	for (size_t i = 0; i < record->nfields; i++) {
		char *name = userdb_tab_escape(record->fields[i].name);

		escaped = userdb_tab_escape(record->fields[i].value);
		evbuffer_add_printf(out, "\t%s=%s", name, escaped);
		free(name);
		free(escaped);
	}
	evbuffer_add(out, "\n", 1);
}

static int
valid_id(const char *text)
{
	size_t len = strspn(text, "0123456789");

	return len > 0 && len <= 10 && text[len] == '\0';
}

static const char *
find_param(char **fields, size_t count, const char *key)
{
	size_t keylen = strlen(key);

	for (size_t i = 0; i < count; i++)
		if (strncmp(fields[i], key, keylen) == 0 && fields[i][keylen] == '=')
			return fields[i] + keylen + 1;
	return NULL;
}

/* USER\tID\tNAME[\tparams]. Returns 0, or -1 to drop a broken client. */
static int
handle_user(struct master_conn *conn, char **fields, size_t count)
{
	struct user_record record;
	char reason[512] = "", safe_name[200], line[600];
	const char *service;
	enum lookup_result result;

	if (count < 3 || !valid_id(fields[1])) {
		log_warn("userdb: malformed USER request from pid %ld (uid %u)",
		    (long)conn->peer_pid, (unsigned)conn->peer_uid);
		return -1;
	}
	for (size_t i = 2; i < count; i++)
		userdb_tab_unescape(fields[i]);
	service = find_param(fields + 3, count - 3, "service");
	log_sanitize(safe_name, sizeof safe_name, fields[2], strlen(fields[2]));

	result = users_lookup(fields[2], &record, reason, sizeof reason);
	switch (result) {
	case LOOKUP_FOUND:
		log_debug("userdb: user=<%s>, service=%s, uid=%u, gid=%u, status=found",
		    safe_name, service != NULL ? service : "", (unsigned)record.uid,
		    (unsigned)record.gid);
		reply_user(conn, fields[1], &record);
		user_record_clear(&record);
		break;
	case LOOKUP_NOT_FOUND:
		log_debug("userdb: user=<%s>, service=%s, status=not found", safe_name,
		    service != NULL ? service : "");
		snprintf(line, sizeof line, "NOTFOUND\t%s", fields[1]);
		conn_reply(conn, line);
		break;
	case LOOKUP_TEMPFAIL:
		log_warn("userdb: user=<%s>, service=%s, status=failed (%s)", safe_name,
		    service != NULL ? service : "", reason);
		reason[strcspn(reason, "\t\r\n")] = '\0';
		snprintf(line, sizeof line, "FAIL\t%s\treason=%s", fields[1], reason);
		conn_reply(conn, line);
		break;
	}
	return 0;
}

struct list_context {
	struct evbuffer *out;
	const char *id;
};

static void
emit_list_line(const char *name, void *arg)
{
	struct list_context *ctx = arg;
	char *escaped = userdb_tab_escape(name);

	evbuffer_add_printf(ctx->out, "LIST\t%s\t%s\n", ctx->id, escaped);
	free(escaped);
}

/* LIST\tID[\tuser=MASK]: every user, or those matching the fnmatch mask. */
static int
handle_list(struct master_conn *conn, char **fields, size_t count)
{
	struct list_context ctx = { bufferevent_get_output(conn->bev), fields[1] };
	const char *mask;
	char line[64];

	if (count < 2 || !valid_id(fields[1])) {
		log_warn("userdb: malformed LIST request from pid %ld (uid %u)",
		    (long)conn->peer_pid, (unsigned)conn->peer_uid);
		return -1;
	}
	for (size_t i = 2; i < count; i++)
		userdb_tab_unescape(fields[i]);
	mask = find_param(fields + 2, count - 2, "user");

	if (users_list(mask != NULL && *mask != '\0' ? mask : NULL, emit_list_line, &ctx) < 0) {
		log_warn("userdb: user listing failed: %s", passwd_file_error());
		snprintf(line, sizeof line, "DONE\t%s\tfail", fields[1]);
	} else {
		snprintf(line, sizeof line, "DONE\t%s", fields[1]);
	}
	conn_reply(conn, line);
	return 0;
}

static int
parse_number(const char *text, unsigned long *out)
{
	if (!valid_id(text))
		return -1;
	*out = strtoul(text, NULL, 10);
	return 0;
}

static void
reply_fail(struct master_conn *conn, const char *id, const char *reason)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	evbuffer_add_printf(out, "FAIL\t%s\treason=%s\n", id, reason);
}

/*
 * REQUEST\tID\tCLIENT_PID\tAUTH_ID\tCOOKIE[\tparams], sent by a master
 * process to take over a login that CLIENT_PID finished on auth_socket.
 * Extra params, such as the session_pid=PID of newer Dovecot
 * master processes, are ignored.
 */
static int
handle_request(struct master_conn *conn, char **fields, size_t count)
{
	struct user_record record;
	unsigned long client_pid, auth_id;
	char reason[512] = "", safe_name[200], *user;
	enum lookup_result result;

	if (count < 5 || !valid_id(fields[1]) || parse_number(fields[2], &client_pid) < 0 ||
	    parse_number(fields[3], &auth_id) < 0) {
		log_warn("userdb: malformed REQUEST from pid %ld (uid %u)",
		    (long)conn->peer_pid, (unsigned)conn->peer_uid);
		return -1;
	}

	user = handoff_claim((pid_t)client_pid, auth_id, fields[4]);
	if (user == NULL) {
		log_warn("userdb: REQUEST from pid %ld (uid %u) for client pid %lu, auth id %lu: no such login (unknown, expired, already claimed or wrong cookie)",
		    (long)conn->peer_pid, (unsigned)conn->peer_uid, client_pid, auth_id);
		reply_fail(conn, fields[1], "Authentication request not found or expired");
		return 0;
	}
	log_sanitize(safe_name, sizeof safe_name, user, strlen(user));

	result = users_lookup(user, &record, reason, sizeof reason);
	switch (result) {
	case LOOKUP_FOUND:
		log_info("userdb: login handoff: user=<%s>, client_pid=%lu, auth_id=%lu, master_pid=%ld, uid=%u",
		    safe_name, client_pid, auth_id, (long)conn->peer_pid, (unsigned)record.uid);
		reply_user(conn, fields[1], &record);
		user_record_clear(&record);
		break;
	case LOOKUP_NOT_FOUND:
		log_warn("userdb: login handoff: user=<%s> authenticated but is not in the userdb",
		    safe_name);
		reply_fail(conn, fields[1], "Authenticated user not found in the userdb");
		break;
	case LOOKUP_TEMPFAIL:
		log_warn("userdb: login handoff: user=<%s>: lookup failed (%s)", safe_name, reason);
		reply_fail(conn, fields[1], "Temporary user lookup failure");
		break;
	}
	free(user);
	return 0;
}

/* PASS would return password hashes; this socket does not serve them. */
static int
handle_pass(struct master_conn *conn, char **fields, size_t count)
{
	char line[128];

	if (count < 3 || !valid_id(fields[1]))
		return -1;
	snprintf(line, sizeof line, "FAIL\t%s\treason=PASS lookups are not supported by authd",
	    fields[1]);
	conn_reply(conn, line);
	return 0;
}

static int
handle_version(struct master_conn *conn, char *line)
{
	char safe[80];

	if (strncmp(line, "VERSION\t", 8) == 0 &&
	    strtol(line + 8, NULL, 10) == MASTER_PROTOCOL_MAJOR && line[8] != '\0') {
		conn->version_received = 1;
		return 0;
	}
	log_warn("userdb: client pid %ld (uid %u) is not an auth-master client of version %d: first line \"%s\"",
	    (long)conn->peer_pid, (unsigned)conn->peer_uid, MASTER_PROTOCOL_MAJOR,
	    log_sanitize(safe, sizeof safe, line, strlen(line)));
	return -1;
}

/* One request line. Returns 0, or -1 to drop the client. */
static int
handle_line(struct master_conn *conn, char *line)
{
	char *fields[64];
	size_t count;
	char safe[80];

	if (!conn->version_received)
		return handle_version(conn, line);

	count = authd_split_fields(line, fields, sizeof fields / sizeof fields[0]);
	if (strcmp(fields[0], "USER") == 0)
		return handle_user(conn, fields, count);
	if (strcmp(fields[0], "LIST") == 0)
		return handle_list(conn, fields, count);
	if (strcmp(fields[0], "PASS") == 0)
		return handle_pass(conn, fields, count);
	if (strcmp(fields[0], "REQUEST") == 0)
		return handle_request(conn, fields, count);
	if (strcmp(fields[0], "CPID") == 0) {
		log_warn("userdb: an authentication client (pid %ld, uid %u) connected to the userdb socket",
		    (long)conn->peer_pid, (unsigned)conn->peer_uid);
		return -1;
	}
	log_warn("userdb: unknown command \"%s\" from pid %ld (uid %u)",
	    log_sanitize(safe, sizeof safe, fields[0], strlen(fields[0])),
	    (long)conn->peer_pid, (unsigned)conn->peer_uid);
	return -1;
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct master_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while (!conn->closing && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		int rc;

		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (strlen(line) != len) {
			log_warn("userdb: NUL byte in a request from pid %ld (uid %u)",
			    (long)conn->peer_pid, (unsigned)conn->peer_uid);
			rc = -1;
		} else {
			rc = len > MASTER_LINE_MAX ? -1 : handle_line(conn, line);
		}
		free(line);
		if (rc < 0) {
			conn_free(conn);
			return;
		}
	}
	if (!conn->closing && evbuffer_get_length(in) > MASTER_LINE_MAX) {
		log_warn("userdb: request line longer than %d bytes from pid %ld (uid %u)",
		    MASTER_LINE_MAX, (long)conn->peer_pid, (unsigned)conn->peer_uid);
		conn_free(conn);
	}
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct master_conn *conn = arg;

	if (what & BEV_EVENT_EOF) {
		conn_close_after_flush(conn);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		log_debug("userdb: connection from pid %ld: %s", (long)conn->peer_pid,
		    strerror(EVUTIL_SOCKET_ERROR()));
		conn_free(conn);
	}
}

static void
accept_conn(struct evconnlistener *listener, int fd, struct sockaddr *addr,
    int addrlen, void *arg)
{
	struct event_base *base = evconnlistener_get_base(listener);
	struct master_conn *conn = xcalloc(1, sizeof *conn);
	char greeting[64];

	ipc_peer_cred(fd, &conn->peer_uid, NULL, &conn->peer_pid);
	conn->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev == NULL) {
		log_error("userdb: cannot set up a connection from pid %ld", (long)conn->peer_pid);
		close(fd);
		free(conn);
		return;
	}
	conn->next = connections;
	if (connections != NULL)
		connections->prev = conn;
	connections = conn;
	bufferevent_setcb(conn->bev, conn_read, conn_write_drained, conn_event, conn);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);

	snprintf(greeting, sizeof greeting, "VERSION\t%d\t%d\nSPID\t%ld\n", MASTER_PROTOCOL_MAJOR,
	    MASTER_PROTOCOL_MINOR, (long)getpid());
	bufferevent_write(conn->bev, greeting, strlen(greeting));
	log_debug("userdb: connection from pid %ld (uid %u)", (long)conn->peer_pid,
	    (unsigned)conn->peer_uid);
}

void
master_listen(struct event_base *base, int listen_fd)
{
	listener_start(base, listen_fd, accept_conn, "userdb");
}

void
master_close_all(void)
{
	while (connections != NULL)
		conn_free(connections);
}
