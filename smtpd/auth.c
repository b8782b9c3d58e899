/*
 * SMTP AUTH (RFC 4954) through authd's auth_socket. smtpd relays the
 * base64 data between the client and authd and never decodes it, so
 * every mechanism authd lists in its handshake (PLAIN, LOGIN, SCRAM-
 * SHA-256...) works without code here. The session pauses while authd
 * works, which includes authd's growing delay after failures, so other
 * sessions go on meanwhile.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <openssl/evp.h>

#include "auth_client.h"
#include "config.h"
#include "log.h"
#include "netaddr.h"
#include "ratelimit.h"
#include "smtpd.h"
#include "tls.h"
#include "util.h"

/* Maximum length of a mechanism name; RFC 4422 3.1 allows 20 characters. */
#define AUTH_MECHANISM_MAX	64
/* authd's FAIL reason for a mechanism it does not have (authd/client.c). */
#define AUTHD_UNKNOWN_MECHANISM	"Unsupported authentication mechanism"
/* Seconds between two warnings that authd sent no mechanism list. */
#define AUTH_WARNING_INTERVAL	60

void
auth_settings_load(struct smtpd_auth_settings *settings)
{
	const char *enable = config_string("smtpd_sasl_auth_enable");
	const char *plaintext = config_string("smtpd_plaintext_auth");
	const char *userdb_socket = config_string("userdb_socket");
	const char *slash;

	settings->offer = strcmp(enable, "all") == 0 ? AUTH_OFFER_ALL :
	    strcmp(enable, "submission") == 0 ? AUTH_OFFER_SUBMISSION : AUTH_OFFER_NO;
	settings->plaintext = strcmp(plaintext, "always") == 0 ? PLAINTEXT_AUTH_ALWAYS :
	    strcmp(plaintext, "loopback") == 0 ? PLAINTEXT_AUTH_LOOPBACK : PLAINTEXT_AUTH_NEVER;
	settings->timeout = config_time("smtpd_auth_timeout");
	settings->connection_rate_limit = config_int("smtpd_client_connection_rate_limit");
	settings->auth_rate_limit = config_int("smtpd_client_auth_rate_limit");
	settings->rate_time_unit = config_time("smtpd_client_rate_time_unit");
	settings->sender_login_maps = config_string("smtpd_sender_login_maps");

	/* authd's rule: auth_socket, or auth-client beside userdb_socket. */
	if (*config_string("auth_socket") != '\0') {
		strlcpy_x(settings->auth_socket, config_string("auth_socket"),
		    sizeof settings->auth_socket);
	} else {
		slash = strrchr(userdb_socket, '/');
		snprintf(settings->auth_socket, sizeof settings->auth_socket, "%.*sauth-client",
		    slash != NULL ? (int)(slash - userdb_socket + 1) : 0, userdb_socket);
	}
}

