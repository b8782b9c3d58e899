/*
 * A client of queued_socket: its connection, peer credentials and the
 * queue files it holds, shared by submission.c (NEW, COMMIT, ABORT) and
 * admin.c (LIST, SHOW, FLUSH, DELETE).
 */
#ifndef ESTAFETA_QUEUED_CLIENT_H
#define ESTAFETA_QUEUED_CLIENT_H

#include <stddef.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "queue_proto.h"

/* Uncommitted messages one connection may hold open at a time. */
#define CLIENT_FILES_MAX 64

/*
 * Replies a client may leave unread before queued drops it. A client
 * that sends requests without reading the replies (LIST back to back)
 * would otherwise grow queued's memory without bound. The reply to one
 * request is always queued in full, so a LIST of a large queue works.
 */
#define CLIENT_OUTPUT_MAX (1024 * 1024)

struct ipc_conn;
struct ipc_msg;
struct uid_usage;

struct client_file {
	char id[QUEUE_ID_MAX];
	int own_fd;		/* queued's descriptor of data/ID */
};

struct client {
	struct ipc_conn *conn;	/* NULL once the peer is gone */
	uid_t uid;
	pid_t pid;
	struct uid_usage *usage;
	struct client_file files[CLIENT_FILES_MAX];
	size_t nfiles;
	size_t commits_in_flight;
	int dropped;		/* shut down by queued: requests are ignored */
	size_t unchecked_output;	/* reply bytes queued since the last
					 * look at ipc_conn_pending */
	TAILQ_ENTRY(client) entry;
};

/* Queue MSG (with FD, or -1) for CLIENT. Does nothing once the peer is
 * gone or dropped. */
void client_send(struct client *client, const struct ipc_msg *msg, int fd);

/* Send TYPE with the optional id= and reason=REASON. */
void client_send_fail(struct client *client, const char *type, const char *id,
    const char *reason);

/* Check CLIENT's unread replies before the next request. Returns 1 and
 * drops CLIENT if they exceed CLIENT_OUTPUT_MAX, else 0. */
int client_output_full(struct client *client);

#endif
