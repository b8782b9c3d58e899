/*
 * Password checks against the stored form of a Dovecot passwd-file,
 * "{SCHEME}data". Supported schemes:
 *
 *   PLAIN, CLEAR, CLEARTEXT        the password itself
 *   SHA256, SHA512                 base64 of the digest
 *   SSHA256, SSHA512               base64 of the digest of password+salt, then the salt
 *   CRYPT, SHA256-CRYPT, SHA512-CRYPT, MD5-CRYPT, BLF-CRYPT
 *                                  crypt(3) strings ($5$, $6$, $1$, $2y$, ...)
 *   ARGON2I, ARGON2ID              "$argon2id$v=19$m=...,t=...,p=...$salt$hash"
 *                                  (password_argon2.c)
 *   SCRAM-SHA-256                  "iterations,salt,StoredKey,ServerKey" (base64
 *                                  fields, Dovecot's form): the password's
 *                                  StoredKey is derived and compared
 *
 * Without a {SCHEME} prefix the data is a crypt(3) string, which is
 * Dovecot's default_pass_scheme (CRYPT).
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "authd.h"
#include "base64.h"
#include "log.h"
#include "scram.h"
#include "util.h"

static int
equal_secret(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

static int
check_crypt(const char *password, const char *hash)
{
	struct crypt_data *data;
	const char *result;
	int match;

	if (*hash == '\0')
		return -1;
	/* 32 KiB with libxcrypt: too large for the stack of an event callback. */
	data = xcalloc(1, sizeof *data);
	result = crypt_r(password, hash, data);
	/* libxcrypt returns a string starting with '*' for an invalid setting. */
	if (result == NULL || result[0] == '*') {
		free(data);
		return -1;
	}
	match = equal_secret(result, strlen(result), hash, strlen(hash));
	explicit_bzero(data, sizeof *data);
	free(data);
	return match;
}

/* {SHA256}, {SHA512} and their salted forms {SSHA256}, {SSHA512}. */
static int
check_digest(const char *password, const char *encoded, const EVP_MD *md, int salted)
{
	unsigned char digest[EVP_MAX_MD_SIZE], *stored;
	size_t digest_len = (size_t)EVP_MD_get_size(md), stored_len;
	EVP_MD_CTX *ctx;
	unsigned int n;
	int match;

	if (base64_decode(encoded, strlen(encoded), &stored, &stored_len) < 0)
		return -1;
	if (stored_len < digest_len || (!salted && stored_len != digest_len)) {
		free(stored);
		return -1;
	}

	ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, md, NULL);
	EVP_DigestUpdate(ctx, password, strlen(password));
	if (salted)
		EVP_DigestUpdate(ctx, stored + digest_len, stored_len - digest_len);
	EVP_DigestFinal_ex(ctx, digest, &n);
	EVP_MD_CTX_free(ctx);

	match = equal_secret(digest, n, stored, digest_len);
	free(stored);
	return match;
}

/* {SCRAM-SHA-256}: derive StoredKey from PASSWORD with the stored salt and count. */
static int
check_scram(const char *password, const char *data)
{
	struct scram_keys stored, derived;
	int match;

	if (scram_keys_parse(data, &stored) < 0)
		return -1;
	if (scram_keys_derive(password, stored.salt, stored.salt_len, stored.iterations,
	    &derived) < 0)
		return -1;
	match = equal_secret(derived.stored_key, SCRAM_KEY_LEN, stored.stored_key, SCRAM_KEY_LEN);
	explicit_bzero(&derived, sizeof derived);
	explicit_bzero(&stored, sizeof stored);
	return match;
}

const char *
password_plaintext(const char *stored)
{
	if (strncasecmp(stored, "{PLAIN}", 7) == 0 || strncasecmp(stored, "{CLEAR}", 7) == 0)
		return stored + 7;
	if (strncasecmp(stored, "{CLEARTEXT}", 11) == 0)
		return stored + 11;
	return NULL;
}

int
password_check(const char *stored, const char *password)
{
	const char *close, *data = password_plaintext(stored);
	char scheme[32];
	size_t len;

	if (data != NULL)
		return equal_secret(password, strlen(password), data, strlen(data));
	if (stored[0] != '{')
		return check_crypt(password, stored);
	close = strchr(stored, '}');
	if (close == NULL || (size_t)(close - stored - 1) >= sizeof scheme)
		return -1;
	len = (size_t)(close - stored - 1);
	memcpy(scheme, stored + 1, len);
	scheme[len] = '\0';
	data = close + 1;

	if (ascii_casecmp(scheme, "CRYPT") == 0 || ascii_casecmp(scheme, "SHA256-CRYPT") == 0 ||
	    ascii_casecmp(scheme, "SHA512-CRYPT") == 0 || ascii_casecmp(scheme, "MD5-CRYPT") == 0 ||
	    ascii_casecmp(scheme, "BLF-CRYPT") == 0)
		return check_crypt(password, data);
	if (ascii_casecmp(scheme, "ARGON2ID") == 0)
		return password_check_argon2(data, password, 1);
	if (ascii_casecmp(scheme, "ARGON2I") == 0)
		return password_check_argon2(data, password, 0);
	if (ascii_casecmp(scheme, "SHA256") == 0)
		return check_digest(password, data, EVP_sha256(), 0);
	if (ascii_casecmp(scheme, "SHA512") == 0)
		return check_digest(password, data, EVP_sha512(), 0);
	if (ascii_casecmp(scheme, "SSHA256") == 0)
		return check_digest(password, data, EVP_sha256(), 1);
	if (ascii_casecmp(scheme, "SSHA512") == 0)
		return check_digest(password, data, EVP_sha512(), 1);
	if (ascii_casecmp(scheme, "SCRAM-SHA-256") == 0)
		return check_scram(password, data);
	return -1;
}
