/*
 * One SCRAM-SHA-256(-PLUS) exchange (RFC 5802, RFC 7677) on the server:
 *
 *   client-first   -> server-first "r=NONCE,s=SALT,i=ITERATIONS"
 *   client-final   -> server-final "v=SIGNATURE", or "e=ERROR"
 *
 * The keys come from the passdb: a {SCRAM-SHA-256} entry is used as
 * stored, and a {PLAIN} password is turned into keys with a new salt and
 * scram_iterations. Other schemes (crypt(3) hashes, Argon2) and PAM users
 * cannot give the keys, so those attempts fail after client-first, as in
 * Dovecot. An unknown user gets a server-first made up from a secret, so
 * the exchange looks the same as for a real one until the proof fails.
 *
 * Channel binding (SCRAM-SHA-256-PLUS): the gs2 header names the type,
 * tls-exporter (RFC 9266) or tls-unique (RFC 5929). authd requests the
 * data from the auth client of that type along with server-first, and the
 * client-final's c= must be the gs2 header followed by that data, byte
 * for byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>

#include "authd.h"
#include "config.h"
#include "log.h"
#include "mech_scram.h"
#include "scram.h"
#include "util.h"

#define SCRAM_SALT_LEN		16	/* bytes of a new salt, as doveadm pw makes */
#define SCRAM_NONCE_LEN		24	/* random bytes of the server nonce */

enum scram_state {
	STATE_CLIENT_FIRST,
	STATE_CLIENT_FINAL,
	STATE_DONE,
};

struct scram_session {
	enum scram_state state;
	int plus;
	int cbind_offered;
	int known_user;		/* 0: the keys are made up and no proof matches */
	struct scram_client_first first;
	char *user;		/* canonical name once found */
	char *server_first;
	char *nonce;		/* client nonce followed by server nonce */
	struct scram_keys keys;
};

static void
random_bytes(void *buf, size_t len)
{
	if (getrandom(buf, len, 0) != (ssize_t)len)
		fatal("getrandom failed");
}

struct scram_session *
scram_session_new(int plus, int cbind_offered)
{
	struct scram_session *session = xcalloc(1, sizeof *session);

	session->plus = plus;
	session->cbind_offered = cbind_offered;
	return session;
}

void
scram_session_free(struct scram_session *session)
{
	if (session == NULL)
		return;
	scram_client_first_clear(&session->first);
	free(session->user);
	free(session->server_first);
	free(session->nonce);
	explicit_bzero(&session->keys, sizeof session->keys);
	free(session);
}

static void
step_fail(struct scram_step *step, const char *user, const char *detail, enum scram_error error)
{
	step->status = SCRAM_FAIL;
	step->user = user;
	step->detail = detail;
	step->message = error != SCRAM_OK ? xasprintf("e=%s", scram_error_name(error)) : NULL;
}

/*
 * Keys for a user whom no passdb has: a salt that stays the same for the
 * name (an HMAC of it under a secret of this process), and keys derived
 * from a random password. The derivation costs as much time as for a
 * {PLAIN} entry, so the reply time does not tell the two apart.
 */
static void
made_up_keys(const char *user, struct scram_keys *keys)
{
	static unsigned char secret[SCRAM_KEY_LEN];
	static int have_secret;
	struct scram_keys secret_keys;
	unsigned char salt[SCRAM_KEY_LEN], password_bytes[SCRAM_KEY_LEN];
	char *password;

	if (!have_secret) {
		random_bytes(secret, sizeof secret);
		have_secret = 1;
	}
	memset(&secret_keys, 0, sizeof secret_keys);
	memcpy(secret_keys.server_key, secret, sizeof secret);
	scram_server_signature(&secret_keys, user, salt);
	explicit_bzero(&secret_keys, sizeof secret_keys);

	random_bytes(password_bytes, sizeof password_bytes);
	password = scram_base64(password_bytes, sizeof password_bytes);
	if (scram_keys_derive(password, salt, SCRAM_SALT_LEN,
	    (unsigned)config_int("scram_iterations"), keys) < 0) {
		/* Only an OpenSSL failure gets here, and random keys fail the proof just as well. */
		log_error("auth: SCRAM key derivation failed");
		memset(keys, 0, sizeof *keys);
		keys->iterations = (unsigned)config_int("scram_iterations");
		memcpy(keys->salt, salt, SCRAM_SALT_LEN);
		keys->salt_len = SCRAM_SALT_LEN;
		random_bytes(keys->stored_key, sizeof keys->stored_key);
		random_bytes(keys->server_key, sizeof keys->server_key);
	}
	explicit_bzero(password, strlen(password));
	free(password);
}

