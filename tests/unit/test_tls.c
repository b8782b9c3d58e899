/*
 * Unit tests for lib/tls.c: SNI items, certificate choice by SNI, the
 * session description, channel binding and reload, with both ends of
 * each handshake in memory (a BIO pair).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "tls.h"
#include "tls_files.h"

static char directory[64];

/* Write NAME.pem and NAME.key in DIRECTORY: a self-signed P-256 certificate
 * for DNS_NAME (also its CN). */
static void
write_certificate(const char *name, const char *dns_name)
{
	char path[128], san[300];
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	FILE *fp;

	ck_assert_ptr_nonnull(key);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), (long)random());
	X509_gmtime_adj(X509_getm_notBefore(cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
	    (const unsigned char *)dns_name, -1, -1, 0);
	X509_set_issuer_name(cert, X509_get_subject_name(cert));
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	snprintf(san, sizeof san, "DNS:%s", dns_name);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	ck_assert_int_gt(X509_sign(cert, key, EVP_sha256()), 0);

	snprintf(path, sizeof path, "%s/%s.pem", directory, name);
	fp = fopen(path, "w");
	PEM_write_X509(fp, cert);
	fclose(fp);
	snprintf(path, sizeof path, "%s/%s.key", directory, name);
	fp = fopen(path, "w");
	PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL);
	fclose(fp);

	X509_free(cert);
	EVP_PKEY_free(key);
}

static void
set(const char *name, const char *value)
{
	char err[256];

	ck_assert_msg(config_set(name, value, err, sizeof err) == 0, "%s: %s", name, err);
}

static void
set_path(const char *name, const char *file)
{
	char path[128];

	snprintf(path, sizeof path, "%s/%s", directory, file);
	set(name, path);
}

static void
setup(void)
{
	char sni[300];

	strcpy(directory, "/tmp/estafeta-tls-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(directory));
	write_certificate("main", "mail.example.test");
	write_certificate("other", "other.example.test");
	write_certificate("alias", "internal.example.test");

	set_path("tls_cert_file", "main.pem");
	set_path("tls_key_file", "main.key");
	snprintf(sni, sizeof sni, "%s/other.pem:%s/other.key *.alias.test=%s/alias.pem:%s/alias.key",
	    directory, directory, directory, directory);
	set("tls_sni_certificates", sni);
}

static void
teardown(void)
{
	char command[128];

	snprintf(command, sizeof command, "rm -rf %s", directory);
	ck_assert_int_eq(system(command), 0);
}

struct pair {
	SSL_CTX *client_ctx;
	SSL *client;
	SSL *server;
};

/* Run a handshake between a new client (sending SNI_NAME, limited to
 * MAX_VERSION) and SERVER. Returns 0 when both ends completed it. */
static int
handshake(struct pair *p, struct tls_server *server, const char *sni_name, int max_version)
{
	BIO *client_bio, *server_bio;

	p->client_ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_max_proto_version(p->client_ctx, max_version);
	p->client = SSL_new(p->client_ctx);
	p->server = tls_server_ssl_new(server);
	ck_assert_ptr_nonnull(p->server);
	if (sni_name != NULL)
		SSL_set_tlsext_host_name(p->client, sni_name);
	ck_assert_int_eq(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
	SSL_set_bio(p->client, client_bio, client_bio);
	SSL_set_bio(p->server, server_bio, server_bio);
	SSL_set_connect_state(p->client);

	for (int round = 0; round < 20; round++) {
		int client_done = SSL_do_handshake(p->client) == 1;
		int server_done = SSL_do_handshake(p->server) == 1;

		if (client_done && server_done)
			return 0;
	}
	return -1;
}

static void
pair_free(struct pair *p)
{
	SSL_free(p->client);
	SSL_free(p->server);
	SSL_CTX_free(p->client_ctx);
}

/* The CN of the certificate the client received. */
static void
peer_common_name(SSL *client, char *out, size_t outsize)
{
	X509 *cert = SSL_get0_peer_certificate(client);

	ck_assert_ptr_nonnull(cert);
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out, (int)outsize);
}

START_TEST(sni_item_forms)
{
	char *name, *cert, *key;

	ck_assert_int_eq(tls_sni_item_parse("/etc/a.pem:/etc/a.key", &name, &cert, &key), 0);
	ck_assert_ptr_null(name);
	ck_assert_str_eq(cert, "/etc/a.pem");
	ck_assert_str_eq(key, "/etc/a.key");
	free(cert);
	free(key);

	ck_assert_int_eq(tls_sni_item_parse("mx.example.org=/etc/a.pem", &name, &cert, &key), 0);
	ck_assert_str_eq(name, "mx.example.org");
	ck_assert_str_eq(cert, "/etc/a.pem");
	ck_assert_ptr_null(key);
	free(name);
	free(cert);

	/* An "=" inside a path is part of the path. */
	ck_assert_int_eq(tls_sni_item_parse("/etc/x=y.pem:", &name, &cert, &key), 0);
	ck_assert_ptr_null(name);
	ck_assert_str_eq(cert, "/etc/x=y.pem");
	ck_assert_ptr_null(key);
	free(cert);

	ck_assert_int_eq(tls_sni_item_parse("=/etc/a.pem", &name, &cert, &key), -1);
	ck_assert_int_eq(tls_sni_item_parse("mx.example.org=", &name, &cert, &key), -1);
	ck_assert_int_eq(tls_sni_item_parse(":/etc/a.key", &name, &cert, &key), -1);
}
END_TEST

START_TEST(certificate_chosen_by_sni)
{
	static const struct {
		const char *sent;
		const char *expected;
	} cases[] = {
		{ NULL, "mail.example.test" },
		{ "mail.example.test", "mail.example.test" },
		{ "other.example.test", "other.example.test" },
		{ "OTHER.Example.Test", "other.example.test" },
		{ "other.example.test.", "other.example.test" },
		{ "host.alias.test", "internal.example.test" },
		{ "alias.test", "mail.example.test" },
		{ "a.b.alias.test", "mail.example.test" },
		{ "internal.example.test", "mail.example.test" },
		{ "unknown.example.test", "mail.example.test" },
	};
	char err[512], cn[256];
	struct tls_server *server = tls_server_load(err, sizeof err);

	ck_assert_msg(server != NULL, "%s", err);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pair p;

		ck_assert_int_eq(handshake(&p, server, cases[i].sent, TLS1_3_VERSION), 0);
		peer_common_name(p.client, cn, sizeof cn);
		ck_assert_msg(strcmp(cn, cases[i].expected) == 0, "SNI %s: got %s, expected %s",
		    cases[i].sent != NULL ? cases[i].sent : "(none)", cn, cases[i].expected);
		pair_free(&p);
	}
	tls_server_free(server);
}
END_TEST

