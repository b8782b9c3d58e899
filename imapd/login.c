/*
 * The login process: one per connection, running as imapd_login_user.
 * It parses everything a client sends before authentication (RFC 3501
 * not-authenticated state), runs the TLS handshake for STARTTLS and for
 * the implicit-TLS listener, and checks passwords through authd's
 * auth_socket. On success it passes the client descriptor, the auth id
 * and cookie, and any pipelined input to the master. It exits once the
 * mail process has taken over. On TLS it hands over one end of a socket
 * pair instead, and relays between that pair and the client (proxy.c)
 * for the rest of the session.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth_client.h"
#include "imapd.h"
#include "io.h"
#include "ipc.h"
#include "log.h"
#include "login_tls.h"
#include "parse.h"
#include "proxy.h"
#include "util.h"

#define LOGIN_MAX_AUTH_FAILURES	3
#define LOGIN_MAX_BAD_COMMANDS	10
#define LOGIN_USER_MAX		320
#define LOGIN_PASSWORD_MAX	1024

/* A logged-in client may stay silent for imapd_idle_timeout; the proxy
 * waits this much longer, so that the mail process's BYE gets through. */
#define PROXY_IDLE_MARGIN_MS	(60 * 1000)

/* The SASL mechanisms AUTHENTICATE runs through authd, in the order
 * CAPABILITY lists them. Each is offered only when authd offers it. */
static const char *const sasl_mechanisms[] = {
	"PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", NULL,
};

struct login {
	struct imapd_client *client;
	struct imap_io io;
	struct login_tls tls;	/* tls.ssl is NULL while the connection is plain */
	long long deadline;	/* now_usec() value at which imapd_login_timeout ends */
	int master_fd;
	struct auth_client *auth;
	int auth_failures;
	int bad_commands;
	char tag[64];
};

static int
tls_active(const struct login *login)
{
	return login->tls.ssl != NULL;
}

/* Return whether a password may be sent in the clear (LOGIN, PLAIN, SASL
 * LOGIN). TLS always allows it, and without TLS imapd_plaintext_auth decides. */
static int
plaintext_allowed(const struct login *login)
{
	const char *policy = imapd_settings.plaintext_auth;

	if (tls_active(login) || strcmp(policy, "always") == 0)
		return 1;
	return strcmp(policy, "loopback") == 0 && login->client->loopback;
}

static int
mechanism_known(const char *mech)
{
	for (size_t i = 0; sasl_mechanisms[i] != NULL; i++)
		if (strcmp(sasl_mechanisms[i], mech) == 0)
			return 1;
	return 0;
}

/*
 * Return the text of the NO reply if AUTHENTICATE MECH may not run on
 * this connection, or NULL if it may. Mechanisms that send the password
 * need plaintext_allowed, and channel binding needs TLS.
 */
static const char *
mechanism_refusal(const struct login *login, const char *mech)
{
	size_t len = strlen(mech);

	if ((strcmp(mech, "PLAIN") == 0 || strcmp(mech, "LOGIN") == 0) && !plaintext_allowed(login))
		return "NO [PRIVACYREQUIRED] Plaintext authentication is not allowed on this connection";
	if (len > 5 && strcmp(mech + len - 5, "-PLUS") == 0 && !tls_active(login))
		return "NO [PRIVACYREQUIRED] Channel binding needs TLS: use STARTTLS first";
	return NULL;
}

static struct auth_client *auth_connection(struct login *login);

/*
 * The capabilities before login: STARTTLS until TLS is up (when a
 * certificate is configured), LOGINDISABLED where passwords may not be
 * sent in the clear, and an AUTH= name for every mechanism that authd
 * offers and this connection allows.
 */
static void
send_capability(struct login *login, const char *prefix)
{
	struct auth_client *auth = auth_connection(login);

	imap_io_printf(&login->io, "%sCAPABILITY " IMAPD_CAPS_COMMON, prefix);
	if (imapd_tls != NULL && !tls_active(login))
		imap_io_puts(&login->io, " STARTTLS");
	for (size_t i = 0; auth != NULL && sasl_mechanisms[i] != NULL; i++)
		if (auth_client_has_mech(auth, sasl_mechanisms[i]) &&
		    mechanism_refusal(login, sasl_mechanisms[i]) == NULL)
			imap_io_printf(&login->io, " AUTH=%s", sasl_mechanisms[i]);
	if (!plaintext_allowed(login))
		imap_io_puts(&login->io, " LOGINDISABLED");
}

