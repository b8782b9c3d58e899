/* authd: user lookups for smtpd and deliverd (and Dovecot's clients). */
#ifndef ESTAFETA_AUTHD_H
#define ESTAFETA_AUTHD_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;

/* One userdb field besides uid, gid and home, e.g. "mail" = "maildir:~/Maildir". */
struct user_field {
	char *name;
	char *value;
};

/* The result of a successful lookup, owned by the caller (user_record_clear). */
struct user_record {
	char *name;		/* canonical name sent back to the client */
	uid_t uid;
	gid_t gid;
	char *home;		/* NULL when the entry has none */
	struct user_field *fields;
	size_t nfields;
};

enum lookup_result {
	LOOKUP_FOUND,
	LOOKUP_NOT_FOUND,
	LOOKUP_TEMPFAIL,	/* the reason is in the caller's buffer */
};

/* users.c: the lookup order over both backends. */
void users_init(int started_as_root);
void users_reload(void);
enum lookup_result users_lookup(const char *name, struct user_record *out,
    char *reason, size_t reasonsize);
/* Call EMIT for every user whose name matches the fnmatch(3) MASK (NULL: all). */
int users_list(const char *mask, void (*emit)(const char *name, void *arg), void *arg);
void user_record_clear(struct user_record *record);

/* passwd_file.c: the virtual users of virtual_passwd_file. */
struct passwd_entry {
	char *name;		/* lower-case user@domain */
	char *password;		/* "{SCHEME}hash" as written, for the passdb */
	char *uid;		/* as written; "" means virtual_mail_user */
	char *gid;
	char *home;
	char **extra;		/* NULL-terminated "key=value" or "key" items */
	int line;
};

void passwd_file_set_path(const char *path);
/* Reread the file when it changed on disk (or FORCE). 0, or -1 when it
 * could not be read; the previous entries stay in use then. */
int passwd_file_refresh(int force);
const struct passwd_entry *passwd_file_find(const char *name);
/* The users sorted by name, without repeated names; *COUNT receives how many. */
const struct passwd_entry *const *passwd_file_users(size_t *count);
/* The reason of the last failed refresh, or NULL when the file is usable. */
const char *passwd_file_error(void);

/* master.c: the Dovecot auth-master protocol on userdb_socket. */
void master_listen(struct event_base *base, int listen_fd);
/* Close every userdb connection, at exit. */
void master_close_all(void);

/* client.c: the Dovecot authentication (client) protocol on auth_socket. */
void client_listen(struct event_base *base, int listen_fd);
/* Close every auth connection, at exit; their pending replies are dropped. */
void client_close_all(void);

/* passdb.c: password checks in the order of the passdb parameter. */
enum passdb_status {
	PASSDB_OK,
	PASSDB_MISMATCH,	/* a passdb has the user, and the password is wrong */
	PASSDB_UNKNOWN,		/* no passdb has the user */
	PASSDB_TEMPFAIL,
};

struct passdb_result {
	enum passdb_status status;
	const char *user;	/* canonical name on PASSDB_OK, else the name as given */
	const char *detail;	/* the passdb or the reason, for the log */
};

typedef void (*passdb_callback)(void *arg, const struct passdb_result *result);

/* PAM_FD is the socket of the pam worker, or -1 when it is not running. */
void passdb_init(struct event_base *base, int pam_fd);
/* Whether the passdb parameter lists NAME ("passwd-file", "pam"). */
int passdb_uses(const char *name);
/*
 * Check PASSWORD of USER and call CALLBACK with ARG, now or from the
 * event loop once the pam worker replies. The strings are copied.
 */
void passdb_verify(const char *user, const char *password, const char *service,
    const char *rip, passdb_callback callback, void *arg);
/* The stored password of a user, for mechanisms that cannot use a plain one (SCRAM). */
enum credentials_status {
	CREDENTIALS_FOUND,
	CREDENTIALS_UNKNOWN,		/* no passdb has the user */
	CREDENTIALS_UNAVAILABLE,	/* a passdb has the user but keeps no password (pam) */
	CREDENTIALS_TEMPFAIL,		/* a passdb could not be read */
};
/*
 * Find USER in the passdbs in order. On CREDENTIALS_FOUND, *STORED is a
 * new copy of the "{SCHEME}data" field and *CANONICAL the user's name.
 */
enum credentials_status passdb_lookup_credentials(const char *user, char **stored,
    char **canonical);
/* Drop the callbacks of the pending checks with ARG, so they never run. */
void passdb_cancel(void *arg);
/* Drop the pending checks and close the socket of the pam worker, at exit. */
void passdb_close(void);

/* pam_worker.c: fork the root pam worker; returns the socket to it. */
int pam_worker_start(void);

/* throttle.c: the delay in seconds before the reply to a failed attempt
 * from RIP ("" when unknown); *FAILURES receives the count it is based on. */
unsigned throttle_failure(const char *rip, unsigned *failures);
/* A success from RIP: its next failure waits auth_failure_delay again. */
void throttle_success(const char *rip);

/* handoff.c: successful logins kept for one REQUEST on userdb_socket. */
#define HANDOFF_COOKIE_LEN	32	/* hex digits of the COOKIE of a client connection */
void handoff_remember(pid_t client_pid, unsigned long auth_id, const char *cookie,
    const char *user);
/* Remove the login that matches all three values and return its user
 * name (the caller frees it), or return NULL when none matches. */
char *handoff_claim(pid_t client_pid, unsigned long auth_id, const char *cookie);

/*
 * password.c: check PASSWORD against STORED ("{SCHEME}data", or a crypt(3)
 * string). Returns 1 on a match, 0 on a mismatch, -1 for an unknown
 * scheme or malformed data.
 */
int password_check(const char *stored, const char *password);
/* Return the password in STORED for {PLAIN}, {CLEAR} or {CLEARTEXT}, else NULL. */
const char *password_plaintext(const char *stored);
/* password_argon2.c: ENCODED is Argon2id when ID is 1, else Argon2i. Same results. */
int password_check_argon2(const char *encoded, const char *password, int id);

/*
 * listener.c: accept connections on LISTEN_FD and call ACCEPT for each.
 * WHAT names the socket in log lines. Exits when libevent fails.
 */
struct evconnlistener;
struct sockaddr;
typedef void (*listener_accept_fn)(struct evconnlistener *listener, int fd,
    struct sockaddr *addr, int addrlen, void *arg);
/* Split LINE at TABs in place (both protocols separate fields with
 * TAB); returns the number of fields, at most MAX. */
size_t authd_split_fields(char *line, char **fields, size_t max);

void listener_start(struct event_base *base, int listen_fd, listener_accept_fn accept,
    const char *what);
/* Close the listening sockets, at exit. */
void listener_free_all(void);

#endif