START_TEST(description_names_version_and_cipher)
{
	char err[512], text[TLS_DESCRIPTION_MAX];
	struct tls_server *server = tls_server_load(err, sizeof err);
	struct pair p;

	ck_assert_ptr_nonnull(server);
	ck_assert_int_eq(handshake(&p, server, NULL, TLS1_3_VERSION), 0);
	tls_describe(p.server, text, sizeof text);
	ck_assert_str_eq(text, "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)");
	pair_free(&p);

	ck_assert_int_eq(handshake(&p, server, NULL, TLS1_2_VERSION), 0);
	tls_describe(p.server, text, sizeof text);
	ck_assert_str_eq(text, "TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits)");
	pair_free(&p);
	tls_server_free(server);
}
END_TEST

START_TEST(channel_binding_tls13)
{
	char err[512];
	unsigned char server_value[TLS_CHANNEL_BINDING_MAX], client_value[TLS_EXPORTER_LENGTH];
	struct tls_server *server = tls_server_load(err, sizeof err);
	struct pair p;
	int length;

	ck_assert_ptr_nonnull(server);
	ck_assert_int_eq(handshake(&p, server, NULL, TLS1_3_VERSION), 0);

	length = tls_channel_binding(p.server, TLS_CB_EXPORTER, server_value, sizeof server_value);
	ck_assert_int_eq(length, TLS_EXPORTER_LENGTH);
	ck_assert_int_eq(SSL_export_keying_material(p.client, client_value, sizeof client_value,
	    "EXPORTER-Channel-Binding", 24, NULL, 0, 0), 1);
	ck_assert_mem_eq(server_value, client_value, TLS_EXPORTER_LENGTH);

	/* tls-unique is not defined for TLS 1.3. */
	ck_assert_int_eq(tls_channel_binding(p.server, TLS_CB_UNIQUE, server_value,
	    sizeof server_value), -1);
	ck_assert_str_eq(tls_channel_binding_name(TLS_CB_EXPORTER), "tls-exporter");
	ck_assert_str_eq(tls_channel_binding_name(TLS_CB_UNIQUE), "tls-unique");
	pair_free(&p);
	tls_server_free(server);
}
END_TEST

