/*
 * SCRAM-SHA-256 messages and keys (RFC 5802 with SHA-256 from RFC 7677).
 *
 *   client-first  = gs2-header client-first-bare
 *   gs2-header    = ("n" / "y" / "p=" cb-name) "," ["a=" saslname] ","
 *   client-first-bare = ["m=" ext ","] "n=" saslname ",r=" c-nonce ["," ext]*
 *   client-final  = "c=" base64 ",r=" nonce ["," ext]* ",p=" base64
 *
 * A saslname is UTF-8 without NUL or ",", in which "=" appears only as
 * "=2C" (for ",") or "=3D" (for "="). The password is used as sent,
 * without SASLprep, as Dovecot does.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base64.h"
#include "scram.h"
#include "util.h"

static const char *const error_names[] = {
	[SCRAM_OK] = "",
	[SCRAM_E_INVALID_ENCODING] = "invalid-encoding",
	[SCRAM_E_EXTENSIONS_NOT_SUPPORTED] = "extensions-not-supported",
	[SCRAM_E_INVALID_PROOF] = "invalid-proof",
	[SCRAM_E_CHANNEL_BINDINGS_DONT_MATCH] = "channel-bindings-dont-match",
	[SCRAM_E_SERVER_DOES_SUPPORT_CHANNEL_BINDING] = "server-does-support-channel-binding",
	[SCRAM_E_CHANNEL_BINDING_NOT_SUPPORTED] = "channel-binding-not-supported",
	[SCRAM_E_UNSUPPORTED_CHANNEL_BINDING_TYPE] = "unsupported-channel-binding-type",
	[SCRAM_E_INVALID_USERNAME_ENCODING] = "invalid-username-encoding",
	[SCRAM_E_OTHER_ERROR] = "other-error",
};

const char *
scram_error_name(enum scram_error error)
{
	return error_names[error];
}

/* Whether the LEN bytes at TEXT are well-formed UTF-8 (RFC 3629). */
static int
utf8_valid(const unsigned char *text, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = text[i];
		size_t extra;
		unsigned long cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			extra = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			extra = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			extra = 3, cp = c & 0x07;
		else
			return 0;
		if (len - i <= extra)
			return 0;
		for (size_t k = 1; k <= extra; k++) {
			if ((text[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (text[i + k] & 0x3f);
		}
		/* Overlong forms, surrogates and code points past U+10FFFF. */
		if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		i += extra + 1;
	}
	return 1;
}

/* Decode the saslname of LEN bytes at TEXT into a new string, or NULL. */
static char *
saslname_decode(const char *text, size_t len)
{
	char *out = xmalloc(len + 1), *o = out;

	for (size_t i = 0; i < len; i++) {
		if (text[i] != '=') {
			*o++ = text[i];
			continue;
		}
		if (len - i >= 3 && strncmp(text + i, "=2C", 3) == 0)
			*o++ = ',';
		else if (len - i >= 3 && strncmp(text + i, "=3D", 3) == 0)
			*o++ = '=';
		else
			goto invalid;
		i += 2;
	}
	*o = '\0';
	if (o == out || !utf8_valid((unsigned char *)out, (size_t)(o - out)))
		goto invalid;
	return out;

invalid:
	free(out);
	return NULL;
}

/* Whether the LEN bytes at TEXT form a nonce: printable ASCII except ",". */
static int
nonce_valid(const char *text, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (text[i] < 0x21 || text[i] > 0x7e || text[i] == ',')
			return 0;
	return 1;
}

/* Whether TEXT (up to END) is "," attr-val items: ALPHA "=" value, each. */
static int
extensions_valid(const char *text, const char *end)
{
	while (text < end) {
		const char *comma;

		if (*text++ != ',' || end - text < 2)
			return 0;
		if (!((*text >= 'a' && *text <= 'z') || (*text >= 'A' && *text <= 'Z')) ||
		    text[1] != '=')
			return 0;
		comma = memchr(text, ',', (size_t)(end - text));
		text = comma != NULL ? comma : end;
	}
	return 1;
}

/* The length of the field starting at TEXT, up to the next "," or END. */
static size_t
field_len(const char *text, const char *end)
{
	const char *comma = memchr(text, ',', (size_t)(end - text));

	return (size_t)((comma != NULL ? comma : end) - text);
}

static enum scram_error
parse_gs2_header(const char *message, const char *end, struct scram_client_first *out,
    const char **rest)
{
	const char *p = message;
	size_t len;

	if (end - p >= 2 && (p[0] == 'n' || p[0] == 'y') && p[1] == ',') {
		out->cbind_flag = p[0];
		p += 2;
	} else if (end - p >= 2 && p[0] == 'p' && p[1] == '=') {
		p += 2;
		len = field_len(p, end);
		if (len == 0 || len > SCRAM_CBIND_TYPE_MAX || p + len == end)
			return SCRAM_E_INVALID_ENCODING;
		for (size_t i = 0; i < len; i++)
			if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			    "0123456789.-", p[i]) == NULL)
				return SCRAM_E_INVALID_ENCODING;
		out->cbind_flag = 'p';
		memcpy(out->cbind_type, p, len);
		out->cbind_type[len] = '\0';
		p += len + 1;
	} else {
		return SCRAM_E_INVALID_ENCODING;
	}

	if (end - p >= 2 && p[0] == 'a' && p[1] == '=') {
		p += 2;
		len = field_len(p, end);
		if (p + len == end || (out->authzid = saslname_decode(p, len)) == NULL)
			return SCRAM_E_INVALID_USERNAME_ENCODING;
		p += len;
	}
	if (p == end || *p != ',')
		return SCRAM_E_INVALID_ENCODING;
	p++;
	out->gs2_header = xstrndup(message, (size_t)(p - message));
	*rest = p;
	return SCRAM_OK;
}

