/*
 * TLS server contexts (OpenSSL 3).
 *
 * A struct tls_server wraps the default SSL_CTX. The SNI table, with one
 * SSL_CTX per further certificate, hangs off that default context as
 * ex_data and is freed with it. OpenSSL counts references to an SSL_CTX
 * and every SSL keeps one to the context it was made from, also after the
 * SNI callback switched it to another certificate. So freeing a
 * tls_server after a reload leaves the connections in progress working,
 * and the old certificates go away with the last of them.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "tls.h"
#include "tls_files.h"
#include "util.h"

/* The tls-exporter label of RFC 9266. */
#define EXPORTER_LABEL	"EXPORTER-Channel-Binding"

struct sni_entry {
	char *name;		/* lower case; "*.example.org" matches one more label */
	SSL_CTX *ctx;		/* one reference per entry */
};

struct sni_table {
	struct sni_entry *entries;
	size_t count;
};

struct tls_server {
	SSL_CTX *ctx;
};

static int sni_index = -1;

/* Whether tls_memory_setup installed the clearing allocator. */
static int memory_cleared_on_free;

/* Zero a block of OpenSSL's before glibc gets it back. */
static void
clearing_free(void *ptr, const char *file, int line)
{
	if (ptr == NULL)
		return;
	explicit_bzero(ptr, malloc_usable_size(ptr));
	free(ptr);
}

static void *
clearing_malloc(size_t size, const char *file, int line)
{
	return malloc(size);
}

/* Realloc by copying, since glibc's realloc frees the old block uncleared. */
static void *
clearing_realloc(void *ptr, size_t size, const char *file, int line)
{
	size_t old_size;
	void *fresh;

	if (ptr == NULL)
		return malloc(size);
	if (size == 0) {
		clearing_free(ptr, file, line);
		return NULL;
	}
	fresh = malloc(size);
	if (fresh == NULL)
		return NULL;
	old_size = malloc_usable_size(ptr);
	memcpy(fresh, ptr, old_size < size ? old_size : size);
	clearing_free(ptr, file, line);
	return fresh;
}

/*
 * Make OpenSSL zero every block it frees. Parsing a PEM key with OpenSSL
 * 3.0 (Debian 12) leaves the private scalar in blocks freed without
 * OPENSSL_cleanse, and a process forked later inherits them: imapd's
 * mail process, which runs as the mailbox owner, contained both keys
 * without this (tests/integration/test_break_tls_key_memory.py).
 * OpenSSL accepts an allocator only before its first allocation, so
 * this runs as a constructor, before main.
 */
__attribute__((constructor)) static void
tls_memory_setup(void)
{
	memory_cleared_on_free = CRYPTO_set_mem_functions(clearing_malloc, clearing_realloc,
	    clearing_free);
}


static void
sni_table_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct sni_table *table = ptr;

	if (table == NULL)
		return;
	for (size_t i = 0; i < table->count; i++) {
		free(table->entries[i].name);
		SSL_CTX_free(table->entries[i].ctx);
	}
	free(table->entries);
	free(table);
}

int
tls_configured(void)
{
	return config_string("tls_cert_file")[0] != '\0';
}

void
tls_error_text(char *out, size_t outsize)
{
	unsigned long code;
	size_t used = 0;

	out[0] = '\0';
	while ((code = ERR_get_error()) != 0) {
		char one[256];

		ERR_error_string_n(code, one, sizeof one);
		if (used < outsize)
			used += (size_t)snprintf(out + used, outsize - used, "%s%s",
			    used > 0 ? "; " : "", one);
	}
	if (out[0] == '\0')
		snprintf(out, outsize, "unknown error");
}

