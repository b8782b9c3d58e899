/* The TLS proxy between a client and its mail process (see proxy.c). */
#ifndef ESTAFETA_IMAPD_PROXY_H
#define ESTAFETA_IMAPD_PROXY_H

#include "login_tls.h"

/*
 * Relay between the client on TLS and the mail process on MAIL_FD until
 * the mail process closes and its output reached the client, the client
 * closes or fails, or nothing moved either way for IDLE_LIMIT_MS. Sends
 * close_notify, closes MAIL_FD and returns; the caller exits.
 */
void proxy_run(struct login_tls *tls, int mail_fd, unsigned long long session_id,
    long long idle_limit_ms);

#endif
