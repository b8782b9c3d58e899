/*
 * Unit tests for lib/tls_client.c: CA verification, host name checks and
 * DANE TLSA matching, with both ends of each handshake in memory (a BIO
 * pair) and certificates made by the test.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "tls_client.h"

static char directory[64];

struct identity {
	EVP_PKEY *key;
	X509 *cert;
};

/* A trusted CA, a server certificate it signed, and an unrelated CA. */
static struct identity ca, server, stranger;

static void
add_extension(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	ck_assert_ptr_nonnull(ext);
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
}

/* Make ID a P-256 certificate for NAME, signed by ISSUER (NULL: itself, a CA). */
static void
make_identity(struct identity *id, const char *name, const struct identity *issuer)
{
	char san[300];

	id->key = EVP_EC_gen("P-256");
	id->cert = X509_new();
	ck_assert_ptr_nonnull(id->key);
	X509_set_version(id->cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(id->cert), (long)random());
	X509_gmtime_adj(X509_getm_notBefore(id->cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(id->cert), 86400);
	X509_set_pubkey(id->cert, id->key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(id->cert), "CN", MBSTRING_ASC,
	    (const unsigned char *)name, -1, -1, 0);

	if (issuer == NULL) {
		X509_set_issuer_name(id->cert, X509_get_subject_name(id->cert));
		add_extension(id->cert, id->cert, NID_basic_constraints, "critical,CA:TRUE");
		add_extension(id->cert, id->cert, NID_key_usage, "critical,keyCertSign,cRLSign");
		ck_assert_int_gt(X509_sign(id->cert, id->key, EVP_sha256()), 0);
		return;
	}
	X509_set_issuer_name(id->cert, X509_get_subject_name(issuer->cert));
	snprintf(san, sizeof san, "DNS:%s", name);
	add_extension(id->cert, issuer->cert, NID_subject_alt_name, san);
	add_extension(id->cert, issuer->cert, NID_basic_constraints, "CA:FALSE");
	ck_assert_int_gt(X509_sign(id->cert, issuer->key, EVP_sha256()), 0);
}

static void
write_pem(const char *file, X509 *cert)
{
	char path[128];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s", directory, file);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	PEM_write_X509(fp, cert);
	fclose(fp);
}

static void
set(const char *name, const char *value)
{
	char err[256];

	ck_assert_msg(config_set(name, value, err, sizeof err) == 0, "%s: %s", name, err);
}

static void
use_cafile(const char *file)
{
	char path[128];

	snprintf(path, sizeof path, "%s/%s", directory, file);
	set("smtp_tls_CAfile", path);
}

static void
setup(void)
{
	strcpy(directory, "/tmp/estafeta-tlsc-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(directory));
	make_identity(&ca, "Test CA", NULL);
	make_identity(&server, "mx.example.test", &ca);
	make_identity(&stranger, "Other CA", NULL);
	write_pem("ca.pem", ca.cert);
	write_pem("stranger.pem", stranger.cert);
	use_cafile("ca.pem");
}

static void
teardown(void)
{
	char command[128];
	struct identity *all[] = { &ca, &server, &stranger };

	for (size_t i = 0; i < 3; i++) {
		X509_free(all[i]->cert);
		EVP_PKEY_free(all[i]->key);
	}
	snprintf(command, sizeof command, "rm -rf %s", directory);
	ck_assert_int_eq(system(command), 0);
}

/* The SHA-256 digest of the certificate (SELECTOR 0) or its public key (1). */
static void
digest(X509 *cert, int selector, unsigned char out[32])
{
	unsigned char *der = NULL;
	int length = selector == 0 ? i2d_X509(cert, &der) : i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	unsigned int out_length = 0;

	ck_assert_int_gt(length, 0);
	ck_assert_int_eq(EVP_Digest(der, (size_t)length, out, &out_length, EVP_sha256(), NULL), 1);
	OPENSSL_free(der);
}

/* Set by a test: the server sends the CA certificate after its own. */
static int send_ca_in_chain;

struct session {
	struct tls_client *client;
	SSL_CTX *server_ctx;
	SSL *client_ssl;
	SSL *server_ssl;
	enum tls_trust trust;
	char reason[256];
	int verified;	/* tls_client_verify's return value */
};

/* Connect a client made for PEER to a server presenting server.cert, then
 * run tls_client_verify. */
static void
run_session(struct session *s, const struct tls_peer *peer)
{
	char err[256];
	BIO *client_bio, *server_bio;
	int done = 0;

	memset(s, 0, sizeof *s);
	s->client = tls_client_new(err, sizeof err);
	ck_assert_msg(s->client != NULL, "tls_client_new: %s", err);
	s->client_ssl = tls_client_ssl_new(s->client, peer, err, sizeof err);
	ck_assert_msg(s->client_ssl != NULL, "tls_client_ssl_new: %s", err);

	s->server_ctx = SSL_CTX_new(TLS_server_method());
	ck_assert_int_eq(SSL_CTX_use_certificate(s->server_ctx, server.cert), 1);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey(s->server_ctx, server.key), 1);
	if (send_ca_in_chain)
		ck_assert_int_eq(SSL_CTX_add1_chain_cert(s->server_ctx, ca.cert), 1);
	s->server_ssl = SSL_new(s->server_ctx);
	SSL_set_accept_state(s->server_ssl);
	ck_assert_int_eq(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
	SSL_set_bio(s->client_ssl, client_bio, client_bio);
	SSL_set_bio(s->server_ssl, server_bio, server_bio);

	for (int round = 0; round < 20 && !done; round++) {
		int client_done = SSL_do_handshake(s->client_ssl) == 1;
		int server_done = SSL_do_handshake(s->server_ssl) == 1;

		done = client_done && server_done;
	}
	ck_assert_msg(done, "handshake did not complete");
	s->verified = tls_client_verify(s->client_ssl, peer, &s->trust, s->reason, sizeof s->reason);
}

static void
session_free(struct session *s)
{
	SSL_free(s->client_ssl);
	SSL_free(s->server_ssl);
	SSL_CTX_free(s->server_ctx);
	tls_client_free(s->client);
}

START_TEST(verify_matching_name)
{
	struct tls_peer peer = { .level = TLS_LEVEL_VERIFY, .host = "mx.example.test" };
	struct session s;

	run_session(&s, &peer);
	ck_assert_int_eq(s.verified, 0);
	ck_assert_int_eq(s.trust, TLS_TRUST_VERIFIED);
	session_free(&s);
}
END_TEST

START_TEST(verify_other_name_is_trusted_only)
{
	struct tls_peer peer = { .level = TLS_LEVEL_VERIFY, .host = "mx2.example.test" };
	struct session s;

	run_session(&s, &peer);
	ck_assert_int_eq(s.verified, -1);
	ck_assert_int_eq(s.trust, TLS_TRUST_TRUSTED);
	ck_assert_ptr_nonnull(strstr(s.reason, "does not match mx2.example.test"));
	session_free(&s);
}
END_TEST

START_TEST(verify_parent_domain_match)
{
	const char *match[] = { "other.test", ".example.test", NULL };
	struct tls_peer peer = { .level = TLS_LEVEL_VERIFY, .host = "mx.example.test", .match = match };
	struct session s;

	run_session(&s, &peer);
	ck_assert_int_eq(s.verified, 0);
	ck_assert_int_eq(s.trust, TLS_TRUST_VERIFIED);
	session_free(&s);
}
END_TEST

START_TEST(verify_unknown_ca)
{
	struct tls_peer peer = { .level = TLS_LEVEL_VERIFY, .host = "mx.example.test" };
	struct session s;

	use_cafile("stranger.pem");
	run_session(&s, &peer);
	ck_assert_int_eq(s.verified, -1);
	ck_assert_int_eq(s.trust, TLS_TRUST_UNTRUSTED);
	ck_assert_ptr_nonnull(strstr(s.reason, "certificate verification failed"));
	session_free(&s);
}
END_TEST

START_TEST(may_accepts_unknown_ca)
{
	struct tls_peer peer = { .level = TLS_LEVEL_MAY, .host = "mx.example.test" };
	struct session s;

	use_cafile("stranger.pem");
	run_session(&s, &peer);
	ck_assert_int_eq(s.verified, 0);
	ck_assert_int_eq(s.trust, TLS_TRUST_UNTRUSTED);
	ck_assert_ptr_nonnull(SSL_get_servername(s.client_ssl, TLSEXT_NAMETYPE_host_name));
	session_free(&s);
}
END_TEST

START_TEST(may_with_known_ca_is_trusted)
{
	struct tls_peer peer = { .level = TLS_LEVEL_MAY, .host = "other.example.test" };
	struct session s;

	run_session(&s, &peer);
	ck_assert_int_eq(s.verified, 0);
	ck_assert_int_eq(s.trust, TLS_TRUST_TRUSTED);
	session_free(&s);
}
END_TEST

START_TEST(dane_ee_match_without_ca)
{
	unsigned char hash[32];
	struct tls_tlsa tlsa = { 3, 1, 1, hash, sizeof hash };
	/* DANE-EE needs neither a trusted CA nor a matching name. */
	struct tls_peer peer = { .level = TLS_LEVEL_DANE, .host = "elsewhere.example.test",
	    .tlsa = &tlsa, .tlsa_count = 1 };
	struct session s;

	use_cafile("stranger.pem");
	digest(server.cert, 1, hash);
	run_session(&s, &peer);
	ck_assert_msg(s.verified == 0, "%s", s.reason);
	ck_assert_int_eq(s.trust, TLS_TRUST_VERIFIED);
	session_free(&s);
}
END_TEST

START_TEST(dane_ee_wrong_digest)
{
	unsigned char hash[32];
	struct tls_tlsa tlsa = { 3, 1, 1, hash, sizeof hash };
	struct tls_peer peer = { .level = TLS_LEVEL_DANE, .host = "mx.example.test",
	    .tlsa = &tlsa, .tlsa_count = 1 };
	struct session s;

	digest(stranger.cert, 1, hash);
	run_session(&s, &peer);
	ck_assert_int_eq(s.verified, -1);
	ck_assert_int_eq(s.trust, TLS_TRUST_UNTRUSTED);
	ck_assert_msg(strstr(s.reason, "matches no TLSA record of _25._tcp.mx.example.test") != NULL,
	    "%s", s.reason);
	session_free(&s);
}
END_TEST

START_TEST(dane_ee_second_record_matches)
{
	unsigned char wrong[32], right[32];
	struct tls_tlsa tlsa[] = { { 3, 1, 1, wrong, sizeof wrong }, { 3, 0, 1, right, sizeof right } };
	struct tls_peer peer = { .level = TLS_LEVEL_DANE, .host = "mx.example.test",
	    .tlsa = tlsa, .tlsa_count = 2 };
	struct session s;

	digest(stranger.cert, 1, wrong);
	digest(server.cert, 0, right);
	run_session(&s, &peer);
	ck_assert_msg(s.verified == 0, "%s", s.reason);
	session_free(&s);
}
END_TEST

/* DANE-TA(2) with the CA's digest: the server sends the CA in its chain,
 * and the certificate must name HOST. No CA file trusts the CA. */
static void
run_dane_ta(struct session *s, const char *host)
{
	unsigned char hash[32];
	struct tls_tlsa tlsa = { 2, 0, 1, hash, sizeof hash };
	struct tls_peer peer = { .level = TLS_LEVEL_DANE, .host = host, .tlsa = &tlsa, .tlsa_count = 1 };

	use_cafile("stranger.pem");
	digest(ca.cert, 0, hash);
	send_ca_in_chain = 1;
	run_session(s, &peer);
	send_ca_in_chain = 0;
}

START_TEST(dane_ta_match)
{
	struct session s;

	run_dane_ta(&s, "mx.example.test");
	ck_assert_msg(s.verified == 0, "%s", s.reason);
	ck_assert_int_eq(s.trust, TLS_TRUST_VERIFIED);
	session_free(&s);
}
END_TEST

START_TEST(dane_ta_checks_name)
{
	struct session s;

	run_dane_ta(&s, "other.example.test");
	ck_assert_int_eq(s.verified, -1);
	ck_assert_msg(strstr(s.reason, "DANE verification failed") != NULL, "%s", s.reason);
	session_free(&s);
}
END_TEST

START_TEST(tlsa_usable_records)
{
	unsigned char data[64] = { 0 };
	struct tls_tlsa cases[] = {
		{ 3, 1, 1, data, 32 },
		{ 2, 0, 2, data, 64 },
		{ 3, 0, 0, data, 10 },
		{ 0, 0, 1, data, 32 },	/* PKIX-TA is not for SMTP */
		{ 1, 1, 1, data, 32 },	/* PKIX-EE is not for SMTP */
		{ 3, 2, 1, data, 32 },	/* unknown selector */
		{ 3, 1, 3, data, 32 },	/* unknown matching type */
		{ 3, 1, 1, data, 31 },	/* SHA-256 digest of the wrong length */
	};
	int expected[] = { 1, 1, 1, 0, 0, 0, 0, 0 };

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ck_assert_msg(tls_tlsa_usable(&cases[i]) == expected[i], "case %zu", i);
}
END_TEST

START_TEST(dane_without_usable_record)
{
	unsigned char data[32] = { 0 };
	struct tls_tlsa tlsa = { 1, 1, 1, data, sizeof data };
	struct tls_peer peer = { .level = TLS_LEVEL_DANE, .host = "mx.example.test",
	    .tlsa = &tlsa, .tlsa_count = 1 };
	char err[256];
	struct tls_client *client = tls_client_new(err, sizeof err);

	ck_assert_ptr_nonnull(client);
	ck_assert_ptr_null(tls_client_ssl_new(client, &peer, err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, "no usable TLSA record"));
	tls_client_free(client);
}
END_TEST

START_TEST(no_sni_for_address_literal)
{
	static const char *const hosts[] = { "192.0.2.25", "[192.0.2.25]", "2001:db8::25",
	    "[IPv6:2001:db8::25]" };
	char err[256];
	struct tls_client *client = tls_client_new(err, sizeof err);

	ck_assert_ptr_nonnull(client);
	for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
		struct tls_peer peer = { .level = TLS_LEVEL_MAY, .host = hosts[i] };
		SSL *ssl = tls_client_ssl_new(client, &peer, err, sizeof err);

		ck_assert_ptr_nonnull(ssl);
		ck_assert_msg(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) == NULL, "%s", hosts[i]);
		SSL_free(ssl);
	}
	tls_client_free(client);
}
END_TEST

