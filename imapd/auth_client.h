/*
 * Blocking client of the Dovecot authentication protocol (version 1) on
 * authd's auth_socket, for imapd's login processes. The handshake
 * supplies the COOKIE that the imapd master later shows authd with the
 * auth id, to claim the login (userdb_request in lib/userdb.h).
 */
#ifndef ESTAFETA_IMAPD_AUTH_CLIENT_H
#define ESTAFETA_IMAPD_AUTH_CLIENT_H

#include <stddef.h>

#include <openssl/ssl.h>

struct auth_client;

enum auth_reply_kind {
	AUTH_REPLY_OK,		/* DATA: the user name */
	AUTH_REPLY_CONT,	/* DATA: base64 challenge */
	AUTH_REPLY_FAIL,	/* DATA: reason, may be empty */
	AUTH_REPLY_TEMPFAIL,	/* authd could not check: DATA has the reason */
	AUTH_REPLY_ERROR,	/* connection lost, timeout or a malformed reply */
};

/* Connect and read the handshake. NULL with a reason in ERR. */
struct auth_client *auth_client_connect(const char *path, int timeout_ms, char *err,
    size_t errsize);
void auth_client_free(struct auth_client *client);
const char *auth_client_cookie(const struct auth_client *client);
int auth_client_has_mech(const struct auth_client *client, const char *mech);
/* The mechanisms authd offers, space-separated, such as "PLAIN LOGIN SCRAM-SHA-256". */
const char *auth_client_mechanisms(const struct auth_client *client);
/*
 * Record that the client connection uses TLS with SSL. Later requests
 * carry secured=tls, and when authd requests channel binding data
 * (SCRAM-SHA-256-PLUS), the next auth_client_continue sends it, taken
 * from SSL. SSL must stay valid while CLIENT is used.
 */
void auth_client_set_tls(struct auth_client *client, SSL *ssl);

/*
 * Start an authentication with MECH and the initial response RESP
 * (base64, "=" for an empty one, NULL for none). RIP and LIP are the
 * client's and the server's addresses. SECURED is nonzero for a TLS or
 * loopback connection. After auth_client_set_tls the request carries
 * secured=tls whatever SECURED is. Returns the request id, or 0 on a
 * write error.
 */
unsigned auth_client_begin(struct auth_client *client, const char *mech, const char *resp,
    const char *rip, const char *lip, int secured);
/* Send the client's base64 response to a CONT challenge, with the
 * channel binding data if authd requested it. Returns 0, or -1 on error. */
int auth_client_continue(struct auth_client *client, unsigned id, const char *resp);
/* Read the reply to request ID. *DATA is a new string (free it). */
enum auth_reply_kind auth_client_reply(struct auth_client *client, unsigned id, char **data);

#endif
