/*
 * The TLS policy hook of the outbound SMTP client.
 *
 * The client (outbound_session.c) calls three functions for each
 * MX host it is about to use:
 *
 *   1. outbound_tls_policy_lookup: which policy applies to the host (the
 *      security level, and the data to verify it: TLSA records, MTA-STS
 *      mx patterns). The answer may need DNS or HTTPS, so it comes back
 *      through a callback.
 *   2. outbound_tls_ssl_new: a client SSL for the STARTTLS handshake,
 *      with SNI and the verification that the policy requires.
 *   3. outbound_tls_check: after the handshake, whether the session may
 *      carry mail. A failed check defers the recipients (or bounces them,
 *      for REQUIRETLS) with the reason it returns.
 *
 * The client enforces the level itself. With NONE it never sends
 * STARTTLS. With MAY it sends STARTTLS when the server offers it and
 * continues in plaintext otherwise. Every other level requires TLS, so a
 * server without STARTTLS is deferred with DSN code 4.7.4.
 */
#ifndef ESTAFETA_QUEUED_OUTBOUND_TLS_H
#define ESTAFETA_QUEUED_OUTBOUND_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Postfix's smtp_tls_security_level values, plus MTA-STS "enforce". */
enum outbound_tls_level {
	OUTBOUND_TLS_NONE,	/* plaintext only */
	OUTBOUND_TLS_MAY,	/* STARTTLS when offered, certificate not checked */
	OUTBOUND_TLS_ENCRYPT,	/* STARTTLS required, certificate not checked */
	OUTBOUND_TLS_DANE,	/* STARTTLS required, certificate matches a TLSA record */
	OUTBOUND_TLS_VERIFY,	/* STARTTLS required, CA-verified, name matches the MX host */
	OUTBOUND_TLS_MTA_STS,	/* STARTTLS required, CA-verified, name matches an mx pattern */
};

/* Size of the text fields below, with the terminating NUL. */
#define OUTBOUND_TLS_TEXT_MAX	256

/* One delivery attempt to one MX host, as the client sees it. */
struct outbound_tls_request {
	const char *nexthop;	/* recipient domain, or the relayhost/transport host */
	const char *host;	/* MX host name (from DNS or from the transport), no brackets */
	int port;		/* TCP port of the host: TLSA is looked up at _PORT._tcp.HOST */
	const char *queue_id;	/* the message that opened the connection, for the TLS log line */
	int mx_secure;		/* the MX answer was DNSSEC-validated */
	int host_secure;	/* the host's A/AAAA answer was DNSSEC-validated */
	int requiretls;		/* the envelope carries REQUIRETLS (RFC 8689) */
	int tls_required_no;	/* the message has "TLS-Required: No" (RFC 8689) */
};

/* The policy for one MX host. The TLS side allocates and owns DATA. */
struct outbound_tls_policy {
	enum outbound_tls_level level;
	/* Where the level came from, for logs: "smtp_tls_security_level",
	 * "smtp_tls_policy_maps", "DANE TLSA", "MTA-STS id=...". */
	char source[OUTBOUND_TLS_TEXT_MAX];
	/* Set when no delivery to this host is possible under the policy
	 * (bogus TLSA response, or REQUIRETLS without a verifiable TLS level).
	 * The client then does not connect and fails the recipients with DSN
	 * and REASON: a 4.x.x code defers them, a 5.x.x code bounces them. */
	char dsn[16];
	char reason[OUTBOUND_TLS_TEXT_MAX];
	void *data;
};

/*
 * Called exactly once per lookup, possibly before outbound_tls_policy_lookup
 * returns. POLICY belongs to the caller, who frees it with
 * outbound_tls_policy_free.
 */
typedef void outbound_tls_policy_cb(struct outbound_tls_policy *policy, void *arg);

/* Initialize after the configuration is read and before the event loop
 * runs (contexts, caches). Returns 0, or -1 with ERR set. */
int outbound_tls_init(char *err, size_t errsize);
void outbound_tls_shutdown(void);

/* Find the policy for REQUEST (the strings are copied if kept). */
void outbound_tls_policy_lookup(const struct outbound_tls_request *request,
    outbound_tls_policy_cb *cb, void *arg);

void outbound_tls_policy_free(struct outbound_tls_policy *policy);

/*
 * A client SSL for the STARTTLS handshake with HOST under POLICY, in
 * connect state, with SNI set. Returns NULL with ERR set when it cannot
 * be made; the client then defers (or, with MAY, goes on in plaintext
 * on a new connection).
 */
SSL *outbound_tls_ssl_new(const struct outbound_tls_policy *policy,
    const struct outbound_tls_request *request, char *err, size_t errsize);

/*
 * After a completed handshake on SSL: 0 when the session may carry mail
 * under POLICY. Otherwise -1 with a 4.x.x or 5.x.x code in DSN (16
 * bytes) and the reason in REASON; the client quits the session and
 * applies DSN to every recipient it was about to send.
 */
int outbound_tls_check(SSL *ssl, const struct outbound_tls_policy *policy,
    const struct outbound_tls_request *request, char *dsn, char *reason,
    size_t reasonsize);

/* The name of LEVEL as in smtp_tls_security_level ("mta-sts" for MTA_STS). */
const char *outbound_tls_level_name(enum outbound_tls_level level);

#endif
