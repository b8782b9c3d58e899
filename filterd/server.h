/* filterd's connections: a poll loop, and worker threads for the requests. */
#ifndef ESTAFETA_FILTERD_SERVER_H
#define ESTAFETA_FILTERD_SERVER_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Accept connections on LISTENER until SIGTERM or SIGINT, serving their
 * requests in worker threads, at most filterd_max_connections at once. SIGHUP
 * reloads the chain. The caller must have blocked those signals in every
 * thread (server_block_signals) before starting any thread.
 */
void server_run(int listener);

/* Serve only peers whose uid is one of the COUNT in UIDS (at most
 * SERVER_ALLOWED_UIDS_MAX), whatever the socket's mode lets connect.
 * Call before server_run. */
#define SERVER_ALLOWED_UIDS_MAX 8
void server_allow_uids(const uid_t *uids, size_t count);

/* Block SIGTERM, SIGINT and SIGHUP, which server_run reads from a signalfd. */
void server_block_signals(void);

#endif