int
tls_protocol_version(const char *name)
{
	if (strcmp(name, "TLSv1") == 0)
		return TLS1_VERSION;
	if (strcmp(name, "TLSv1.1") == 0)
		return TLS1_1_VERSION;
	if (strcmp(name, "TLSv1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(name, "TLSv1.3") == 0)
		return TLS1_3_VERSION;
	return 0;
}

/* A context with the protocols, ciphers and options from the tls_* parameters. */
static SSL_CTX *
ctx_new(char *err, size_t errsize)
{
	static const unsigned char session_context[] = "estafeta";
	const char *min = config_string("tls_min_protocol");
	const char *max = config_string("tls_max_protocol");
	char reason[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "SSL_CTX_new failed: %s", reason);
		return NULL;
	}

	/*
	 * No compression (CRIME) and no renegotiation, which TLS 1.3 dropped
	 * and which only costs a server CPU time. The server's cipher order
	 * wins, since the admin chose it.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_id_context(ctx, session_context, sizeof session_context - 1);

	if (tls_protocol_version(min) > tls_protocol_version(max) ||
	    !SSL_CTX_set_min_proto_version(ctx, tls_protocol_version(min)) ||
	    !SSL_CTX_set_max_proto_version(ctx, tls_protocol_version(max))) {
		snprintf(err, errsize, "invalid TLS protocol range: tls_min_protocol %s is newer than tls_max_protocol %s",
		    min, max);
		goto failed;
	}
	if (!SSL_CTX_set_cipher_list(ctx, config_string("tls_ciphers"))) {
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "invalid tls_ciphers \"%s\": %s",
		    config_string("tls_ciphers"), reason);
		goto failed;
	}
	if (!SSL_CTX_set_ciphersuites(ctx, config_string("tls_ciphersuites"))) {
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "invalid tls_ciphersuites \"%s\": %s",
		    config_string("tls_ciphersuites"), reason);
		goto failed;
	}
	return ctx;

failed:
	SSL_CTX_free(ctx);
	return NULL;
}

/* The text of PATH from FILES, or NULL with ERR set. */
static const struct tls_file *
file_text(const struct tls_files *files, const char *path, char *err, size_t errsize)
{
	const struct tls_file *file = tls_files_find(files, path);

	if (file == NULL || file->error == EACCES) {
		snprintf(err, errsize, "cannot read %s: %s%s", path, strerror(EACCES),
		    file == NULL ? "" : " (a file added after the daemon started needs a restart)");
		return NULL;
	}
	if (file->error == EINVAL) {
		snprintf(err, errsize, "cannot read %s: not a regular file", path);
		return NULL;
	}
	if (file->error == EFBIG) {
		snprintf(err, errsize, "cannot read %s: larger than %d bytes", path, TLS_FILE_MAX);
		return NULL;
	}
	if (file->error != 0 || file->data == NULL) {
		snprintf(err, errsize, "cannot read %s: %s", path, strerror(file->error));
		return NULL;
	}
	return file;
}

/* Install the certificate chain in CERT (leaf first) into CTX. */
static int
ctx_use_chain(SSL_CTX *ctx, const struct tls_file *cert, char *err, size_t errsize)
{
	BIO *bio = BIO_new_mem_buf(cert->data, (int)cert->length);
	X509 *leaf = NULL, *extra;
	char reason[512];
	int rc = -1;

	if (bio == NULL)
		goto failed;
	leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
	if (leaf == NULL) {
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "no certificate in %s: %s", cert->path, reason);
		goto done;
	}
	if (!SSL_CTX_use_certificate(ctx, leaf))
		goto failed;

	SSL_CTX_clear_chain_certs(ctx);
	while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!SSL_CTX_add0_chain_cert(ctx, extra)) {
			X509_free(extra);
			goto failed;
		}
	}

	/* The loop ends on "no start line" at the end of the file. */
	ERR_clear_error();
	rc = 0;
	goto done;

failed:
	tls_error_text(reason, sizeof reason);
	snprintf(err, errsize, "cannot use the certificates in %s: %s", cert->path, reason);
done:
	X509_free(leaf);
	BIO_free(bio);
	return rc;
}

static int
ctx_use_key(SSL_CTX *ctx, const struct tls_file *key, char *err, size_t errsize)
{
	BIO *bio = BIO_new_mem_buf(key->data, (int)key->length);
	EVP_PKEY *pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	char reason[512];
	int rc = 0;

	if (pkey == NULL || !SSL_CTX_use_PrivateKey(ctx, pkey) || !SSL_CTX_check_private_key(ctx)) {
		tls_error_text(reason, sizeof reason);
		snprintf(err, errsize, "cannot use the private key in %s: %s", key->path, reason);
		rc = -1;
	}
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return rc;
}

