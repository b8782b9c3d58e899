/*
 * TLS client contexts for outbound SMTP (OpenSSL 3): CA verification,
 * host name checks and DANE (RFC 7672).
 *
 * Every SSL is made with SSL_VERIFY_NONE, so OpenSSL still verifies the
 * chain, the names and the TLSA records and stores the result, but the
 * handshake completes whatever it is. tls_client_verify then compares
 * that result with what the peer's level requires.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "tls.h"
#include "tls_client.h"
#include "util.h"

struct tls_client {
	SSL_CTX *ctx;
};

static const char *const level_names[] = {
	[TLS_LEVEL_NONE] = "none",
	[TLS_LEVEL_MAY] = "may",
	[TLS_LEVEL_ENCRYPT] = "encrypt",
	[TLS_LEVEL_DANE] = "dane",
	[TLS_LEVEL_VERIFY] = "verify",
};

const char *
tls_level_name(enum tls_level level)
{
	if ((size_t)level >= sizeof level_names / sizeof level_names[0])
		return "unknown";
	return level_names[level];
}

int
tls_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(level_names[i], name) == 0)
			return (int)i;
	}
	return -1;
}

const char *
tls_trust_name(enum tls_trust trust)
{
	switch (trust) {
	case TLS_TRUST_VERIFIED:
		return "Verified";
	case TLS_TRUST_TRUSTED:
		return "Trusted";
	default:
		return "Untrusted";
	}
}

/*
 * Continue past a host name mismatch so that the chain's signatures and
 * dates are still checked. The stored verify result then stays
 * X509_V_ERR_HOSTNAME_MISMATCH only when everything else was valid,
 * which is what tells "Trusted" from "Untrusted".
 */
static int
verify_callback(int preverify_ok, X509_STORE_CTX *store)
{
	if (!preverify_ok && X509_STORE_CTX_get_error(store) == X509_V_ERR_HOSTNAME_MISMATCH)
		return 1;
	return preverify_ok;
}

static int
ctx_load_ca(SSL_CTX *ctx, char *err, size_t errsize)
{
	const char *cafile = config_string("smtp_tls_CAfile");
	char reason[512];

	if (cafile[0] == '\0') {
		if (SSL_CTX_set_default_verify_paths(ctx))
			return 0;
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "cannot load the system CA certificates: %s", reason);
		return -1;
	}
	if (SSL_CTX_load_verify_locations(ctx, cafile, NULL))
		return 0;
	tls_error_text(reason, sizeof reason);
	snprintf(err, errsize, "cannot load smtp_tls_CAfile %s: %s", cafile, reason);
	return -1;
}

static int
ctx_set_protocols(SSL_CTX *ctx, char *err, size_t errsize)
{
	const char *min = config_string("smtp_tls_min_protocol");
	const char *max = config_string("smtp_tls_max_protocol");
	const char *ciphers = config_string("smtp_tls_ciphers");
	char reason[512];

	if (tls_protocol_version(min) > tls_protocol_version(max) ||
	    !SSL_CTX_set_min_proto_version(ctx, tls_protocol_version(min)) ||
	    !SSL_CTX_set_max_proto_version(ctx, tls_protocol_version(max))) {
		snprintf(err, errsize, "invalid TLS protocol range: smtp_tls_min_protocol %s is newer than smtp_tls_max_protocol %s",
		    min, max);
		return -1;
	}
	if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "invalid smtp_tls_ciphers \"%s\": %s", ciphers, reason);
		return -1;
	}
	return 0;
}

struct tls_client *
tls_client_new(char *err, size_t errsize)
{
	struct tls_client *client;
	char reason[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "SSL_CTX_new failed: %s", reason);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, verify_callback);

	if (ctx_set_protocols(ctx, err, errsize) < 0 || ctx_load_ca(ctx, err, errsize) < 0)
		goto failed;

	/* The digest table for TLSA matching types 1 and 2 (OpenSSL's default). */
	if (SSL_CTX_dane_enable(ctx) <= 0) {
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "SSL_CTX_dane_enable failed: %s", reason);
		goto failed;
	}

	client = xmalloc(sizeof *client);
	client->ctx = ctx;
	return client;

failed:
	SSL_CTX_free(ctx);
	return NULL;
}

void
tls_client_free(struct tls_client *client)
{
	if (client == NULL)
		return;
	SSL_CTX_free(client->ctx);
	free(client);
}

int
tls_tlsa_usable(const struct tls_tlsa *record)
{
	if (record->usage != 2 && record->usage != 3)
		return 0;
	if (record->selector > 1 || record->mtype > 2)
		return 0;
	switch (record->mtype) {
	case 1:
		return record->length == 32;
	case 2:
		return record->length == 64;
	default:
		return record->length > 0;
	}
}

/* Enable DANE on SSL with PEER's usable records. */
static int
ssl_use_tlsa(SSL *ssl, const struct tls_peer *peer, char *err, size_t errsize)
{
	size_t added = 0;

	if (SSL_dane_enable(ssl, peer->host) <= 0) {
		snprintf(err, errsize, "SSL_dane_enable failed for %s", peer->host);
		return -1;
	}

	/* RFC 7672 section 3.2.1: no name checks with DANE-EE(3) records. */
	SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);

	for (size_t i = 0; i < peer->tlsa_count; i++) {
		const struct tls_tlsa *record = &peer->tlsa[i];

		if (!tls_tlsa_usable(record))
			continue;
		if (SSL_dane_tlsa_add(ssl, record->usage, record->selector, record->mtype,
		    record->data, record->length) > 0)
			added++;
	}
	ERR_clear_error();
	if (added == 0) {
		snprintf(err, errsize, "no usable TLSA record for %s", peer->host);
		return -1;
	}
	return 0;
}