START_TEST(channel_binding_tls12)
{
	char err[512];
	unsigned char server_value[TLS_CHANNEL_BINDING_MAX], client_value[TLS_CHANNEL_BINDING_MAX];
	struct tls_server *server = tls_server_load(err, sizeof err);
	struct pair p;
	int length;
	size_t client_length;

	ck_assert_ptr_nonnull(server);
	ck_assert_int_eq(handshake(&p, server, NULL, TLS1_2_VERSION), 0);

	/* In a full handshake the client's Finished comes first (RFC 5929). */
	length = tls_channel_binding(p.server, TLS_CB_UNIQUE, server_value, sizeof server_value);
	client_length = SSL_get_finished(p.client, client_value, sizeof client_value);
	ck_assert_int_eq(length, 12);
	ck_assert_uint_eq(client_length, 12);
	ck_assert_mem_eq(server_value, client_value, 12);

	/* OpenSSL 3 negotiates the extended master secret, so tls-exporter works. */
	ck_assert_int_eq(SSL_get_extms_support(p.server), 1);
	ck_assert_int_eq(tls_channel_binding(p.server, TLS_CB_EXPORTER, server_value,
	    sizeof server_value), TLS_EXPORTER_LENGTH);
	pair_free(&p);
	tls_server_free(server);
}
END_TEST

START_TEST(channel_binding_before_handshake)
{
	char err[512];
	unsigned char value[TLS_CHANNEL_BINDING_MAX];
	struct tls_server *server = tls_server_load(err, sizeof err);
	SSL *ssl;

	ck_assert_ptr_nonnull(server);
	ssl = tls_server_ssl_new(server);
	ck_assert_int_eq(tls_channel_binding(ssl, TLS_CB_EXPORTER, value, sizeof value), -1);
	ck_assert_int_eq(tls_channel_binding(ssl, TLS_CB_UNIQUE, value, sizeof value), -1);
	SSL_free(ssl);
	tls_server_free(server);
}
END_TEST