static void
reply(struct login *login, const char *text)
{
	imap_io_printf(&login->io, "%s %s\r\n", login->tag, text);
}

/* The auth_socket connection, opened at the first attempt. */
static struct auth_client *
auth_connection(struct login *login)
{
	char err[256];

	if (login->auth != NULL)
		return login->auth;
	login->auth = auth_client_connect(imapd_settings.auth_socket,
	    (int)imapd_settings.auth_timeout * 1000, err, sizeof err);
	if (login->auth == NULL)
		log_error("session=%llu: authd unavailable: %s", login->client->session_id, err);
	else if (tls_active(login))
		auth_client_set_tls(login->auth, login->tls.ssl);
	return login->auth;
}

static int
is_base64(const char *text)
{
	if (strcmp(text, "=") == 0)
		return 1;
	for (const char *p = text; *p != '\0'; p++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", *p) == NULL)
			return 0;
	return 1;
}

/* Hex-encode the input that the client pipelined after its login. */
static char *
pending_input_hex(struct login *login)
{
	char input[IMAPD_HANDOFF_INPUT_MAX];
	size_t n = imap_io_take_input(&login->io, input, sizeof input);
	char *hex = xmalloc(2 * n + 1);

	for (size_t i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)input[i]);
	hex[2 * n] = '\0';
	return hex;
}

/*
 * Pass the login to the master, which starts the mail process, and wait
 * for the mail process's RESULT, so that this process stays until the
 * login was claimed. A plain connection's socket goes to the mail
 * process, and this process exits. On TLS the mail process gets one end
 * of a socket pair, and this process relays between the other end and
 * the client until the session ends.
 */
static void __attribute__((noreturn))
hand_off(struct login *login, unsigned auth_id, const char *user, const char *method)
{
	struct ipc_msg *msg = ipc_msg_new("LOGIN");
	struct pollfd pfd = { .fd = login->master_fd, .events = POLLIN };
	int session_fd = login->client->fd;
	int relay_pair[2] = { -1, -1 };
	char *hex = pending_input_hex(login);
	struct ipc_msg *result = NULL;

	if (tls_active(login)) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, relay_pair) < 0) {
			log_error("session=%llu: socketpair for the TLS proxy failed: %s",
			    login->client->session_id, strerror(errno));
			reply(login, "NO [UNAVAILABLE] Internal error, try again later");
			imap_io_flush(&login->io);
			_exit(1);
		}
		session_fd = relay_pair[1];
	}

	ipc_msg_addf(msg, "session", "%llu", login->client->session_id);
	ipc_msg_addf(msg, "auth_id", "%u", auth_id);
	ipc_msg_add(msg, "cookie", auth_client_cookie(login->auth));
	ipc_msg_add(msg, "tag", login->tag);
	ipc_msg_add(msg, "user", user);
	ipc_msg_add(msg, "method", method);
	ipc_msg_add(msg, "rip", login->client->rip);
	ipc_msg_add(msg, "lip", login->client->lip);
	ipc_msg_add(msg, "tls", tls_active(login) ? "yes" : "no");
	ipc_msg_add(msg, "input", hex);
	free(hex);
	imap_io_flush(&login->io);

	if (ipc_send(login->master_fd, msg, session_fd) < 0) {
		log_error("session=%llu: handoff to the master failed: %s",
		    login->client->session_id, strerror(errno));
		reply(login, "NO [UNAVAILABLE] Internal error, try again later");
		imap_io_flush(&login->io);
		_exit(1);
	}
	ipc_msg_free(msg);
	close(session_fd);

	if (poll(&pfd, 1, (int)imapd_settings.auth_timeout * 2000) > 0)
		result = ipc_recv(login->master_fd);
	if (result == NULL)
		log_warn("session=%llu: no result from the mail process", login->client->session_id);
	ipc_msg_free(result);
	auth_client_free(login->auth);
	close(login->master_fd);
	if (!tls_active(login))
		_exit(0);

	/* The relay needs only the SSL, which holds its own reference to the
	 * context. */
	tls_server_free(imapd_tls);
	imapd_tls = NULL;
	imap_io_free(&login->io);
	proxy_run(&login->tls, relay_pair[0], login->client->session_id,
	    imapd_settings.idle_timeout * 1000 + PROXY_IDLE_MARGIN_MS);
	_exit(0);
}

