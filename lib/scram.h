/*
 * SCRAM-SHA-256 (RFC 5802, RFC 7677): the message grammar and the key
 * computations, without state or I/O. authd's mech_scram.c runs the
 * exchange.
 */
#ifndef ESTAFETA_SCRAM_H
#define ESTAFETA_SCRAM_H

#include <stddef.h>

#define SCRAM_KEY_LEN		32	/* SHA-256 output */
#define SCRAM_SALT_MAX		64
#define SCRAM_CBIND_TYPE_MAX	32

/* The server's credentials of one user: Dovecot's {SCRAM-SHA-256} fields. */
struct scram_keys {
	unsigned iterations;
	unsigned char salt[SCRAM_SALT_MAX];
	size_t salt_len;
	unsigned char stored_key[SCRAM_KEY_LEN];
	unsigned char server_key[SCRAM_KEY_LEN];
};

/* The server-error values of RFC 5802, section 7, sent as "e=VALUE". */
enum scram_error {
	SCRAM_OK = 0,
	SCRAM_E_INVALID_ENCODING,
	SCRAM_E_EXTENSIONS_NOT_SUPPORTED,
	SCRAM_E_INVALID_PROOF,
	SCRAM_E_CHANNEL_BINDINGS_DONT_MATCH,
	SCRAM_E_SERVER_DOES_SUPPORT_CHANNEL_BINDING,
	SCRAM_E_CHANNEL_BINDING_NOT_SUPPORTED,
	SCRAM_E_UNSUPPORTED_CHANNEL_BINDING_TYPE,
	SCRAM_E_INVALID_USERNAME_ENCODING,
	SCRAM_E_OTHER_ERROR,
};

/* The parts of a client-first-message. Strings are NUL-terminated copies. */
struct scram_client_first {
	char cbind_flag;		/* 'n', 'y' or 'p' */
	char cbind_type[SCRAM_CBIND_TYPE_MAX + 1];	/* the cb-name after "p=" */
	char *gs2_header;		/* "n,," or "p=tls-exporter,a=NAME," as sent */
	char *authzid;			/* decoded saslname, or NULL */
	char *username;			/* decoded saslname */
	char *client_nonce;
	char *bare;			/* client-first-message-bare */
};

/* The parts of a client-final-message. */
struct scram_client_final {
	unsigned char *cbind_input;	/* decoded c= value */
	size_t cbind_input_len;
	char *nonce;			/* client nonce followed by server nonce */
	unsigned char *proof;		/* decoded p= value */
	size_t proof_len;
	char *without_proof;		/* client-final-message-without-proof */
};

/* The "e=" text of ERROR, such as "invalid-proof". */
const char *scram_error_name(enum scram_error error);

/* Parse MESSAGE of LEN bytes (not NUL-terminated, may contain NUL). */
enum scram_error scram_parse_client_first(const char *message, size_t len,
    struct scram_client_first *out);
void scram_client_first_clear(struct scram_client_first *first);
enum scram_error scram_parse_client_final(const char *message, size_t len,
    struct scram_client_final *out);
void scram_client_final_clear(struct scram_client_final *final);

/*
 * Parse Dovecot's stored form "ITERATIONS,SALT,STOREDKEY,SERVERKEY"
 * (base64 fields, as `doveadm pw -s SCRAM-SHA-256` writes after the
 * {SCRAM-SHA-256} prefix). Returns 0, or -1 when DATA is malformed.
 */
int scram_keys_parse(const char *data, struct scram_keys *keys);
/* Derive KEYS from PASSWORD with SALT and ITERATIONS, as RFC 5802 defines them. */
int scram_keys_derive(const char *password, const unsigned char *salt, size_t salt_len,
    unsigned iterations, struct scram_keys *keys);

/*
 * Check PROOF against AUTH_MESSAGE in constant time: whether
 * H(ClientProof XOR HMAC(StoredKey, AuthMessage)) equals StoredKey.
 * Returns 1 on a match, 0 otherwise.
 */
int scram_proof_matches(const struct scram_keys *keys, const char *auth_message,
    const unsigned char *proof, size_t proof_len);
/* ServerSignature = HMAC(ServerKey, AuthMessage), into OUT. */
void scram_server_signature(const struct scram_keys *keys, const char *auth_message,
    unsigned char out[SCRAM_KEY_LEN]);

/* Encode LEN bytes of DATA as base64 into a new string. */
char *scram_base64(const unsigned char *data, size_t len);

#endif