/* Turn STORED ("{SCHEME}data") into keys. 0, or -1 when the scheme cannot give them. */
static int
stored_keys(const char *stored, struct scram_keys *keys, const char **detail)
{
	unsigned char salt[SCRAM_SALT_LEN];
	const char *data;

	if (strncasecmp(stored, "{SCRAM-SHA-256}", 15) == 0) {
		if (scram_keys_parse(stored + 15, keys) < 0) {
			*detail = "malformed SCRAM-SHA-256 credentials";
			return -1;
		}
		return 0;
	}
	data = password_plaintext(stored);
	if (data == NULL) {
		*detail = "the password scheme cannot be used with SCRAM";
		return -1;
	}
	random_bytes(salt, sizeof salt);
	if (scram_keys_derive(data, salt, sizeof salt, (unsigned)config_int("scram_iterations"),
	    keys) < 0) {
		*detail = "SCRAM key derivation failed";
		return -1;
	}
	return 0;
}

/* The gs2 flag against the mechanism. NULL when acceptable, else why not. */
static const char *
check_cbind_flag(const struct scram_session *session)
{
	const struct scram_client_first *first = &session->first;

	if (session->plus && first->cbind_flag != 'p')
		return "SCRAM-SHA-256-PLUS without channel binding";
	if (!session->plus && first->cbind_flag == 'p')
		return "channel binding requested with SCRAM-SHA-256";
	if (first->cbind_flag == 'y' && session->cbind_offered)
		return "client assumes no channel binding, but SCRAM-SHA-256-PLUS was offered";
	if (first->cbind_flag == 'p' && strcmp(first->cbind_type, "tls-exporter") != 0 &&
	    strcmp(first->cbind_type, "tls-unique") != 0)
		return "unsupported channel binding type";
	return NULL;
}

/* Look the user up and set the keys. Returns 0 to go on, or -1 with STEP filled. */
static int
find_keys(struct scram_session *session, struct scram_step *step)
{
	const char *name = session->first.username, *detail = NULL;
	char *stored = NULL, *canonical = NULL;

	switch (passdb_lookup_credentials(name, &stored, &canonical)) {
	case CREDENTIALS_FOUND:
		session->user = canonical;
		session->known_user = stored_keys(stored, &session->keys, &detail) == 0;
		explicit_bzero(stored, strlen(stored));
		free(stored);
		if (!session->known_user) {
			log_debug("auth: SCRAM-SHA-256 for %s: %s", session->user, detail);
			step_fail(step, session->user, "credentials not usable with SCRAM", SCRAM_OK);
			return -1;
		}
		return 0;
	case CREDENTIALS_UNKNOWN:
		made_up_keys(name, &session->keys);
		return 0;
	case CREDENTIALS_UNAVAILABLE:
		log_debug("auth: SCRAM-SHA-256 for %s: PAM keeps no stored password", name);
		step_fail(step, name, "credentials not usable with SCRAM", SCRAM_OK);
		return -1;
	case CREDENTIALS_TEMPFAIL:
		step->status = SCRAM_TEMPFAIL;
		step->user = name;
		step->detail = "a passdb cannot be read";
		return -1;
	}
	return -1;
}

static void
client_first(struct scram_session *session, const unsigned char *data, size_t len,
    struct scram_step *step)
{
	struct scram_client_first *first = &session->first;
	unsigned char nonce[SCRAM_NONCE_LEN];
	char *server_nonce, *salt;
	const char *problem;
	enum scram_error error;

	error = scram_parse_client_first((const char *)data, len, first);
	if (error != SCRAM_OK) {
		step_fail(step, first->username != NULL ? first->username : "",
		    error == SCRAM_E_EXTENSIONS_NOT_SUPPORTED ? "mandatory extension" :
		    "malformed client-first-message", SCRAM_OK);
		return;
	}
	problem = check_cbind_flag(session);
	if (problem != NULL) {
		step_fail(step, first->username, problem, SCRAM_OK);
		return;
	}
	if (first->authzid != NULL && strcmp(first->authzid, first->username) != 0) {
		step_fail(step, first->username, "authorization identity differs", SCRAM_OK);
		return;
	}
	if (find_keys(session, step) < 0)
		return;