/*
 * Run one authentication with authd: MECH with the base64 initial
 * response RESP (or NULL), relaying challenges to the client. Hands the
 * connection off on success; returns otherwise, having replied.
 */
static void
authenticate(struct login *login, const char *mech, const char *resp, const char *shown_user)
{
	struct auth_client *auth = auth_connection(login);
	enum auth_reply_kind kind;
	char *data = NULL;
	unsigned id;

	if (auth == NULL || (id = auth_client_begin(auth, mech, resp, login->client->rip,
	    login->client->lip, login->client->loopback || tls_active(login))) == 0) {
		reply(login, "NO [UNAVAILABLE] Authentication service unavailable, try again later");
		auth_client_free(login->auth);
		login->auth = NULL;
		return;
	}

	while ((kind = auth_client_reply(auth, id, &data)) == AUTH_REPLY_CONT) {
		enum imap_read_status status;
		char *line;

		imap_io_printf(&login->io, "+ %s\r\n", data);
		free(data);
		data = NULL;
		line = imap_io_read_line(&login->io, IMAPD_LOGIN_LINE_MAX, &status);
		if (line == NULL && status == IMAP_READ_TOO_LONG) {
			reply(login, "BAD [TOOBIG] Authentication response too long");
			break;
		}
		if (line == NULL)
			_exit(0);
		if (strcmp(line, "*") == 0 || !is_base64(line)) {
			reply(login, strcmp(line, "*") == 0 ? "BAD Authentication canceled" :
			    "BAD Invalid base64 in authentication response");
			explicit_bzero(line, strlen(line));
			free(line);
			break;
		}
		if (auth_client_continue(auth, id, line) < 0)
			kind = AUTH_REPLY_ERROR;
		explicit_bzero(line, strlen(line));
		free(line);
		if (kind == AUTH_REPLY_ERROR)
			break;
	}

	switch (kind) {
	case AUTH_REPLY_OK:
		log_info("session=%llu: login: user=<%s>, method=%s, rip=%s, tls=%s",
		    login->client->session_id, data, mech, login->client->rip,
		    tls_active(login) ? "yes" : "no");
		hand_off(login, id, data, mech);
	case AUTH_REPLY_FAIL:
		log_info("session=%llu: login failed: user=<%s>, method=%s, rip=%s, tls=%s",
		    login->client->session_id, shown_user, mech, login->client->rip,
		    tls_active(login) ? "yes" : "no");
		reply(login, "NO [AUTHENTICATIONFAILED] Authentication failed.");
		login->auth_failures++;
		break;
	case AUTH_REPLY_TEMPFAIL:
		log_warn("session=%llu: authd temporary failure: %s", login->client->session_id,
		    data != NULL ? data : "");
		reply(login, "NO [UNAVAILABLE] Temporary authentication failure, try again later");
		break;
	case AUTH_REPLY_ERROR:
		log_error("session=%llu: authd connection failed during authentication",
		    login->client->session_id);
		reply(login, "NO [UNAVAILABLE] Authentication service unavailable, try again later");
		auth_client_free(login->auth);
		login->auth = NULL;
		break;
	case AUTH_REPLY_CONT:
		break;
	}
	free(data);
}

