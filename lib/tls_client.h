/*
 * TLS for the SMTP client (queued's outbound delivery), OpenSSL 3.
 *
 * One struct tls_client contains the client SSL_CTX built from the smtp_tls_*
 * parameters: protocol range, ciphers, and the CA store (smtp_tls_CAfile,
 * or the system store when it is empty). Each connection gets an SSL from
 * tls_client_ssl_new, configured for one MX host by a struct tls_peer:
 * SNI, the names the certificate must match, and DANE TLSA records.
 *
 * The handshake never fails because of the certificate (SSL_VERIFY_NONE).
 * After it, the caller checks with tls_client_verify whether the
 * certificate meets the peer's level, so an opportunistic session still
 * gets encryption and a mandatory one can end with QUIT and a logged reason.
 */
#ifndef ESTAFETA_TLS_CLIENT_H
#define ESTAFETA_TLS_CLIENT_H

#include <stddef.h>

#include <openssl/ssl.h>

/*
 * Security levels, named as Postfix's smtp_tls_security_level values.
 * TLS_LEVEL_DANE is a policy setting: DANE where the MX host has
 * DNSSEC-validated TLSA records, TLS_LEVEL_MAY elsewhere. A connection
 * uses TLS_LEVEL_DANE only when it has usable TLSA records.
 */
enum tls_level {
	TLS_LEVEL_NONE,		/* plaintext, STARTTLS is not used */
	TLS_LEVEL_MAY,		/* STARTTLS when offered, certificate not checked */
	TLS_LEVEL_ENCRYPT,	/* TLS required, certificate not checked */
	TLS_LEVEL_DANE,		/* TLS required, certificate matches a TLSA record (RFC 7672) */
	TLS_LEVEL_VERIFY,	/* TLS required, CA-verified certificate matching a name */
};

/* How far a server certificate was verified, as Postfix logs it. */
enum tls_trust {
	TLS_TRUST_UNTRUSTED,	/* no CA chain and no TLSA match */
	TLS_TRUST_TRUSTED,	/* CA chain verified, but no expected name matched */
	TLS_TRUST_VERIFIED,	/* CA chain and name verified, or a TLSA record matched */
};

/* One TLSA record (RFC 6698): usage, selector, matching type, data. */
struct tls_tlsa {
	unsigned char usage;
	unsigned char selector;
	unsigned char mtype;
	const unsigned char *data;
	size_t length;
};

/* The requirements of one connection on the server's certificate. */
struct tls_peer {
	enum tls_level level;
	/* The MX host name: sent as SNI, and the DANE base domain. */
	const char *host;
	/*
	 * TLS_LEVEL_VERIFY: names the certificate may match, NULL-terminated.
	 * A name starting with a dot matches any subdomain of the rest.
	 * NULL means HOST alone.
	 */
	const char *const *match;
	/* TLS_LEVEL_DANE: the validated TLSA records of _PORT._tcp.HOST. */
	const struct tls_tlsa *tlsa;
	size_t tlsa_count;
	/* The TCP port of HOST, named in the TLSA failure reason. 0 means 25. */
	int port;
};

struct tls_client;

/*
 * Build the client context from the smtp_tls_* parameters and load the
 * CA certificates. Returns NULL with ERR set (which parameter or file,
 * what failed).
 */
struct tls_client *tls_client_new(char *err, size_t errsize);

void tls_client_free(struct tls_client *client);

/*
 * Return whether RECORD can authenticate an SMTP server. RFC 7672 section
 * 3.1 allows DANE-TA(2) and DANE-EE(3) only. PKIX-TA(0) and PKIX-EE(1)
 * records, unknown selectors and unknown matching types are unusable.
 */
int tls_tlsa_usable(const struct tls_tlsa *record);

/*
 * Create an SSL in connect state for one connection to PEER->host, with SNI
 * set, DANE enabled with PEER's usable TLSA records (TLS_LEVEL_DANE) and
 * host name checks set (TLS_LEVEL_VERIFY). PEER need not outlive the call.
 * Returns NULL with ERR set, also when a DANE peer has no usable record.
 */
SSL *tls_client_ssl_new(struct tls_client *client, const struct tls_peer *peer,
    char *err, size_t errsize);

/*
 * After the handshake of SSL (made for PEER): store the trust reached in
 * *TRUST, and return 0 when it meets PEER->level. Returns -1 with REASON
 * set ("certificate matches no TLSA record", "certificate verification
 * failed: ...", "server certificate does not match ...") when it does
 * not, so the caller ends the session and defers.
 */
int tls_client_verify(SSL *ssl, const struct tls_peer *peer, enum tls_trust *trust,
    char *reason, size_t reasonsize);

/* Return "Untrusted", "Trusted" or "Verified" for log lines such as
 * "Verified TLS connection established to ...". */
const char *tls_trust_name(enum tls_trust trust);

/* Return the name of LEVEL as smtp_tls_security_level spells it ("dane"). */
const char *tls_level_name(enum tls_level level);

/* Return the level named NAME (an smtp_tls_security_level word), or -1. */
int tls_level_parse(const char *name);

#endif
