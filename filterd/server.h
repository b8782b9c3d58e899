/* filterd's connections: a poll loop, and worker threads for the requests. */
#ifndef ESTAFETA_FILTERD_SERVER_H
#define ESTAFETA_FILTERD_SERVER_H

/*
 * Accept connections on LISTENER until SIGTERM or SIGINT, serving their
 * requests in worker threads, at most filterd_max_connections at once. SIGHUP
 * reloads the chain. The caller must have blocked those signals in every
 * thread (server_block_signals) before starting any thread.
 */
void server_run(int listener);

/* Block SIGTERM, SIGINT and SIGHUP, which server_run reads from a signalfd. */
void server_block_signals(void);

#endif
