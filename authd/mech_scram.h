/*
 * mech_scram.c: the server side of one SCRAM-SHA-256 or
 * SCRAM-SHA-256-PLUS exchange, fed the decoded client messages by
 * client.c, which turns each step into a line of the auth protocol.
 */
#ifndef ESTAFETA_AUTHD_MECH_SCRAM_H
#define ESTAFETA_AUTHD_MECH_SCRAM_H

#include <stddef.h>

struct scram_session;

enum scram_status {
	SCRAM_CONTINUE,		/* send MESSAGE as a challenge */
	SCRAM_SUCCESS,		/* the proof matched; MESSAGE is the server-final "v=..." */
	SCRAM_FAIL,		/* MESSAGE is NULL or the server-final "e=..." */
	SCRAM_TEMPFAIL,		/* the passdb could not be read */
};

struct scram_step {
	enum scram_status status;
	char *message;		/* owned by the caller, may be NULL */
	const char *cbind_type;	/* SCRAM_CONTINUE: channel binding data to request, or NULL */
	const char *user;	/* for the reply and the log: canonical on success, else as sent */
	const char *detail;	/* why it failed, for the log; never a secret */
};

/*
 * Start an exchange. PLUS selects SCRAM-SHA-256-PLUS. CBIND_OFFERED
 * is whether the -PLUS mechanism was offered to the client (the auth
 * client speaks protocol version 1.3 or later and its client is on TLS),
 * which makes a client's "y" flag a downgrade.
 */
struct scram_session *scram_session_new(int plus, int cbind_offered);
void scram_session_free(struct scram_session *session);
/*
 * Feed one client message of LEN bytes. CBIND_DATA of CBIND_LEN bytes
 * is the channel binding data that the auth client sent with the
 * message (HAVE_CBIND), or nothing. Fills STEP.
 */
void scram_session_input(struct scram_session *session, const unsigned char *data, size_t len,
    const unsigned char *cbind_data, size_t cbind_len, int have_cbind, struct scram_step *step);

#endif
