/*
 * TLS in smtpd: STARTTLS (RFC 3207) on the smtpd_listen and
 * smtpd_submission_listen listeners, implicit TLS (RFC 8314) on
 * smtpd_smtps_listen, and reloading the certificates on SIGHUP.
 *
 * After STARTTLS, smtpd sends its 220 reply in plaintext, waits until
 * the reply has left the output buffer, then moves the socket to an
 * OpenSSL bufferevent. Any input the client sent after the STARTTLS
 * line is discarded before that, so no plaintext command injected by a
 * man in the middle runs inside the TLS session (CVE-2011-0411).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "config.h"
#include "log.h"
#include "smtpd.h"
#include "tls.h"

void
tls_setup(struct smtpd *server)
{
	char err[1024];

	if (!tls_configured()) {
		if (config_list("smtpd_smtps_listen")[0] != NULL)
			fatalx("smtpd_smtps_listen is set but tls_cert_file is not: implicit TLS needs a certificate");
		log_info("STARTTLS not offered: tls_cert_file is not set");
		return;
	}

	server->tls = tls_server_load(err, sizeof err);
	if (server->tls == NULL)
		fatalx("cannot set up TLS: %s", err);

	/* Before privileges are dropped, so SIGHUP can reread root-only keys. */
	if (tls_keyreader_start(err, sizeof err) < 0)
		fatalx("cannot start the TLS key reader: %s", err);
}

void
tls_reload(struct smtpd *server)
{
	char err[1024];

	if (server->tls == NULL)
		return;		/* TLS was off at start; enabling it needs a restart */
	tls_server_reload(&server->tls, "smtpd", err, sizeof err);
}

/* Whether EHLO lists STARTTLS for this session. */
int
tls_offered(const struct session *s)
{
	return s->server->tls != NULL && !s->tls_active && !s->tls_handshaking;
}

/*
 * Log and drop what the client sent after STARTTLS, before the
 * handshake. The log line has the byte count and at most the first
 * command verb, because the plaintext may be an AUTH command.
 */
static void
discard_pipelined_input(struct session *s)
{
	struct evbuffer *input = bufferevent_get_input(s->bev);
	size_t length = evbuffer_get_length(input);
	char head[16], verb[16];
	ev_ssize_t copied;

	if (length == 0)
		return;
	copied = evbuffer_copyout(input, head, sizeof head);
	if (copied > 0 && command_verb_for_log(head, (size_t)copied, verb, sizeof verb))
		log_warn("improper command pipelining after STARTTLS from %s[%s]: "
		    "%zu bytes discarded, first command %s", s->name, s->ip, length, verb);
	else
		log_warn("improper command pipelining after STARTTLS from %s[%s]: "
		    "%zu bytes discarded", s->name, s->ip, length);
	explicit_bzero(head, sizeof head);
	evbuffer_drain(input, length);
}

