/*
 * TLS on a client connection in the login process: the handshake for
 * STARTTLS and for the implicit-TLS listener, and the transport that
 * lets imap_io read and write through it. TLS state cannot move into
 * another process, so the SSL stays in the login process for the whole
 * connection. After login that process relays plaintext to the mail
 * process (proxy.c).
 */
#ifndef ESTAFETA_IMAPD_LOGIN_TLS_H
#define ESTAFETA_IMAPD_LOGIN_TLS_H

#include <openssl/ssl.h>

#include "io.h"
#include "tls.h"

struct login_tls {
	SSL *ssl;		/* NULL until the handshake completed */
	int fd;
	long long deadline;	/* now_usec() value that bounds every wait */
	struct imap_io_transport transport;
	char description[TLS_DESCRIPTION_MAX];
};

/*
 * Run the server handshake on the nonblocking socket FD, waiting until
 * DEADLINE at most. On success fills TLS and returns 0. On failure logs
 * the reason with SESSION_ID and RIP, frees everything and returns -1;
 * the connection cannot be used any more.
 */
int login_tls_accept(struct login_tls *tls, struct tls_server *server, int fd,
    long long deadline, unsigned long long session_id, const char *rip);

/* Send close_notify (without waiting for the client's) and free the SSL. */
void login_tls_close(struct login_tls *tls);

#endif
