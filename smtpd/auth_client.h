/*
 * Asynchronous client of authd's Dovecot authentication protocol
 * (auth_socket) on smtpd's event loop. Each AUTH exchange gets its own
 * connection, closed when the exchange ends, so a cancelled exchange
 * leaves nothing behind in authd. The mechanism list comes from the
 * MECH lines of authd's handshake and is cached for EHLO.
 */
#ifndef ESTAFETA_SMTPD_AUTH_CLIENT_H
#define ESTAFETA_SMTPD_AUTH_CLIENT_H

#include <stddef.h>

struct event_base;
struct auth_client;
struct auth_request;

enum auth_result {
	AUTH_RESULT_CONTINUE,	/* DATA is the base64 challenge (maybe "") */
	AUTH_RESULT_OK,		/* DATA is the authenticated user name */
	AUTH_RESULT_FAIL,	/* wrong credentials; DATA is authd's reason or "" */
	AUTH_RESULT_TEMPFAIL,	/* authd or its passdb failed; DATA is the reason */
};

/* Runs from the event loop. After any result but CONTINUE the request is freed. */
typedef void (*auth_result_cb)(void *arg, enum auth_result result, const char *data);

/* The mechanism and the client facts that authd receives with AUTH. */
struct auth_request_params {
	const char *mechanism;
	const char *initial_response;	/* base64, "" for an empty one, NULL for none */
	const char *remote_ip;
	const char *local_ip;
	int tls;			/* TLS is active: "secured=tls", which SCRAM-PLUS needs */
	int secured;			/* no TLS, but a trusted (loopback) client: "secured" */
};

struct auth_client *auth_client_new(struct event_base *base, const char *socket_path,
    long long timeout);
void auth_client_free(struct auth_client *client);

/* Connect once to learn authd's mechanisms; a later EHLO uses them. */
void auth_client_refresh_mechanisms(struct auth_client *client);

/* The mechanisms of authd's last handshake, space-separated, or "" if none yet. */
const char *auth_client_mechanisms(const struct auth_client *client);
int auth_client_has_mechanism(const struct auth_client *client, const char *mechanism);

/*
 * Start an exchange. Returns the request, whose callback runs for each
 * reply of authd, or NULL with ERR set when authd cannot be reached.
 * Every reply comes within the client's timeout, or the callback gets
 * AUTH_RESULT_TEMPFAIL.
 */
struct auth_request *auth_client_begin(struct auth_client *client,
    const struct auth_request_params *params, auth_result_cb cb, void *arg,
    char *err, size_t errsize);

/*
 * The channel-binding type ("tls-exporter", "tls-unique") that authd
 * requested with the last challenge, for SCRAM-PLUS, or NULL.
 */
const char *auth_request_channel_binding_type(const struct auth_request *request);

/* Send the client's base64 RESPONSE to the last CONTINUE challenge, with
 * the base64 CBIND_DATA when authd requested channel binding (else NULL). */
void auth_client_continue(struct auth_request *request, const char *response,
    const char *cbind_data);

/* End the exchange without a result; the callback does not run. NULL is allowed. */
void auth_client_cancel(struct auth_request *request);

#endif
