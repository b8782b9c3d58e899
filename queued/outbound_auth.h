/*
 * SASL AUTH from the SMTP client to the relayhost (RFC 4954), with
 * PLAIN or LOGIN. The credentials come from relayhost_password_file and
 * are sent only over TLS. Neither the file nor the password is logged.
 */
#ifndef ESTAFETA_QUEUED_OUTBOUND_AUTH_H
#define ESTAFETA_QUEUED_OUTBOUND_AUTH_H

#include <stddef.h>

struct session;

/* The last AUTH step sent on a session. */
enum {
	OUTBOUND_AUTH_PLAIN_SENT,
	OUTBOUND_AUTH_LOGIN_SENT,
	OUTBOUND_AUTH_USERNAME_SENT,
	OUTBOUND_AUTH_PASSWORD_SENT,
};

/* The AUTH exchange of one session, with its own copy of the
 * credentials, so that a reload during AUTH cannot change or free them. */
struct outbound_auth {
	int step;		/* the last step sent: OUTBOUND_AUTH_* */
	char *username;
	char *password;
};

/* Read relayhost_password_file. Returns 0, or -1 with ERR set (missing
 * file, wrong mode, malformed line). */
int outbound_auth_init(char *err, size_t errsize);

/* Read relayhost_password_file again. Returns 0, or -1 with ERR set,
 * and then the credentials read before stay in use. */
int outbound_auth_reload(char *err, size_t errsize);

/* Return 1 when there are credentials for relayhost, and 0 otherwise. */
int outbound_auth_wanted(void);

/* Copy the current credentials into AUTH and send the first AUTH
 * command on SESSION. Returns 0, or -1 with ERR set (no TLS, no
 * mechanism in common). */
int outbound_auth_start(struct session *session, struct outbound_auth *auth, int tls_active,
    int offers_plain, int offers_login, char *err, size_t errsize);

/* Handle the reply CODE to the last step of AUTH: 1 authenticated, 0 the
 * next step was sent, -1 failed. The credentials in AUTH are wiped once
 * the exchange ends. */
int outbound_auth_reply(struct session *session, struct outbound_auth *auth, int code);

/* Wipe and free the credentials in AUTH. */
void outbound_auth_clear(struct outbound_auth *auth);

void outbound_auth_free(void);

/* Send LINE and CRLF on SESSION (outbound_session.c). */
void session_send_line(struct session *session, const char *line);

#endif
