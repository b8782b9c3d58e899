/*
 * The login process after a login over TLS: it keeps the TLS session
 * and relays plaintext between the client and the mail process, which
 * got the other end of a socket pair in place of the client's socket.
 * So the mail process never has the TLS state or the private key, and
 * Dovecot's imap-login works the same way.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "imapd.h"
#include "log.h"
#include "login_tls.h"
#include "proxy.h"
#include "util.h"

#define RELAY_BUFFER	16384
#define PROXY_POLL_MS	(60 * 1000)	/* wake up this often to check the idle limit */

/* Bytes read from one side and not yet written to the other. */
struct relay {
	char data[RELAY_BUFFER];
	size_t pos, len;
};

struct proxy {
	SSL *ssl;
	int client_fd;
	int mail_fd;
	struct relay to_mail;
	struct relay to_client;
	int client_eof;		/* close_notify or EOF from the client */
	int mail_eof;		/* the mail process closed its end */
	short client_events;	/* what the next poll waits for */
	short mail_events;
	const char *failure;	/* why the relay stopped early, or NULL */
};

/* Add the poll events that SSL_get_error requests for RET, or note the end of the client's side. */
static void
want_ssl(struct proxy *p, int ret)
{
	int error = SSL_get_error(p->ssl, ret);

	if (error == SSL_ERROR_WANT_READ)
		p->client_events |= POLLIN;
	else if (error == SSL_ERROR_WANT_WRITE)
		p->client_events |= POLLOUT;
	else if (error == SSL_ERROR_ZERO_RETURN)
		p->client_eof = 1;
	else
		p->failure = "the TLS connection to the client failed";
}

/* Move data one step in each direction. Returns 1 if anything moved. */
static int
relay_step(struct proxy *p)
{
	int progress = 0;
	ssize_t n;
	int r;

	if (!p->client_eof && p->to_mail.len == 0) {
		ERR_clear_error();	/* SSL_get_error reads the queue */
		r = SSL_read(p->ssl, p->to_mail.data, sizeof p->to_mail.data);
		if (r > 0) {
			p->to_mail.pos = 0;
			p->to_mail.len = (size_t)r;
			progress = 1;
		} else {
			want_ssl(p, r);
			if (p->client_eof)
				shutdown(p->mail_fd, SHUT_WR);
		}
	}
	if (p->to_mail.pos < p->to_mail.len) {
		n = write(p->mail_fd, p->to_mail.data + p->to_mail.pos, p->to_mail.len - p->to_mail.pos);
		if (n > 0) {
			p->to_mail.pos += (size_t)n;
			progress = 1;
			if (p->to_mail.pos == p->to_mail.len)
				p->to_mail.pos = p->to_mail.len = 0;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR))
			p->mail_events |= POLLOUT;
		else
			p->failure = "write to the mail process failed";
	}

	if (!p->mail_eof && p->to_client.len == 0) {
		n = read(p->mail_fd, p->to_client.data, sizeof p->to_client.data);
		if (n > 0) {
			p->to_client.pos = 0;
			p->to_client.len = (size_t)n;
			progress = 1;
		} else if (n == 0)
			p->mail_eof = 1;
		else if (errno == EAGAIN || errno == EINTR)
			p->mail_events |= POLLIN;
		else
			p->mail_eof = 1;
	}
	if (p->to_client.pos < p->to_client.len) {
		ERR_clear_error();
		r = SSL_write(p->ssl, p->to_client.data + p->to_client.pos,
		    (int)(p->to_client.len - p->to_client.pos));
		if (r > 0) {
			p->to_client.pos += (size_t)r;
			progress = 1;
			if (p->to_client.pos == p->to_client.len)
				p->to_client.pos = p->to_client.len = 0;
		} else
			want_ssl(p, r);
	}
	return progress;
}

/* The relay has ended once the mail process closed and everything it
 * sent reached the client, or once either side failed. */
static int
relay_done(const struct proxy *p)
{
	if (p->failure != NULL)
		return 1;
	return p->mail_eof && p->to_client.len == 0;
}

void
proxy_run(struct login_tls *tls, int mail_fd, unsigned long long session_id,
    long long idle_limit_ms)
{
	struct proxy p = { .ssl = tls->ssl, .client_fd = tls->fd, .mail_fd = mail_fd };
	long long last_progress = now_usec();

	if (set_nonblocking(mail_fd) < 0 || set_nonblocking(tls->fd) < 0)
		p.failure = "cannot make the sockets nonblocking";

	while (!relay_done(&p)) {
		struct pollfd pfd[2];
		int n;

		p.client_events = p.mail_events = 0;
		if (relay_step(&p)) {
			last_progress = now_usec();
			continue;
		}
		if (relay_done(&p))
			break;

		if (now_usec() - last_progress > idle_limit_ms * 1000) {
			log_info("session=%llu: TLS proxy idle for %lld s, closing the connection",
			    session_id, idle_limit_ms / 1000);
			break;
		}
		/* A socket with nothing to wait for stays out of the poll, or its
		 * hang-up would wake the loop again and again. */
		pfd[0] = (struct pollfd){ .fd = p.client_events != 0 ? p.client_fd : -1,
		    .events = p.client_events };
		pfd[1] = (struct pollfd){ .fd = p.mail_events != 0 ? p.mail_fd : -1,
		    .events = p.mail_events };
		do
			n = poll(pfd, 2, PROXY_POLL_MS);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			log_error("session=%llu: poll in the TLS proxy failed: %s", session_id,
			    strerror(errno));
			break;
		}
	}

	if (p.failure != NULL) {
		char reason[256];

		tls_error_text(reason, sizeof reason);
		log_info("session=%llu: TLS proxy finished: %s (%s)", session_id, p.failure, reason);
	} else {
		login_tls_close(tls);
		log_info("session=%llu: TLS proxy finished", session_id);
	}
	close(mail_fd);
}
