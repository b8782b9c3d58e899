/*
 * The LMTP client (RFC 2033): hands local recipients to deliverd over
 * lmtp_socket, several messages per connection and up to
 * lmtp_concurrency connections, without blocking the event loop.
 */
#ifndef ESTAFETA_QUEUED_LMTP_CLIENT_H
#define ESTAFETA_QUEUED_LMTP_CLIENT_H

void lmtp_init(void);

/* Start deliveries for ready messages, opening connections as needed. */
void lmtp_kick(void);

/* Close every connection; messages in delivery stay queued. */
void lmtp_stop(void);

#endif
