/* TLS on a client connection in the login process (see login_tls.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include <openssl/err.h>

#include "log.h"
#include "login_tls.h"
#include "util.h"

/*
 * Wait until the socket is ready for the I/O that SSL_get_error's ERROR
 * requests. Returns 0 when ready, or -1 with errno set on timeout, on a
 * closed socket, or on an error that no waiting can cure.
 */
static int
wait_for_socket(struct login_tls *tls, int error)
{
	struct pollfd pfd = { .fd = tls->fd };
	long long left_ms;
	int n;

	if (error == SSL_ERROR_WANT_READ)
		pfd.events = POLLIN;
	else if (error == SSL_ERROR_WANT_WRITE)
		pfd.events = POLLOUT;
	else {
		errno = EIO;
		return -1;
	}

	left_ms = (tls->deadline - now_usec()) / 1000;
	if (left_ms <= 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	do
		n = poll(&pfd, 1, (int)left_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		errno = ETIMEDOUT;
	return n > 0 ? 0 : -1;
}

static ssize_t
transport_read(void *ctx, void *buf, size_t len)
{
	struct login_tls *tls = ctx;

	for (;;) {
		int n;
		int error;

		ERR_clear_error();	/* SSL_get_error reads the queue */
		n = SSL_read(tls->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);

		if (n > 0)
			return n;
		error = SSL_get_error(tls->ssl, n);
		if (error == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (wait_for_socket(tls, error) < 0)
			return -1;
	}
}

static ssize_t
transport_write(void *ctx, const void *buf, size_t len)
{
	struct login_tls *tls = ctx;

	for (;;) {
		int n;

		ERR_clear_error();
		n = SSL_write(tls->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n > 0)
			return n;
		if (wait_for_socket(tls, SSL_get_error(tls->ssl, n)) < 0)
			return -1;
	}
}

static size_t
transport_pending(void *ctx)
{
	struct login_tls *tls = ctx;

	return (size_t)SSL_pending(tls->ssl);
}

int
login_tls_accept(struct login_tls *tls, struct tls_server *server, int fd,
    long long deadline, unsigned long long session_id, const char *rip)
{
	char reason[256], shown_sni[128] = "none";
	const char *sni;
	int r;

	memset(tls, 0, sizeof *tls);
	tls->fd = fd;
	tls->deadline = deadline;
	tls->ssl = tls_server_ssl_new(server);
	if (tls->ssl == NULL || SSL_set_fd(tls->ssl, fd) != 1) {
		tls_error_text(reason, sizeof reason);
		log_error("session=%llu: TLS setup failed: rip=%s, %s", session_id, rip, reason);
		login_tls_close(tls);
		return -1;
	}
	SSL_set_mode(tls->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

	ERR_clear_error();
	while ((r = SSL_accept(tls->ssl)) != 1) {
		int error = SSL_get_error(tls->ssl, r);

		if (wait_for_socket(tls, error) == 0)
			continue;
		if (error == SSL_ERROR_SSL &&
		    ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			strlcpy_x(reason, "connection closed by the client", sizeof reason);
		} else if (error == SSL_ERROR_SSL)
			tls_error_text(reason, sizeof reason);
		else if (errno == ETIMEDOUT)
			strlcpy_x(reason, "timed out", sizeof reason);
		else
			strlcpy_x(reason, "connection closed by the client", sizeof reason);
		log_info("session=%llu: TLS handshake failed: rip=%s, %s", session_id, rip, reason);
		SSL_free(tls->ssl);	/* no close_notify after a failed handshake */
		tls->ssl = NULL;
		return -1;
	}

	tls_describe(tls->ssl, tls->description, sizeof tls->description);
	sni = tls_server_name(tls->ssl);
	if (sni != NULL)
		log_sanitize(shown_sni, sizeof shown_sni, sni, strlen(sni));
	log_info("session=%llu: TLS established: rip=%s, %s, sni=%s", session_id, rip,
	    tls->description, shown_sni);
	tls->transport = (struct imap_io_transport){ .read = transport_read,
	    .write = transport_write, .pending = transport_pending, .ctx = tls };
	return 0;
}

void
login_tls_close(struct login_tls *tls)
{
	if (tls->ssl == NULL)
		return;
	/* One attempt: the connection ends either way. */
	if (SSL_shutdown(tls->ssl) < 0)
		ERR_clear_error();
	SSL_free(tls->ssl);
	tls->ssl = NULL;
}