	random_bytes(nonce, sizeof nonce);
	server_nonce = scram_base64(nonce, sizeof nonce);
	session->nonce = xasprintf("%s%s", first->client_nonce, server_nonce);
	salt = scram_base64(session->keys.salt, session->keys.salt_len);
	session->server_first = xasprintf("r=%s,s=%s,i=%u", session->nonce, salt,
	    session->keys.iterations);
	free(server_nonce);
	free(salt);

	session->state = STATE_CLIENT_FINAL;
	step->status = SCRAM_CONTINUE;
	step->message = xstrdup(session->server_first);
	step->user = session->user != NULL ? session->user : first->username;
	if (first->cbind_flag == 'p')
		step->cbind_type = first->cbind_type;
}

/* Whether CBIND_INPUT (the decoded c=) is the gs2 header followed by the channel binding data. */
static int
cbind_matches(const struct scram_session *session, const struct scram_client_final *final,
    const unsigned char *cbind_data, size_t cbind_len)
{
	const char *header = session->first.gs2_header;
	size_t header_len = strlen(header);

	if (session->first.cbind_flag != 'p')
		cbind_len = 0;
	if (final->cbind_input_len != header_len + cbind_len)
		return 0;
	if (CRYPTO_memcmp(final->cbind_input, header, header_len) != 0)
		return 0;
	return cbind_len == 0 ||
	    CRYPTO_memcmp(final->cbind_input + header_len, cbind_data, cbind_len) == 0;
}

static void
client_final(struct scram_session *session, const unsigned char *data, size_t len,
    const unsigned char *cbind_data, size_t cbind_len, int have_cbind, struct scram_step *step)
{
	const char *user = session->user != NULL ? session->user : session->first.username;
	unsigned char signature[SCRAM_KEY_LEN];
	struct scram_client_final final;
	char *auth_message, *encoded;
	enum scram_error error;

	session->state = STATE_DONE;
	error = scram_parse_client_final((const char *)data, len, &final);
	if (error != SCRAM_OK) {
		step_fail(step, user, "malformed client-final-message", error);
		goto done;
	}
	if (strcmp(final.nonce, session->nonce) != 0) {
		step_fail(step, user, "nonce mismatch", SCRAM_E_OTHER_ERROR);
		goto done;
	}
	if (session->first.cbind_flag == 'p' && !have_cbind) {
		step_fail(step, user, "the auth client sent no channel binding data",
		    SCRAM_E_CHANNEL_BINDINGS_DONT_MATCH);
		goto done;
	}
	if (!cbind_matches(session, &final, cbind_data, cbind_len)) {
		step_fail(step, user, "channel binding mismatch", SCRAM_E_CHANNEL_BINDINGS_DONT_MATCH);
		goto done;
	}

	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	auth_message = xasprintf("%s,%s,%s", session->first.bare, session->server_first,
	    final.without_proof);
	if (!session->known_user ||
	    !scram_proof_matches(&session->keys, auth_message, final.proof, final.proof_len)) {
		free(auth_message);
		step_fail(step, user, session->known_user ? "password mismatch" : "unknown user",
		    SCRAM_E_INVALID_PROOF);
		goto done;
	}
	scram_server_signature(&session->keys, auth_message, signature);
	free(auth_message);
	encoded = scram_base64(signature, sizeof signature);
	step->status = SCRAM_SUCCESS;
	step->message = xasprintf("v=%s", encoded);
	step->user = user;
	free(encoded);

done:
	scram_client_final_clear(&final);
}

void
scram_session_input(struct scram_session *session, const unsigned char *data, size_t len,
    const unsigned char *cbind_data, size_t cbind_len, int have_cbind, struct scram_step *step)
{
	memset(step, 0, sizeof *step);
	switch (session->state) {
	case STATE_CLIENT_FIRST:
		client_first(session, data, len, step);
		break;
	case STATE_CLIENT_FINAL:
		client_final(session, data, len, cbind_data, cbind_len, have_cbind, step);
		break;
	case STATE_DONE:
		step_fail(step, session->user != NULL ? session->user : "",
		    "input after the exchange ended", SCRAM_OK);
		break;
	}
}