/* Whether the client connects from 127.0.0.0/8 or ::1 (IPv4-mapped included). */
static int
client_on_loopback(const struct session *s)
{
	if (s->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&s->addr;

		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (s->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&s->addr;

		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127;
	}
	return 0;
}

/* The server's address of the connection, for authd's lip field; "" if unknown. */
static void
session_local_ip(const struct session *s, char *out, size_t outsize)
{
	struct sockaddr_storage local;
	socklen_t locallen = sizeof local;

	out[0] = '\0';
	if (getsockname(bufferevent_getfd(s->bev), (struct sockaddr *)&local, &locallen) == 0)
		netaddr_format((struct sockaddr *)&local, out, outsize);
}

/* Whether AUTH is enabled on the listener S came in on, TLS aside. */
static int
auth_enabled_here(const struct session *s)
{
	const struct smtpd_auth_settings *settings = &s->server->auth_settings;

	if (settings->offer == AUTH_OFFER_ALL)
		return 1;
	return settings->offer == AUTH_OFFER_SUBMISSION && s->listener != LISTENER_MX;
}

/* Whether a password may cross this connection: TLS, or a plaintext_auth exception. */
static int
auth_channel_allowed(const struct session *s)
{
	enum plaintext_auth policy = s->server->auth_settings.plaintext;

	if (s->tls_active)
		return 1;
	if (policy == PLAINTEXT_AUTH_ALWAYS)
		return 1;
	return policy == PLAINTEXT_AUTH_LOOPBACK && client_on_loopback(s);
}

int
auth_offered(const struct session *s)
{
	return auth_enabled_here(s) && auth_channel_allowed(s);
}

/*
 * Whether MECHANISM can be used here: authd has it, and a -PLUS one
 * needs TLS. Until authd's first handshake arrives, shortly after
 * start-up, the list is empty and authd decides each AUTH itself.
 */
static int
mechanism_usable(const struct session *s, const char *mechanism)
{
	size_t len = strlen(mechanism);

	if (len > 5 && strcmp(mechanism + len - 5, "-PLUS") == 0 && !s->tls_active)
		return 0;
	if (*auth_client_mechanisms(s->server->auth) == '\0')
		return 1;
	return auth_client_has_mechanism(s->server->auth, mechanism);
}

void
auth_ehlo_keyword(struct session *s, char *out, size_t outsize)
{
	static time_t last_warning;
	const char *list = auth_client_mechanisms(s->server->auth);
	size_t used;

	out[0] = '\0';
	if (!auth_offered(s))
		return;
	if (*list == '\0') {
		/* No handshake from authd since start-up: fetch one for the next EHLO. */
		auth_client_refresh_mechanisms(s->server->auth);
		if (time(NULL) - last_warning >= AUTH_WARNING_INTERVAL) {
			last_warning = time(NULL);
			log_warn("AUTH not advertised to %s[%s]: no mechanism list from %s yet; is authd running?",
			    s->name, s->ip, s->server->auth_settings.auth_socket);
		}
		return;
	}

	used = (size_t)snprintf(out, outsize, "250-AUTH");
	for (const char *word = list; *word != '\0' && used < outsize; ) {
		char mechanism[AUTH_MECHANISM_MAX + 1];
		size_t len = strcspn(word, " ");

		if (len <= AUTH_MECHANISM_MAX) {
			memcpy(mechanism, word, len);
			mechanism[len] = '\0';
			if (mechanism_usable(s, mechanism))
				used += (size_t)snprintf(out + used, outsize - used, " %s", mechanism);
		}
		word += len;
		word += strspn(word, " ");
	}
	if (used < outsize)
		snprintf(out + used, outsize - used, "\r\n");
}

/* Strict base64 (RFC 4648, padding required), or "=" for an empty response. */
static int
base64_syntax_valid(const char *text)
{
	size_t len = strlen(text), data_len, padding = 0;

	if (strcmp(text, "=") == 0)
		return 1;
	if (len == 0 || len % 4 != 0)
		return 0;
	while (padding < 2 && text[len - 1 - padding] == '=')
		padding++;
	data_len = len - padding;
	return strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") ==
	    data_len;
}

/* End the exchange with authd, if any, without a result. */
static void
auth_exchange_end(struct session *s)
{
	auth_client_cancel(s->auth.request);
	s->auth.request = NULL;
	s->auth.awaiting_response = 0;
}

void
auth_session_reset(struct session *s)
{
	auth_exchange_end(s);
	s->auth.user[0] = '\0';
	s->auth.mechanism[0] = '\0';
}

/* Finish the AUTH command: the reply is sent; take commands again. */
static void
auth_command_done(struct session *s)
{
	command_finish(s);
	if (s->state == SESSION_WAITING) {
		session_set_state(s, SESSION_COMMAND);
		session_resume(s);
	}
}

static void
auth_log_failure(struct session *s, const char *reason)
{
	char text[256];

	log_sanitize(text, sizeof text, reason, strlen(reason));
	log_warn("%s[%s]: SASL %s authentication failed: %s", s->name, s->ip, s->auth.mechanism,
	    text[0] != '\0' ? text : "authentication failure");
}

static void
auth_result(void *arg, enum auth_result result, const char *data)
{
	struct session *s = arg;
	char user[sizeof s->auth.user * 4], *challenge;

	if (result != AUTH_RESULT_CONTINUE)
		s->auth.request = NULL;

	switch (result) {
	case AUTH_RESULT_CONTINUE:
		/* RFC 4954 4: "334 " with an empty challenge keeps its space. A
		 * challenge may be longer than session_reply's line buffer. */
		s->auth.awaiting_response = 1;
		challenge = xasprintf("334 %s", data);
		session_reply_raw(s, challenge);
		free(challenge);
		if (s->state == SESSION_WAITING) {
			session_set_state(s, SESSION_COMMAND);
			session_resume(s);
		}
		return;
	case AUTH_RESULT_OK:
		strlcpy_x(s->auth.user, data, sizeof s->auth.user);
		log_sanitize(user, sizeof user, data, strlen(data));
		log_info("%s[%s]: sasl_method=%s, sasl_username=%s", s->name, s->ip,
		    s->auth.mechanism, user);
		session_reply(s, "235 2.7.0 Authentication successful");
		break;
	case AUTH_RESULT_FAIL:
		auth_log_failure(s, data);
		if (strcmp(data, AUTHD_UNKNOWN_MECHANISM) == 0)
			session_reply(s, "504 5.5.4 Unrecognized authentication type");
		else
			session_reply(s, "535 5.7.8 Error: authentication failed");
		break;
	case AUTH_RESULT_TEMPFAIL:
		auth_log_failure(s, data);
		session_reply(s, "454 4.7.0 Temporary authentication failure, try again later");
		break;
	}
	s->auth.awaiting_response = 0;
	auth_command_done(s);
}

/* Count the AUTH command against smtpd_client_auth_rate_limit. Returns 1 when over it. */
static int
auth_rate_exceeded(struct session *s)
{
	const struct smtpd_auth_settings *settings = &s->server->auth_settings;
	unsigned long count;

	if (settings->auth_rate_limit == 0 || s->in_mynetworks)
		return 0;
	count = rate_count(s->server->rates, s->ip, RATE_AUTH, time(NULL));
	if (count <= (unsigned long)settings->auth_rate_limit)
		return 0;
	log_warn("AUTH command rate limit exceeded: %lu from %s[%s] in %llds", count, s->name,
	    s->ip, settings->rate_time_unit);
	return 1;
}

/*
 * Whether MECHANISM has the syntax of RFC 4422 3.1 (upper-case letters,
 * digits, '-' and '_'), so it is safe in log lines and in authd's request.
 */
static int
mechanism_name_valid(const char *mechanism)
{
	size_t len = strlen(mechanism);

	return len <= AUTH_MECHANISM_MAX &&
	    strspn(mechanism, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == len;
}

/*
 * Check AUTH before it goes to authd. Returns 0, or -1 after sending
 * the error reply.
 */
static int
auth_check_command(struct session *s, const char *mechanism, const char *response)
{
	if (!auth_enabled_here(s)) {
		session_reply(s, "503 5.5.1 Error: authentication not enabled");
		return -1;
	}
	if (s->helo[0] == '\0') {
		session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return -1;
	}
	if (s->auth.user[0] != '\0') {
		session_reply(s, "503 5.5.1 Error: already authenticated");
		return -1;
	}
	if (s->tx.active) {
		session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return -1;
	}
	if (!auth_channel_allowed(s)) {
		session_reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return -1;
	}
	if (auth_rate_exceeded(s)) {
		session_reply(s, "454 4.7.0 Error: too many AUTH commands from %s, try again later",
		    s->ip);
		return -1;
	}
	if (*mechanism == '\0') {
		session_reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		return -1;
	}
	if (!mechanism_name_valid(mechanism) || !mechanism_usable(s, mechanism)) {
		session_reply(s, "504 5.5.4 Unrecognized authentication type");
		return -1;
	}
	if (response != NULL && strcmp(response, "*") == 0) {
		session_reply(s, "501 5.7.0 Authentication aborted");
		return -1;
	}
	if (response != NULL && !base64_syntax_valid(response)) {
		session_reply(s, "501 5.5.2 Cannot decode initial response");
		return -1;
	}
	return 0;
}

/*
 * The channel-binding data of the TLS session for TYPE, as authd
 * requested it for SCRAM-PLUS, in base64 in OUT. Returns 0, or -1 when
 * there is no TLS or TYPE is not defined for the session's protocol.
 */
static int
auth_channel_binding(struct session *s, const char *type, char *out, size_t outsize)
{
	unsigned char data[TLS_CHANNEL_BINDING_MAX];
	enum tls_channel_binding_type binding;
	int len;

	if (s->ssl == NULL || !s->tls_active)
		return -1;
	if (strcmp(type, tls_channel_binding_name(TLS_CB_EXPORTER)) == 0)
		binding = TLS_CB_EXPORTER;
	else if (strcmp(type, tls_channel_binding_name(TLS_CB_UNIQUE)) == 0)
		binding = TLS_CB_UNIQUE;
	else
		return -1;
	len = tls_channel_binding(s->ssl, binding, data, sizeof data);
	if (len < 0 || (size_t)(len + 2) / 3 * 4 + 1 > outsize)
		return -1;
	EVP_EncodeBlock((unsigned char *)out, data, len);
	return 0;
}

void
command_auth(struct session *s, char *args)
{
	struct auth_request_params params = { 0 };
	char *mechanism = args, *response = NULL, err[256];
	char local_ip[SMTPD_IP_MAX];

	response = strchr(args, ' ');
	if (response != NULL) {
		*response++ = '\0';
		response += strspn(response, " ");
	}
	for (char *p = mechanism; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	if (strlen(mechanism) > AUTH_MECHANISM_MAX) {
		session_reply(s, "504 5.5.4 Unrecognized authentication type");
		return;
	}
	if (auth_check_command(s, mechanism, response) < 0)
		return;

	strlcpy_x(s->auth.mechanism, mechanism, sizeof s->auth.mechanism);
	session_local_ip(s, local_ip, sizeof local_ip);
	params.mechanism = mechanism;
	params.initial_response = response == NULL ? NULL : strcmp(response, "=") == 0 ? "" : response;
	params.remote_ip = s->ip;
	params.local_ip = local_ip;
	params.tls = s->tls_active;
	params.secured = client_on_loopback(s);

	s->auth.request = auth_client_begin(s->server->auth, &params, auth_result, s, err,
	    sizeof err);
	if (s->auth.request == NULL) {
		log_warn("%s[%s]: AUTH %s: %s", s->name, s->ip, mechanism, err);
		session_reply(s, "454 4.7.0 Temporary authentication failure, try again later");
		return;
	}
	session_pause(s);
}

/* The client's line after a 334 challenge: a response, or "*" to cancel. */
void
auth_response(struct session *s, char *line)
{
	char cbind[TLS_CHANNEL_BINDING_MAX * 2];
	const char *cbind_type;

	s->auth.awaiting_response = 0;
	if (strcmp(line, "*") == 0) {
		auth_exchange_end(s);
		session_reply(s, "501 5.7.0 Authentication aborted");
		command_finish(s);
		return;
	}
	if (line[0] != '\0' && !base64_syntax_valid(line)) {
		auth_exchange_end(s);
		session_reply(s, "501 5.5.2 Cannot decode response");
		command_finish(s);
		return;
	}
	cbind_type = auth_request_channel_binding_type(s->auth.request);
	if (cbind_type != NULL && auth_channel_binding(s, cbind_type, cbind, sizeof cbind) < 0) {
		auth_exchange_end(s);
		log_warn("%s[%s]: SASL %s authentication failed: no %s channel binding on this connection",
		    s->name, s->ip, s->auth.mechanism, cbind_type);
		session_reply(s, "535 5.7.8 Error: authentication failed");
		command_finish(s);
		return;
	}
	auth_client_continue(s->auth.request, strcmp(line, "=") == 0 ? "" : line,
	    cbind_type != NULL ? cbind : NULL);
	session_pause(s);
}