START_TEST(reload_keeps_connections)
{
	char err[512], cn[256];
	struct tls_server *server = tls_server_load(err, sizeof err);
	struct pair before, after;
	BIO *client_bio, *server_bio;

	ck_assert_ptr_nonnull(server);

	/* A connection made before the reload, its handshake not yet run. */
	before.client_ctx = SSL_CTX_new(TLS_client_method());
	before.client = SSL_new(before.client_ctx);
	before.server = tls_server_ssl_new(server);
	SSL_set_tlsext_host_name(before.client, "other.example.test");

	/* The main certificate changes name, and the reload drops the old context. */
	write_certificate("main", "new.example.test");
	ck_assert_int_eq(tls_server_reload(&server, "test", err, sizeof err), 0);

	ck_assert_int_eq(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
	SSL_set_bio(before.client, client_bio, client_bio);
	SSL_set_bio(before.server, server_bio, server_bio);
	SSL_set_connect_state(before.client);
	for (int round = 0; round < 20; round++) {
		SSL_do_handshake(before.client);
		SSL_do_handshake(before.server);
	}
	ck_assert(SSL_is_init_finished(before.server));
	peer_common_name(before.client, cn, sizeof cn);
	ck_assert_str_eq(cn, "other.example.test");
	pair_free(&before);

	ck_assert_int_eq(handshake(&after, server, NULL, TLS1_3_VERSION), 0);
	peer_common_name(after.client, cn, sizeof cn);
	ck_assert_str_eq(cn, "new.example.test");
	pair_free(&after);
	tls_server_free(server);
}
END_TEST

START_TEST(failed_reload_keeps_context)
{
	char err[512], cn[256], path[128];
	struct tls_server *server = tls_server_load(err, sizeof err);
	struct tls_server *kept = server;
	struct pair p;
	FILE *fp;

	ck_assert_ptr_nonnull(server);
	snprintf(path, sizeof path, "%s/main.pem", directory);
	fp = fopen(path, "w");
	fputs("not a certificate\n", fp);
	fclose(fp);

	ck_assert_int_eq(tls_server_reload(&server, "test", err, sizeof err), -1);
	ck_assert_ptr_eq(server, kept);
	ck_assert_msg(strstr(err, "no certificate in ") != NULL, "%s", err);

	ck_assert_int_eq(handshake(&p, server, NULL, TLS1_3_VERSION), 0);
	peer_common_name(p.client, cn, sizeof cn);
	ck_assert_str_eq(cn, "mail.example.test");
	pair_free(&p);
	tls_server_free(server);
}
END_TEST

START_TEST(load_errors)
{
	char err[512];

	set_path("tls_key_file", "other.key");
	ck_assert_ptr_null(tls_server_load(err, sizeof err));
	ck_assert_msg(strstr(err, "cannot use the private key in ") != NULL, "%s", err);

	set_path("tls_key_file", "missing.key");
	ck_assert_ptr_null(tls_server_load(err, sizeof err));
	ck_assert_msg(strstr(err, "missing.key: No such file or directory") != NULL, "%s", err);

	set_path("tls_key_file", "main.key");
	set("tls_sni_certificates", "=/nowhere.pem");
	ck_assert_ptr_null(tls_server_load(err, sizeof err));
	ck_assert_msg(strstr(err, "invalid tls_sni_certificates item") != NULL, "%s", err);

	set("tls_sni_certificates", "");
	set("tls_ciphersuites", "TLS_NO_SUCH_SUITE");
	ck_assert_ptr_null(tls_server_load(err, sizeof err));
	ck_assert_msg(strstr(err, "invalid tls_ciphersuites") != NULL, "%s", err);

	set("tls_ciphersuites", "TLS_AES_128_GCM_SHA256");
	set("tls_min_protocol", "TLSv1.3");
	set("tls_max_protocol", "TLSv1.2");
	ck_assert_ptr_null(tls_server_load(err, sizeof err));
	ck_assert_msg(strstr(err, "tls_min_protocol TLSv1.3 is newer than tls_max_protocol TLSv1.2") != NULL,
	    "%s", err);

	set("tls_max_protocol", "TLSv1.3");
	set("tls_cert_file", "");
	ck_assert_int_eq(tls_configured(), 0);
	ck_assert_ptr_null(tls_server_load(err, sizeof err));
	ck_assert_str_eq(err, "tls_cert_file is not set");
}
END_TEST

/* open(2) of a FIFO waits for a writer, so the load must not open it blocking. */
START_TEST(load_rejects_fifo_key)
{
	char err[512], path[128];

	snprintf(path, sizeof path, "%s/main.key", directory);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	alarm(5);

	ck_assert_ptr_null(tls_server_load(err, sizeof err));
	alarm(0);
	ck_assert_msg(strstr(err, "main.key: not a regular file") != NULL, "%s", err);
}
END_TEST

START_TEST(load_rejects_directory_key)
{
	char err[512];

	set("tls_key_file", directory);

	ck_assert_ptr_null(tls_server_load(err, sizeof err));
	ck_assert_msg(strstr(err, ": not a regular file") != NULL, "%s", err);
}
END_TEST

/* lib/tls.c replaces OpenSSL's allocator before main, so that freed key
 * objects are zeroed. An OpenSSL allocation before it keeps the default. */
START_TEST(openssl_allocator_replaced)
{
	CRYPTO_malloc_fn malloc_function;
	CRYPTO_realloc_fn realloc_function;
	CRYPTO_free_fn free_function;

	CRYPTO_get_mem_functions(&malloc_function, &realloc_function, &free_function);

	ck_assert_ptr_ne((void *)malloc_function, (void *)CRYPTO_malloc);
	ck_assert_ptr_ne((void *)realloc_function, (void *)CRYPTO_realloc);
	ck_assert_ptr_ne((void *)free_function, (void *)CRYPTO_free);
}
END_TEST

Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, sni_item_forms);
	tcase_add_test(tc, certificate_chosen_by_sni);
	tcase_add_test(tc, description_names_version_and_cipher);
	tcase_add_test(tc, channel_binding_tls13);
	tcase_add_test(tc, channel_binding_tls12);
	tcase_add_test(tc, channel_binding_before_handshake);
	tcase_add_test(tc, reload_keeps_connections);
	tcase_add_test(tc, failed_reload_keeps_context);
	tcase_add_test(tc, load_errors);
	tcase_add_test(tc, load_rejects_fifo_key);
	tcase_add_test(tc, load_rejects_directory_key);
	tcase_add_test(tc, openssl_allocator_replaced);
	suite_add_tcase(s, tc);
	return s;
}