enum scram_error
scram_parse_client_first(const char *message, size_t len, struct scram_client_first *out)
{
	const char *end = message + len, *p;
	enum scram_error error;
	size_t n;

	memset(out, 0, sizeof *out);
	if (memchr(message, '\0', len) != NULL)
		return SCRAM_E_INVALID_ENCODING;
	error = parse_gs2_header(message, end, out, &p);
	if (error != SCRAM_OK)
		return error;
	out->bare = xstrndup(p, (size_t)(end - p));

	/* A mandatory extension ("m=") is one this server cannot know. */
	if (end - p >= 2 && p[0] == 'm' && p[1] == '=')
		return SCRAM_E_EXTENSIONS_NOT_SUPPORTED;

	if (end - p < 2 || p[0] != 'n' || p[1] != '=')
		return SCRAM_E_INVALID_ENCODING;
	p += 2;
	n = field_len(p, end);
	if ((out->username = saslname_decode(p, n)) == NULL)
		return SCRAM_E_INVALID_USERNAME_ENCODING;
	p += n;

	if (end - p < 3 || strncmp(p, ",r=", 3) != 0)
		return SCRAM_E_INVALID_ENCODING;
	p += 3;
	n = field_len(p, end);
	if (!nonce_valid(p, n))
		return SCRAM_E_INVALID_ENCODING;
	out->client_nonce = xstrndup(p, n);
	p += n;

	return extensions_valid(p, end) ? SCRAM_OK : SCRAM_E_INVALID_ENCODING;
}

void
scram_client_first_clear(struct scram_client_first *first)
{
	free(first->gs2_header);
	free(first->authzid);
	free(first->username);
	free(first->client_nonce);
	free(first->bare);
	memset(first, 0, sizeof *first);
}

enum scram_error
scram_parse_client_final(const char *message, size_t len, struct scram_client_final *out)
{
	const char *end = message + len, *proof = NULL, *p = message;
	size_t n;

	memset(out, 0, sizeof *out);
	if (memchr(message, '\0', len) != NULL)
		return SCRAM_E_INVALID_ENCODING;

	/* The proof is the last attribute, and values never contain ",". */
	for (const char *q = message; q + 3 <= end; q++)
		if (strncmp(q, ",p=", 3) == 0)
			proof = q;
	if (proof == NULL || field_len(proof + 3, end) != (size_t)(end - proof - 3))
		return SCRAM_E_INVALID_ENCODING;
	out->without_proof = xstrndup(message, (size_t)(proof - message));
	if (base64_decode(proof + 3, (size_t)(end - proof - 3), &out->proof, &out->proof_len) < 0)
		return SCRAM_E_INVALID_ENCODING;

	if (proof - p < 2 || strncmp(p, "c=", 2) != 0)
		return SCRAM_E_INVALID_ENCODING;
	p += 2;
	n = field_len(p, proof);
	if (base64_decode(p, n, &out->cbind_input, &out->cbind_input_len) < 0)
		return SCRAM_E_INVALID_ENCODING;
	p += n;

	if (proof - p < 3 || strncmp(p, ",r=", 3) != 0)
		return SCRAM_E_INVALID_ENCODING;
	p += 3;
	n = field_len(p, proof);
	if (!nonce_valid(p, n))
		return SCRAM_E_INVALID_ENCODING;
	out->nonce = xstrndup(p, n);
	p += n;

	return extensions_valid(p, proof) ? SCRAM_OK : SCRAM_E_INVALID_ENCODING;
}

