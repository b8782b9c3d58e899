/*
 * Client for authd's user lookups, speaking the Dovecot auth-master
 * protocol ("VERSION\t1\t0", "USER\tID\tNAME\tservice=SERVICE", replies
 * "USER\tID\tNAME\tuid=..\tgid=..\thome=..\tmail=..", "NOTFOUND\tID" or
 * "FAIL\tID\treason=.."), so the same client also works against
 * Dovecot's own auth-userdb socket.
 */
#ifndef ESTAFETA_USERDB_H
#define ESTAFETA_USERDB_H

#include <limits.h>
#include <sys/types.h>

struct userdb_entry {
	char user[320];
	uid_t uid;
	gid_t gid;
	char home[PATH_MAX];
	char mail[PATH_MAX];	/* Dovecot mail location, e.g. "maildir:~/Maildir" or "mbox:~/mail:INBOX=/var/mail/u"; "" if unset */
};

struct userdb_client;

struct userdb_client *userdb_client_new(const char *socket_path);
void userdb_client_free(struct userdb_client *client);

/* Connect now, for a process that is about to lose the right to open
 * the socket. Later lookups use this connection while it lasts. 0, or
 * -1 with a reason in ERR. */
int userdb_client_connect(struct userdb_client *client, char *err, size_t errsize);

/*
 * Look up USER for SERVICE ("smtp", "lmtp"). Returns 1 and fills OUT
 * when found, 0 when the user does not exist, -1 on a temporary error
 * (authd down, timeout) with a reason in ERR. Reconnects as needed;
 * waits at most TIMEOUT_MS.
 */
int userdb_lookup(struct userdb_client *client, const char *user, const char *service,
    int timeout_ms, struct userdb_entry *out, char *err, size_t errsize);

/*
 * Claim the login that CLIENT_PID finished with request AUTH_ID on an
 * auth-client connection that got COOKIE (hex) in its handshake:
 * "REQUEST\tID\tCLIENT_PID\tAUTH_ID\tCOOKIE", as Dovecot's master
 * process sends it. Returns 1 and fills OUT with the user's userdb entry,
 * 0 with a reason in ERR when the server rejects the request (no such
 * login, already claimed, expired, or a user missing from the userdb),
 * -1 on a temporary error (authd down, timeout). A login can be claimed
 * once; the request is not retried on a new connection.
 */
int userdb_request(struct userdb_client *client, pid_t client_pid, unsigned auth_id,
    const char *cookie, int timeout_ms, struct userdb_entry *out, char *err, size_t errsize);

/*
 * Dovecot's tab-escaping of protocol fields: \001 becomes "\0011", TAB
 * "\001t", CR "\001r", LF "\001n". userdb_tab_escape returns a new
 * string, and userdb_tab_unescape decodes TEXT in place.
 */
char *userdb_tab_escape(const char *text);
void userdb_tab_unescape(char *text);

/*
 * Parse the TAB-separated fields of a USER reply that follow the id
 * ("NAME\tuid=..\tgid=..\thome=..\tmail=.."), unescaping each, into
 * OUT. Unknown fields are ignored, and a missing uid or gid becomes
 * (uid_t)-1 or (gid_t)-1. FIELDS is modified. Returns 0, or -1 if the name is missing
 * or a uid, gid or value is invalid or too long.
 */
int userdb_entry_parse(char *fields, struct userdb_entry *out);

#endif