static char *
base64_encode(const unsigned char *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

/* LOGIN userid password: a PLAIN exchange with authd (RFC 4616 message). */
static void
cmd_login(struct login *login, struct imap_parser *parser)
{
	char *user = NULL, *password = NULL, *resp, *plain;
	size_t ulen, plen;

	if (imap_parse_sp(parser) < 0 ||
	    (user = imap_parse_astring_dup(parser, LOGIN_USER_MAX)) == NULL ||
	    imap_parse_sp(parser) < 0 ||
	    (password = imap_parse_astring_dup(parser, LOGIN_PASSWORD_MAX)) == NULL ||
	    !imap_parse_at_end(parser)) {
		reply(login, "BAD Invalid arguments: expected LOGIN user password");
		login->bad_commands++;
		goto done;
	}
	if (!plaintext_allowed(login)) {
		reply(login, "NO [PRIVACYREQUIRED] Plaintext authentication is not allowed on this connection");
		goto done;
	}

	ulen = strlen(user);
	plen = strlen(password);
	plain = xmalloc(ulen + plen + 2);
	plain[0] = '\0';
	memcpy(plain + 1, user, ulen);
	plain[ulen + 1] = '\0';
	memcpy(plain + ulen + 2, password, plen);
	resp = base64_encode((unsigned char *)plain, ulen + plen + 2);
	explicit_bzero(plain, ulen + plen + 2);
	free(plain);

	char shown[128];

	log_sanitize(shown, sizeof shown, user, ulen);
	authenticate(login, "PLAIN", resp, shown);
	explicit_bzero(resp, strlen(resp));
	free(resp);

done:
	if (password != NULL)
		explicit_bzero(password, strlen(password));
	free(user);
	free(password);
}

/* AUTHENTICATE mechanism [initial-response] (RFC 3501, RFC 4959 SASL-IR). */
static void
cmd_authenticate(struct login *login, struct imap_parser *parser)
{
	char mech[32], initial[IMAPD_LOGIN_LINE_MAX];
	const char *resp = NULL, *refusal;

	if (imap_parse_sp(parser) < 0 || imap_parse_atom(parser, mech, sizeof mech) < 0) {
		reply(login, "BAD Invalid arguments: expected AUTHENTICATE mechanism");
		login->bad_commands++;
		return;
	}
	for (char *p = mech; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	if (imap_parse_sp(parser) == 0) {
		if (imap_parse_atom(parser, initial, sizeof initial) < 0 || !is_base64(initial)) {
			reply(login, "BAD Invalid base64 initial response");
			login->bad_commands++;
			return;
		}
		resp = initial;
	}
	if (!imap_parse_at_end(parser)) {
		reply(login, "BAD Unexpected arguments after the initial response");
		login->bad_commands++;
		return;
	}
	if (!mechanism_known(mech) || auth_connection(login) == NULL ||
	    !auth_client_has_mech(login->auth, mech)) {
		reply(login, "NO Unsupported authentication mechanism");
		return;
	}
	refusal = mechanism_refusal(login, mech);
	if (refusal != NULL) {
		reply(login, refusal);
		return;
	}
	authenticate(login, mech, resp, "");
	explicit_bzero(initial, sizeof initial);
}

/* Run the handshake and switch the connection's I/O to TLS. Returns 0,
 * or -1 on failure. */
static int
start_tls(struct login *login)
{
	if (login_tls_accept(&login->tls, imapd_tls, login->client->fd, login->deadline,
	    login->client->session_id, login->client->rip) < 0)
		return -1;
	login->io.transport = &login->tls.transport;

	/* SCRAM-SHA-256-PLUS takes its channel binding from this SSL. */
	if (login->auth != NULL)
		auth_client_set_tls(login->auth, login->tls.ssl);
	return 0;
}

/*
 * STARTTLS (RFC 3501 section 6.2.1). Input that the client sent after the
 * command and before the handshake is discarded, because if executed later
 * it would pass for commands sent inside TLS (CVE-2011-0411).
 */
static void
cmd_starttls(struct login *login, struct imap_parser *parser)
{
	size_t dropped;

	if (!imap_parse_at_end(parser)) {
		reply(login, "BAD Unexpected arguments: expected STARTTLS alone");
		login->bad_commands++;
		return;
	}
	if (tls_active(login)) {
		reply(login, "BAD TLS is already active");
		login->bad_commands++;
		return;
	}
	if (imapd_tls == NULL) {
		reply(login, "BAD STARTTLS is not available: no certificate configured");
		login->bad_commands++;
		return;
	}

	reply(login, "OK Begin TLS negotiation now");
	if (imap_io_flush(&login->io) < 0)
		_exit(0);
	dropped = imap_io_discard_input(&login->io);
	if (dropped > 0)
		log_warn("session=%llu: discarded %zu bytes sent after STARTTLS before the TLS handshake: rip=%s",
		    login->client->session_id, dropped, login->client->rip);
	if (start_tls(login) < 0)
		_exit(0);
}

/* ID ( "name" "value" ... ) or ID NIL (RFC 2971): the client's fields are not used. */
static void
cmd_id(struct login *login, struct imap_parser *parser)
{
	if (imap_parse_sp(parser) < 0 || imap_parse_id_params(parser) < 0) {
		reply(login, "BAD Invalid arguments: expected ID NIL or a parameter list");
		login->bad_commands++;
		return;
	}
	imap_io_puts(&login->io, "* ID (\"name\" \"Estafeta\")\r\n");
	reply(login, "OK ID completed.");
}

static int
execute(struct login *login, const struct imap_command_text *text)
{
	struct imap_parser parser;
	char name[32];
	int r;

	imap_parser_init(&parser, text->data, text->len);
	r = imap_parse_command_start(&parser, login->tag, sizeof login->tag, name, sizeof name);
	if (r == -1) {
		imap_io_puts(&login->io, "* BAD Invalid tag\r\n");
		login->bad_commands++;
		return 0;
	}
	if (r == -2) {
		reply(login, "BAD Missing or invalid command name");
		login->bad_commands++;
		return 0;
	}

	if (strcmp(name, "CAPABILITY") == 0 && imap_parse_at_end(&parser)) {
		send_capability(login, "* ");
		imap_io_puts(&login->io, "\r\n");
		reply(login, "OK Capability completed.");
	} else if (strcmp(name, "NOOP") == 0 && imap_parse_at_end(&parser)) {
		reply(login, "OK NOOP completed.");
	} else if (strcmp(name, "LOGOUT") == 0 && imap_parse_at_end(&parser)) {
		imap_io_puts(&login->io, "* BYE Logging out\r\n");
		reply(login, "OK Logout completed.");
		return 1;
	} else if (strcmp(name, "ID") == 0) {
		cmd_id(login, &parser);
	} else if (strcmp(name, "LOGIN") == 0) {
		cmd_login(login, &parser);
	} else if (strcmp(name, "AUTHENTICATE") == 0) {
		cmd_authenticate(login, &parser);
	} else if (strcmp(name, "STARTTLS") == 0) {
		cmd_starttls(login, &parser);
	} else {
		reply(login, "BAD Unknown command, or not allowed before login");
		login->bad_commands++;
	}

	if (login->auth_failures >= LOGIN_MAX_AUTH_FAILURES) {
		imap_io_puts(&login->io, "* BYE Too many failed logins\r\n");
		return 1;
	}
	if (login->bad_commands >= LOGIN_MAX_BAD_COMMANDS) {
		imap_io_puts(&login->io, "* BYE Too many invalid commands\r\n");
		return 1;
	}
	return 0;
}

void
login_session_run(struct imapd_client *client, int master_fd)
{
	struct login login = { .client = client, .master_fd = master_fd };
	struct imap_command_text text = { 0 };

	login.deadline = now_usec() + imapd_settings.login_timeout * 1000000LL;
	imap_io_init(&login.io, client->fd, (int)imapd_settings.login_timeout * 1000);
	if (client->implicit_tls && start_tls(&login) < 0)
		_exit(0);
	send_capability(&login, "* OK [");
	imap_io_puts(&login.io, "] Estafeta IMAP ready.\r\n");

	for (;;) {
		enum imap_read_status status;
		long long left_ms = (login.deadline - now_usec()) / 1000;

		/* imapd_login_timeout bounds the whole time before login. */
		if (left_ms <= 0) {
			imap_io_puts(&login.io, "* BYE Login timed out\r\n");
			break;
		}
		login.io.timeout_ms = (int)left_ms;

		status = imap_io_read_command(&login.io, &imapd_settings.login_limits, &text);
		if (status != IMAP_READ_OK) {
			if (imap_io_reject(&login.io, status, &text))
				break;
			login.bad_commands++;
			continue;
		}
		if (execute(&login, &text))
			break;
		if (imap_io_flush(&login.io) < 0)
			break;
	}
	imap_io_flush(&login.io);
	login_tls_close(&login.tls);
	log_info("session=%llu: disconnect from %s before login", client->session_id, client->rip);
	auth_client_free(login.auth);
	_exit(0);
}
