/*
 * IPC between Estafeta processes over Unix stream sockets.
 *
 * A frame is an 8-byte header (4-byte body length, 4-byte flags, both
 * network byte order) and a text body: the message type on the first
 * line, then "key=value" lines. Keys may repeat (one "rcpt" per
 * recipient). Values must not contain CR, LF or NUL; ipc_msg_add
 * rejects them. A frame with IPC_FLAG_FD carries one file descriptor
 * (SCM_RIGHTS) sent with its first byte. A peer that sends a malformed
 * frame is dropped.
 */
#ifndef ESTAFETA_IPC_H
#define ESTAFETA_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IPC_MAX_FRAME	(4 * 1024 * 1024)
#define IPC_FLAG_FD	0x1

struct ipc_field {
	char *key;
	char *value;
};

struct ipc_msg {
	char *type;
	struct ipc_field *fields;
	size_t nfields;
	size_t capacity;
	int fd;			/* -1 when none */
};

struct ipc_msg *ipc_msg_new(const char *type);
void ipc_msg_free(struct ipc_msg *msg);	/* also closes msg->fd if >= 0 */

/* Add a field. Returns -1 (and adds nothing) if the value has CR/LF. */
int ipc_msg_add(struct ipc_msg *msg, const char *key, const char *value);
int ipc_msg_addf(struct ipc_msg *msg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* First value of KEY, or NULL. */
const char *ipc_msg_get(const struct ipc_msg *msg, const char *key);
/* Numeric value of KEY, or DEFAULT_VALUE if missing or not a number. */
long long ipc_msg_get_int(const struct ipc_msg *msg, const char *key,
    long long default_value);
/* Number of fields named KEY and the N-th (0-based) of them. */
size_t ipc_msg_count(const struct ipc_msg *msg, const char *key);
const char *ipc_msg_get_nth(const struct ipc_msg *msg, const char *key, size_t n);

/* Take ownership of the attached descriptor (the message no longer closes it). */
int ipc_msg_take_fd(struct ipc_msg *msg);

/* Encode into a new buffer (header + body); used by both APIs. */
int ipc_msg_encode(const struct ipc_msg *msg, char **out, size_t *outlen);
/* Decode a body (without header). NULL if malformed. */
struct ipc_msg *ipc_msg_decode(const char *body, size_t len);

/* Blocking API, for command-line clients and simple workers. */
int ipc_connect(const char *socket_path);	/* fd or -1 (errno set) */
/* Connect without waiting, for event loops: a socket whose backlog is
 * full fails at once with EAGAIN, where ipc_connect would wait until the
 * server accepts. Any local user can fill the backlog of a socket it may
 * connect to. Returns a non-blocking fd or -1 (errno set). */
int ipc_connect_nowait(const char *socket_path);
int ipc_send(int sock, const struct ipc_msg *msg, int fd);	/* fd -1: none; 0 or -1 */
/* Returns a message, or NULL on EOF (errno 0) or error (errno set). */
struct ipc_msg *ipc_recv(int sock);

/* Listening socket at PATH with MODE; a stale socket file is replaced,
 * but one that accepts connections fails with EADDRINUSE. fd or -1. */
int ipc_listen(const char *socket_path, mode_t mode);

/* Peer credentials of a connected Unix socket. 0 or -1. */
int ipc_peer_cred(int sock, uid_t *uid, gid_t *gid, pid_t *pid);

/*
 * Event-driven API on libevent. The callback runs once per complete
 * frame; on EOF or error it runs with MSG == NULL and the connection
 * must then be freed (only there). The callback owns MSG and frees it.
 */
struct event_base;
struct ipc_conn;
typedef void (*ipc_msg_cb)(struct ipc_conn *conn, struct ipc_msg *msg, void *arg);

struct ipc_conn *ipc_conn_new(struct event_base *base, int sock, ipc_msg_cb cb, void *arg);
/* Queue a frame for sending; FD (or -1) is dup()ed, so the caller keeps its own. */
int ipc_conn_send(struct ipc_conn *conn, const struct ipc_msg *msg, int fd);
int ipc_conn_fd(const struct ipc_conn *conn);
/* Bytes queued by ipc_conn_send and not yet written to the socket. */
size_t ipc_conn_pending(const struct ipc_conn *conn);
/* Drop the peer from inside a message callback: the NULL callback runs
 * from the event loop afterwards, and frees CONN there. */
void ipc_conn_shutdown(struct ipc_conn *conn);
void ipc_conn_free(struct ipc_conn *conn);	/* closes the socket and pending fds */

#endif
