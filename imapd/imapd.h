/* imapd: the IMAP server. Types and entry points shared by its processes. */
#ifndef ESTAFETA_IMAPD_H
#define ESTAFETA_IMAPD_H

#include <stddef.h>
#include <sys/types.h>

#include "io.h"

#define IMAPD_IP_MAX		64
#define IMAPD_LOGIN_LINE_MAX	8192	/* before login: line and literal limit */
#define IMAPD_HANDOFF_INPUT_MAX	IMAP_IO_BUFFER	/* pipelined input passed with a login: all that can be buffered */

/* Capabilities before and after login (RFC 3501 section 7.2.1). */
#define IMAPD_CAPS_COMMON	"IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE"
#define IMAPD_CAPS_POSTLOGIN	IMAPD_CAPS_COMMON " NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN " \
	"LIST-EXTENDED LIST-STATUS SPECIAL-USE ESEARCH STATUS=SIZE BINARY"

/* Configuration read once at start-up. */
struct imapd_settings {
	char hostname[256];
	struct imap_limits login_limits;
	struct imap_limits limits;
	long long login_timeout;
	long long idle_timeout;
	long long auth_timeout;
	long long max_connections;
	const char *plaintext_auth;	/* never, loopback, always */
	const char *userdb_socket;
	char auth_socket[4096];
};

extern struct imapd_settings imapd_settings;

/* The TLS context for new connections, NULL when tls_cert_file is not set.
 * The master replaces it on SIGHUP; a forked process keeps the one it was
 * forked with, and a mail process frees it before it reads anything. */
struct tls_server;
extern struct tls_server *imapd_tls;

/* One accepted connection, as passed to the login process. */
struct imapd_client {
	int fd;
	char rip[IMAPD_IP_MAX];
	char lip[IMAPD_IP_MAX];
	int loopback;
	int implicit_tls;	/* accepted on imapd_imaps_listen: TLS before the greeting */
	unsigned long long session_id;
};

/* login.c: the pre-authentication session; runs in a forked process as
 * the login user and exits. MASTER_FD is its socket to the master. */
void login_session_run(struct imapd_client *client, int master_fd) __attribute__((noreturn));

/*
 * mail.c: the session of a logged-in user, in a process of its own
 * forked by the master. Claims the login from authd, reports the
 * result to the login process on LOGIN_FD, becomes the user and serves
 * the session; never returns.
 */
struct ipc_msg;
void mail_process_run(struct ipc_msg *handoff, int client_fd, int login_fd, pid_t login_pid)
    __attribute__((noreturn));

#endif