/* Set the names the certificate of a TLS_LEVEL_VERIFY peer must match. */
static int
ssl_use_names(SSL *ssl, const struct tls_peer *peer, char *err, size_t errsize)
{
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (peer->match == NULL || peer->match[0] == NULL) {
		if (SSL_set1_host(ssl, peer->host))
			return 0;
		snprintf(err, errsize, "invalid host name %s", peer->host);
		return -1;
	}
	for (size_t i = 0; peer->match[i] != NULL; i++) {
		int ok = i == 0 ? SSL_set1_host(ssl, peer->match[i]) : SSL_add1_host(ssl, peer->match[i]);

		if (!ok) {
			snprintf(err, errsize, "invalid certificate name %s", peer->match[i]);
			return -1;
		}
	}
	return 0;
}

/* Whether HOST is an IPv4 or IPv6 address, with or without brackets. */
static int
is_address_literal(const char *host)
{
	unsigned char address[sizeof(struct in6_addr)];
	char bare[INET6_ADDRSTRLEN + 8];
	size_t length = strlen(host);

	if (host[0] == '[' && length >= 2 && length - 2 < sizeof bare && host[length - 1] == ']') {
		memcpy(bare, host + 1, length - 2);
		bare[length - 2] = '\0';
		host = bare;
		if (strncasecmp(host, "IPv6:", 5) == 0)
			host += 5;
	}
	return inet_pton(AF_INET, host, address) == 1 || inet_pton(AF_INET6, host, address) == 1;
}

SSL *
tls_client_ssl_new(struct tls_client *client, const struct tls_peer *peer, char *err,
    size_t errsize)
{
	SSL *ssl = SSL_new(client->ctx);
	int rc = 0;

	if (ssl == NULL) {
		snprintf(err, errsize, "SSL_new failed");
		return NULL;
	}
	SSL_set_connect_state(ssl);

	/* An IP literal has no SNI (RFC 6066 section 3). */
	if (!is_address_literal(peer->host) && !SSL_set_tlsext_host_name(ssl, peer->host)) {
		snprintf(err, errsize, "invalid SNI name %s", peer->host);
		rc = -1;
	}
	if (rc == 0 && peer->level == TLS_LEVEL_DANE)
		rc = ssl_use_tlsa(ssl, peer, err, errsize);
	else if (rc == 0 && peer->level == TLS_LEVEL_VERIFY)
		rc = ssl_use_names(ssl, peer, err, errsize);

	if (rc < 0) {
		ERR_clear_error();
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

/* The trust OpenSSL's verification reached on a finished handshake. */
static enum tls_trust
ssl_trust(SSL *ssl, long result)
{
	if (SSL_get0_peer_certificate(ssl) == NULL)
		return TLS_TRUST_UNTRUSTED;
	if (result == X509_V_OK)
		return TLS_TRUST_VERIFIED;
	if (result == X509_V_ERR_HOSTNAME_MISMATCH)
		return TLS_TRUST_TRUSTED;
	return TLS_TRUST_UNTRUSTED;
}

int
tls_client_verify(SSL *ssl, const struct tls_peer *peer, enum tls_trust *trust,
    char *reason, size_t reasonsize)
{
	long result = SSL_get_verify_result(ssl);
	int dane_matched = SSL_get0_dane_authority(ssl, NULL, NULL) >= 0;

	*trust = ssl_trust(ssl, result);
	if (peer->level == TLS_LEVEL_DANE && (result != X509_V_OK || !dane_matched))
		*trust = TLS_TRUST_UNTRUSTED;

	/* Below verify no name was checked, so a valid chain is only "Trusted". */
	if (peer->level < TLS_LEVEL_DANE && *trust == TLS_TRUST_VERIFIED)
		*trust = TLS_TRUST_TRUSTED;

	switch (peer->level) {
	case TLS_LEVEL_NONE:
	case TLS_LEVEL_MAY:
	case TLS_LEVEL_ENCRYPT:
		return 0;
	case TLS_LEVEL_DANE:
		if (*trust == TLS_TRUST_VERIFIED)
			return 0;
		if (SSL_get0_peer_certificate(ssl) == NULL)
			snprintf(reason, reasonsize, "server sent no certificate");
		else if (result == X509_V_ERR_DANE_NO_MATCH || result == X509_V_OK)
			snprintf(reason, reasonsize, "server certificate matches no TLSA record of _%d._tcp.%s",
			    peer->port > 0 ? peer->port : 25, peer->host);
		else
			snprintf(reason, reasonsize, "DANE verification failed: %s",
			    X509_verify_cert_error_string(result));
		return -1;
	case TLS_LEVEL_VERIFY:
		if (*trust == TLS_TRUST_VERIFIED)
			return 0;
		if (SSL_get0_peer_certificate(ssl) == NULL)
			snprintf(reason, reasonsize, "server sent no certificate");
		else if (*trust == TLS_TRUST_TRUSTED)
			snprintf(reason, reasonsize, "server certificate does not match %s",
			    peer->match != NULL && peer->match[0] != NULL ? peer->match[0] : peer->host);
		else
			snprintf(reason, reasonsize, "certificate verification failed: %s",
			    X509_verify_cert_error_string(result));
		return -1;
	}
	snprintf(reason, reasonsize, "unknown TLS level %d", (int)peer->level);
	return -1;
}