void
scram_client_final_clear(struct scram_client_final *final)
{
	free(final->cbind_input);
	free(final->nonce);
	free(final->proof);
	free(final->without_proof);
	memset(final, 0, sizeof *final);
}

/* Decode the base64 field of TEXT up to its "," (or the end) into OUT of exactly SIZE bytes. */
static int
decode_exact(const char *text, unsigned char *out, size_t size, size_t *used)
{
	size_t len = strcspn(text, ","), outlen;
	unsigned char *data;

	if (base64_decode(text, len, &data, &outlen) < 0)
		return -1;
	if (outlen > size || (used == NULL && outlen != size)) {
		free(data);
		return -1;
	}
	memcpy(out, data, outlen);
	if (used != NULL)
		*used = outlen;
	free(data);
	return (int)len;
}

int
scram_keys_parse(const char *data, struct scram_keys *keys)
{
	char *end;
	unsigned long iterations;
	int n;

	memset(keys, 0, sizeof *keys);
	if (*data < '1' || *data > '9')
		return -1;
	iterations = strtoul(data, &end, 10);
	if (*end != ',' || iterations > UINT_MAX)
		return -1;
	keys->iterations = (unsigned)iterations;
	data = end + 1;

	n = decode_exact(data, keys->salt, sizeof keys->salt, &keys->salt_len);
	if (n < 0 || data[n] != ',' || keys->salt_len == 0)
		return -1;
	data += n + 1;
	n = decode_exact(data, keys->stored_key, SCRAM_KEY_LEN, NULL);
	if (n < 0 || data[n] != ',')
		return -1;
	data += n + 1;
	n = decode_exact(data, keys->server_key, SCRAM_KEY_LEN, NULL);
	return n >= 0 && data[n] == '\0' ? 0 : -1;
}

static void
hmac_sha256(const unsigned char *key, size_t key_len, const void *data, size_t len,
    unsigned char out[SCRAM_KEY_LEN])
{
	unsigned int out_len = SCRAM_KEY_LEN;

	HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len);
}

int
scram_keys_derive(const char *password, const unsigned char *salt, size_t salt_len,
    unsigned iterations, struct scram_keys *keys)
{
	unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];

	if (salt_len > sizeof keys->salt || iterations == 0 || iterations > INT_MAX)
		return -1;
	memset(keys, 0, sizeof *keys);
	keys->iterations = iterations;
	memcpy(keys->salt, salt, salt_len);
	keys->salt_len = salt_len;

	/* SaltedPassword = Hi(password, salt, i), which is PBKDF2 with HMAC-SHA-256. */
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
	    (int)iterations, EVP_sha256(), SCRAM_KEY_LEN, salted) != 1)
		return -1;
	hmac_sha256(salted, sizeof salted, "Client Key", 10, client_key);
	EVP_Digest(client_key, sizeof client_key, keys->stored_key, NULL, EVP_sha256(), NULL);
	hmac_sha256(salted, sizeof salted, "Server Key", 10, keys->server_key);
	explicit_bzero(salted, sizeof salted);
	explicit_bzero(client_key, sizeof client_key);
	return 0;
}

int
scram_proof_matches(const struct scram_keys *keys, const char *auth_message,
    const unsigned char *proof, size_t proof_len)
{
	unsigned char signature[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	unsigned char stored_key[SCRAM_KEY_LEN];
	int match;

	if (proof_len != SCRAM_KEY_LEN)
		return 0;
	hmac_sha256(keys->stored_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message),
	    signature);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ signature[i];
	EVP_Digest(client_key, sizeof client_key, stored_key, NULL, EVP_sha256(), NULL);
	match = CRYPTO_memcmp(stored_key, keys->stored_key, SCRAM_KEY_LEN) == 0;
	explicit_bzero(client_key, sizeof client_key);
	return match;
}

void
scram_server_signature(const struct scram_keys *keys, const char *auth_message,
    unsigned char out[SCRAM_KEY_LEN])
{
	hmac_sha256(keys->server_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message), out);
}

char *
scram_base64(const unsigned char *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}