START_TEST(missing_cafile)
{
	char err[256];

	set("smtp_tls_CAfile", "/nonexistent/ca.pem");
	ck_assert_ptr_null(tls_client_new(err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, "smtp_tls_CAfile /nonexistent/ca.pem"));
}
END_TEST

START_TEST(level_names)
{
	ck_assert_int_eq(tls_level_parse("dane"), TLS_LEVEL_DANE);
	ck_assert_int_eq(tls_level_parse("verify"), TLS_LEVEL_VERIFY);
	ck_assert_int_eq(tls_level_parse("secure"), -1);
	ck_assert_str_eq(tls_level_name(TLS_LEVEL_ENCRYPT), "encrypt");
	ck_assert_str_eq(tls_trust_name(TLS_TRUST_TRUSTED), "Trusted");
}
END_TEST

Suite *
tls_client_suite(void)
{
	Suite *s = suite_create("tls_client");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, verify_matching_name);
	tcase_add_test(tc, verify_other_name_is_trusted_only);
	tcase_add_test(tc, verify_parent_domain_match);
	tcase_add_test(tc, verify_unknown_ca);
	tcase_add_test(tc, may_accepts_unknown_ca);
	tcase_add_test(tc, may_with_known_ca_is_trusted);
	tcase_add_test(tc, dane_ee_match_without_ca);
	tcase_add_test(tc, dane_ee_wrong_digest);
	tcase_add_test(tc, dane_ee_second_record_matches);
	tcase_add_test(tc, dane_ta_match);
	tcase_add_test(tc, dane_ta_checks_name);
	tcase_add_test(tc, tlsa_usable_records);
	tcase_add_test(tc, dane_without_usable_record);
	tcase_add_test(tc, no_sni_for_address_literal);
	tcase_add_test(tc, missing_cafile);
	tcase_add_test(tc, level_names);
	suite_add_tcase(s, tc);
	return s;
}
