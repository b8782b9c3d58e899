/*
 * TLS for the servers (OpenSSL 3): one server context built from the
 * tls_* parameters, with a default certificate chain and any number of
 * further chains chosen by the client's SNI name.
 *
 * A context is reference counted. Every connection's SSL holds its own
 * reference, so a reload can replace the daemon's context while the
 * connections already open keep the certificates they started with.
 *
 * Private keys are usually readable by root only. A daemon that reloads
 * after dropping privileges starts the key reader first (tls_keyreader_start,
 * as root): a small child process that reads nothing but the configured
 * certificate and key files and sends their text back over a socketpair.
 *
 * A program linking lib/tls.c makes OpenSSL zero every block it frees
 * (a constructor installs the allocator before main), and the key file
 * text is wiped right after parsing. So a process forked after a load
 * that frees the context it inherited keeps no copy of a private key
 * (tests/integration/test_break_tls_key_memory.py checks imapd's mail
 * process for the P-256 test keys).
 */
#ifndef ESTAFETA_TLS_H
#define ESTAFETA_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Maximum length of a channel-binding value from tls_channel_binding, in bytes. */
#define TLS_CHANNEL_BINDING_MAX	64

/* Length of the tls-exporter value (RFC 9266). */
#define TLS_EXPORTER_LENGTH	32

/* Buffer size that fits any tls_describe text. */
#define TLS_DESCRIPTION_MAX	128

struct tls_server;

/* The OpenSSL version constant of a protocol name ("TLSv1.2"), or 0. */
int tls_protocol_version(const char *name);

/* True when tls_cert_file is set, so the daemon should offer TLS. */
int tls_configured(void);

/*
 * Fork the key reader. Call it as root after the configuration is loaded
 * and before privsep_drop. Later tls_server_load calls get the file
 * contents from it instead of opening the files themselves. The child
 * reads only the paths configured when it was started, so a changed path
 * needs a restart. When not root, does nothing and returns 0 (the files
 * are then read directly). Returns -1 with ERR set on failure.
 */
int tls_keyreader_start(char *err, size_t errsize);

/*
 * Build a server context from the tls_* parameters: read every
 * certificate and key file, check each key against its certificate, and
 * set the protocols and ciphers. Returns NULL with ERR set (which file,
 * what failed) on any error.
 */
struct tls_server *tls_server_load(char *err, size_t errsize);

/* Drop the caller's reference. Connections created from SERVER keep it
 * alive until their SSL is freed. NULL is allowed. */
void tls_server_free(struct tls_server *server);

/*
 * Replace *CURRENT with a freshly loaded context and free the old one.
 * On failure *CURRENT stays in use, and the reason is logged with WHO
 * (the daemon name) and also returned in ERR. Returns 0 or -1.
 */
int tls_server_reload(struct tls_server **current, const char *who, char *err,
    size_t errsize);

/*
 * A new server-side SSL for one connection, in accept state. It holds
 * its own reference to SERVER's context; SSL_free releases it. Returns
 * NULL when OpenSSL is out of memory.
 */
SSL *tls_server_ssl_new(struct tls_server *server);

/*
 * Write a one-line description of the negotiated session into OUT, as
 * Postfix prints it: "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
 * (256/256 bits)". For logs and the Received: field.
 */
void tls_describe(const SSL *ssl, char *out, size_t outsize);

/* The SNI name the client sent, or NULL. */
const char *tls_server_name(const SSL *ssl);

enum tls_channel_binding_type {
	TLS_CB_EXPORTER,	/* "tls-exporter", RFC 9266: TLS 1.3, or 1.2 with extended master secret */
	TLS_CB_UNIQUE,		/* "tls-unique", RFC 5929: TLS 1.2 and older only */
};

/*
 * Copy the channel-binding data of TYPE for a completed handshake into
 * OUT (at least TLS_CHANNEL_BINDING_MAX bytes) and return its length.
 * Returns -1 when TYPE is not defined for the session's protocol (so
 * SCRAM-PLUS must not offer it) or the handshake is not complete.
 */
int tls_channel_binding(SSL *ssl, enum tls_channel_binding_type type,
    unsigned char *out, size_t outsize);

/* The name of TYPE as SCRAM's gs2 header spells it ("tls-exporter"). */
const char *tls_channel_binding_name(enum tls_channel_binding_type type);

/*
 * Write OpenSSL's error queue into OUT as one line and clear the queue.
 * Writes "unknown error" when the queue is empty. For log lines after a
 * failed handshake or load.
 */
void tls_error_text(char *out, size_t outsize);

#endif