void
command_starttls(struct session *s, char *args)
{
	if (*args != '\0') {
		session_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls_active) {
		session_reply(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (s->server->tls == NULL) {
		session_reply(s, "454 4.7.0 TLS not available due to local problem");
		return;
	}

	discard_pipelined_input(s);

	/* RFC 3207 section 4.2: discard what the client sent before STARTTLS. */
	transaction_reset(s);
	auth_session_reset(s);
	s->helo[0] = '\0';
	s->esmtp = 0;

	session_reply(s, "220 2.0.0 Ready to start TLS");
	s->tls_starting = 1;
	session_pause(s);	/* tls_start runs once the 220 is written */
}

/* An OpenSSL bufferevent in accept state on FD, which it closes when freed. */
static struct bufferevent *
tls_bufferevent_new(struct session *s, int fd)
{
	SSL *ssl = tls_server_ssl_new(s->server->tls);
	struct bufferevent *bev;
	char reason[512];

	if (ssl == NULL) {
		tls_error_text(reason, sizeof reason);
		log_error("cannot set up TLS for %s[%s]: %s", s->name, s->ip, reason);
		close(fd);
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(s->server->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		log_error("cannot set up TLS for %s[%s]: bufferevent_openssl_socket_new failed",
		    s->name, s->ip);
		SSL_free(ssl);
		close(fd);
		return NULL;
	}

	/* A client that closes without close_notify has still sent all it meant to. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	s->ssl = ssl;
	s->tls_handshaking = 1;
	return bev;
}

/* Start the session of an implicit TLS listener: no greeting before the handshake. */
struct bufferevent *
tls_accept(struct session *s, int fd)
{
	return tls_bufferevent_new(s, fd);
}

/* After the 220 to STARTTLS: move the socket to TLS and wait for the handshake. */
void
tls_start(struct session *s)
{
	int fd = fcntl(bufferevent_getfd(s->bev), F_DUPFD_CLOEXEC, 0);
	struct bufferevent *bev;

	s->tls_starting = 0;
	s->output_paused = 0;	/* the output is empty, or this would not run */
	command_finish(s);
	if (fd < 0) {
		log_error("cannot start TLS for %s[%s]: dup: %s", s->name, s->ip, strerror(errno));
		session_close(s);
		return;
	}

	/* Input that arrived after the STARTTLS line is plaintext too. */
	discard_pipelined_input(s);

	bev = tls_bufferevent_new(s, fd);
	if (bev == NULL) {
		session_close(s);
		return;
	}

	/* The plain bufferevent closes its descriptor; the duplicate lives on. */
	bufferevent_free(s->bev);
	session_attach(s, bev);
}

void
tls_handshake_done(struct session *s)
{
	const char *sni = tls_server_name(s->ssl);
	char sni_text[300] = "";

	s->tls_handshaking = 0;
	s->tls_active = 1;
	tls_describe(s->ssl, s->tls_description, sizeof s->tls_description);
	if (sni != NULL) {
		char name[256];

		log_sanitize(name, sizeof name, sni, strlen(sni));
		snprintf(sni_text, sizeof sni_text, " sni=%s", name);
	}
	log_info("Anonymous TLS connection established from %s[%s]: %s%s", s->name, s->ip,
	    s->tls_description, sni_text);

	if (s->listener == LISTENER_SMTPS)
		session_greet(s);
	session_set_state(s, SESSION_COMMAND);
	session_resume(s);
}

/*
 * Write the OpenSSL errors libevent collected for the session into OUT
 * ("" when there are none). Returns 1 when one of them is an EOF in the
 * middle of a TLS record, which is a lost connection, not a TLS error.
 */
static int
session_openssl_errors(struct session *s, char *out, size_t outsize)
{
	unsigned long code;
	size_t used = 0;
	int eof = 0;

	out[0] = '\0';
	while ((code = bufferevent_get_openssl_error(s->bev)) != 0) {
		char one[256];

		/* libevent also stores the SSL_get_error value, which is no error code. */
		if (ERR_GET_LIB(code) == 0)
			continue;
		if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
		    ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			eof = 1;
		ERR_error_string_n(code, one, sizeof one);
		if (used < outsize)
			used += (size_t)snprintf(out + used, outsize - used, "%s%s",
			    used > 0 ? "; " : "", one);
	}
	ERR_clear_error();
	return eof;
}

const char *
tls_session_error(struct session *s, char *out, size_t outsize)
{
	int saved_errno = errno;

	session_openssl_errors(s, out, outsize);
	if (out[0] == '\0')
		snprintf(out, outsize, "%s", saved_errno != 0 ? strerror(saved_errno) : "connection reset");
	return out;
}

void
tls_log_handshake_failure(struct session *s, short what)
{
	char reason[512];
	int eof = session_openssl_errors(s, reason, sizeof reason);

	if (what & BEV_EVENT_TIMEOUT)
		log_info("timeout during TLS handshake with %s[%s]", s->name, s->ip);
	else if (eof || (what & BEV_EVENT_EOF))
		log_info("lost connection during TLS handshake with %s[%s]", s->name, s->ip);
	else if (reason[0] != '\0')
		log_info("SSL_accept error from %s[%s]: %s", s->name, s->ip, reason);
	else if (what & BEV_EVENT_ERROR)
		log_info("SSL_accept error from %s[%s]: %s", s->name, s->ip,
		    errno != 0 ? strerror(errno) : "unknown error");
	else
		log_info("TLS handshake with %s[%s] ended without an error", s->name, s->ip);
}