/* A configured context serving CERT_PATH with the key in KEY_PATH (or in CERT_PATH). */
static SSL_CTX *
ctx_load(const struct tls_files *files, const char *cert_path, const char *key_path,
    char *err, size_t errsize)
{
	const struct tls_file *cert, *key;
	SSL_CTX *ctx;

	if (key_path == NULL || key_path[0] == '\0')
		key_path = cert_path;
	cert = file_text(files, cert_path, err, errsize);
	key = cert != NULL ? file_text(files, key_path, err, errsize) : NULL;
	if (key == NULL)
		return NULL;

	ctx = ctx_new(err, errsize);
	if (ctx == NULL)
		return NULL;
	if (ctx_use_chain(ctx, cert, err, errsize) < 0 || ctx_use_key(ctx, key, err, errsize) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void
sni_add(struct sni_table *table, const char *name, size_t length, SSL_CTX *ctx)
{
	struct sni_entry *entry;

	table->entries = xrealloc(table->entries, (table->count + 1) * sizeof *table->entries);
	entry = &table->entries[table->count++];
	entry->name = strndup(name, length);
	if (entry->name == NULL)
		fatal("strndup");
	for (char *p = entry->name; *p != '\0'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	SSL_CTX_up_ref(ctx);
	entry->ctx = ctx;
}

/*
 * Add CTX under the DNS names of its certificate: the subject alternative
 * names, or the common name when there are none (RFC 6125 clients only
 * look at the SANs, but old self-signed certificates have only a CN).
 * Returns the number of names added.
 */
static size_t
sni_add_certificate_names(struct sni_table *table, SSL_CTX *ctx)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	size_t added = 0;

	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		const unsigned char *dns;
		int length;

		if (gn->type != GEN_DNS)
			continue;
		dns = ASN1_STRING_get0_data(gn->d.dNSName);
		length = ASN1_STRING_length(gn->d.dNSName);
		if (length <= 0 || memchr(dns, '\0', (size_t)length) != NULL)
			continue;
		sni_add(table, (const char *)dns, (size_t)length, ctx);
		added++;
	}
	GENERAL_NAMES_free(names);
	if (added > 0)
		return added;

	char common_name[256];
	X509_NAME *subject = X509_get_subject_name(cert);
	int length = X509_NAME_get_text_by_NID(subject, NID_commonName, common_name,
	    sizeof common_name);

	if (length > 0) {
		sni_add(table, common_name, (size_t)length, ctx);
		added++;
	}
	return added;
}

/* Whether the certificate name PATTERN covers the SNI name NAME (lower case). */
static int
sni_match(const char *pattern, const char *name, int wildcards)
{
	const char *dot;

	if (!wildcards)
		return strcmp(pattern, name) == 0;
	if (strncmp(pattern, "*.", 2) != 0)
		return 0;
	dot = strchr(name, '.');
	return dot != NULL && dot != name && strcmp(pattern + 1, dot) == 0;
}

/* The SNI callback: switch the connection to the certificate for its name. */
static int
sni_select(SSL *ssl, int *alert, void *arg)
{
	const struct sni_table *table = arg;
	const char *sent = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	char name[256];
	size_t length;

	if (sent == NULL || table == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	length = strlen(sent);
	if (length == 0 || length >= sizeof name)
		return SSL_TLSEXT_ERR_NOACK;
	for (size_t i = 0; i <= length; i++)
		name[i] = (char)(sent[i] >= 'A' && sent[i] <= 'Z' ? sent[i] - 'A' + 'a' : sent[i]);
	if (length > 0 && name[length - 1] == '.')
		name[length - 1] = '\0';

	/* Exact names first, then wildcards, each in configuration order. */
	for (int wildcards = 0; wildcards <= 1; wildcards++) {
		for (size_t i = 0; i < table->count; i++) {
			if (!sni_match(table->entries[i].name, name, wildcards))
				continue;
			if (SSL_set_SSL_CTX(ssl, table->entries[i].ctx) == NULL)
				return SSL_TLSEXT_ERR_ALERT_FATAL;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_OK;	/* the default certificate */
}

/* Load every tls_sni_certificates item into TABLE. */
static int
sni_load(struct sni_table *table, const struct tls_files *files, char *err, size_t errsize)
{
	char *const *items = config_list("tls_sni_certificates");

	for (size_t i = 0; items[i] != NULL; i++) {
		char *name, *cert, *key;
		SSL_CTX *ctx;
		char reason[512];

		if (tls_sni_item_parse(items[i], &name, &cert, &key) < 0) {
			snprintf(err, errsize, "invalid tls_sni_certificates item \"%s\": expected [NAME=]CERT_FILE[:KEY_FILE]",
			    items[i]);
			return -1;
		}
		ctx = ctx_load(files, cert, key, reason, sizeof reason);
		if (ctx == NULL)
			snprintf(err, errsize, "tls_sni_certificates item \"%s\": %s", items[i], reason);
		else if (name != NULL)
			sni_add(table, name, strlen(name), ctx);
		else if (sni_add_certificate_names(table, ctx) == 0)
			log_warn("tls_sni_certificates item \"%s\": the certificate has no DNS name, so no client can select it",
			    items[i]);

		SSL_CTX_free(ctx);
		free(name);
		free(cert);
		free(key);
		if (ctx == NULL)
			return -1;
	}
	return 0;
}

struct tls_server *
tls_server_load(char *err, size_t errsize)
{
	struct tls_files files;
	struct sni_table *table = xcalloc(1, sizeof *table);
	struct tls_server *server = NULL;
	SSL_CTX *ctx = NULL;

	if (!tls_configured()) {
		snprintf(err, errsize, "tls_cert_file is not set");
		free(table);
		return NULL;
	}
	if (!memory_cleared_on_free)
		log_warn("OpenSSL did not accept the clearing allocator: freed key memory is not zeroed");
	if (sni_index < 0) {
		sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_table_free);
		if (sni_index < 0)
			fatalx("SSL_CTX_get_ex_new_index failed");
	}

	tls_files_collect(&files);
	if (tls_files_read(&files, err, errsize) < 0)
		goto failed;
	ctx = ctx_load(&files, config_string("tls_cert_file"), config_string("tls_key_file"),
	    err, errsize);
	if (ctx == NULL || sni_load(table, &files, err, errsize) < 0)
		goto failed;

	/* From here the context owns the table and frees it. */
	SSL_CTX_set_ex_data(ctx, sni_index, table);
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_select);
	SSL_CTX_set_tlsext_servername_arg(ctx, table);
	tls_files_free(&files);

	server = xmalloc(sizeof *server);
	server->ctx = ctx;
	log_debug("TLS context loaded: cert=%s sni_names=%zu", config_string("tls_cert_file"),
	    table->count);
	return server;

failed:
	tls_files_free(&files);
	sni_table_free(NULL, table, NULL, 0, 0, NULL);
	SSL_CTX_free(ctx);
	return NULL;
}

void
tls_server_free(struct tls_server *server)
{
	if (server == NULL)
		return;
	SSL_CTX_free(server->ctx);
	free(server);
}

int
tls_server_reload(struct tls_server **current, const char *who, char *err, size_t errsize)
{
	struct tls_server *fresh = tls_server_load(err, errsize);

	if (fresh == NULL) {
		log_warn("%s: TLS reload failed, still serving the previous certificates: %s",
		    who, err);
		return -1;
	}
	tls_server_free(*current);
	*current = fresh;
	log_info("%s: TLS certificates reloaded from %s", who, config_string("tls_cert_file"));
	return 0;
}

SSL *
tls_server_ssl_new(struct tls_server *server)
{
	SSL *ssl = SSL_new(server->ctx);

	if (ssl != NULL)
		SSL_set_accept_state(ssl);
	return ssl;
}

void
tls_describe(const SSL *ssl, char *out, size_t outsize)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
	int secret_bits, algorithm_bits = 0;

	if (cipher == NULL) {
		snprintf(out, outsize, "%s without a cipher", SSL_get_version(ssl));
		return;
	}
	secret_bits = SSL_CIPHER_get_bits(cipher, &algorithm_bits);
	snprintf(out, outsize, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
	    SSL_CIPHER_get_name(cipher), secret_bits, algorithm_bits);
}

const char *
tls_server_name(const SSL *ssl)
{
	return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}

const char *
tls_channel_binding_name(enum tls_channel_binding_type type)
{
	return type == TLS_CB_EXPORTER ? "tls-exporter" : "tls-unique";
}

int
tls_channel_binding(SSL *ssl, enum tls_channel_binding_type type, unsigned char *out,
    size_t outsize)
{
	int version = SSL_version(ssl);
	size_t length;

	if (!SSL_is_init_finished(ssl))
		return -1;

	if (type == TLS_CB_EXPORTER) {
		/* RFC 9266 allows TLS 1.2 only with the extended master secret. */
		if (version < TLS1_3_VERSION && SSL_get_extms_support(ssl) != 1)
			return -1;
		if (outsize < TLS_EXPORTER_LENGTH)
			return -1;
		/* NOTE: for TLS 1.2, implementations differ on "no context" and
		 * "empty context" (Go passes none, BouncyCastle an empty one).
		 * This passes none; TLS 1.3 makes the two equal. */
		if (SSL_export_keying_material(ssl, out, TLS_EXPORTER_LENGTH, EXPORTER_LABEL,
		    strlen(EXPORTER_LABEL), NULL, 0, 0) != 1)
			return -1;
		return TLS_EXPORTER_LENGTH;
	}

	/*
	 * tls-unique (RFC 5929 section 3.1) is the first Finished message of
	 * the latest handshake: the client's in a full handshake, the server's
	 * in a resumption. TLS 1.3 does not define it (RFC 9266).
	 */
	if (version >= TLS1_3_VERSION)
		return -1;
	if (SSL_session_reused(ssl))
		length = SSL_get_finished(ssl, out, outsize);
	else
		length = SSL_get_peer_finished(ssl, out, outsize);
	if (length == 0 || length > outsize)
		return -1;
	return (int)length;
}
