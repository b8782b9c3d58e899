/*
 * Submission policy: on the submission and smtps listeners MAIL needs
 * AUTH first, and after AUTH the envelope sender and every From:
 * address must belong to the login (sender_login.h). The From: check
 * needs the header, so the header of each message is kept while it
 * arrives and checked at the end of the message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_client.h"
#include "header.h"
#include "log.h"
#include "netaddr.h"
#include "ratelimit.h"
#include "sender_login.h"
#include "smtpd.h"
#include "util.h"

/* Maximum header size kept for the From: check. A longer header is rejected. */
#define SUBMISSION_HEADER_MAX	(256 * 1024)
/* Maximum number of client addresses whose rates are tracked at once. When the
 * table is full, a new address takes the probed slot with the oldest window. */
#define SUBMISSION_RATE_SLOTS	8192
/* Maximum number of From: addresses checked per message, because RFC 5322
 * allows a list. */
#define SUBMISSION_FROM_MAX	32

/* Return 1 if the login owns ADDRESS, 0 if not, or -1 with REPLY set when
 * the map lookup fails. */
static int
sender_owned(struct session *s, const struct mailaddr *address, char *reply, size_t replysize)
{
	int rc = sender_login_owns(s->server->sender_logins, s->auth.user, address);

	if (rc < 0)
		snprintf(reply, replysize,
		    "451 4.3.0 Error: temporary sender login map failure, try again later");
	return rc;
}

int
submission_check_mail(struct session *s, const struct mailaddr *sender, char *reply,
    size_t replysize)
{
	char formatted[ADDR_MAX * 4 + 8], user[sizeof s->auth.user * 4];
	int rc;

	if (s->auth.user[0] == '\0') {
		if (s->listener == LISTENER_MX)
			return 0;
		if (!auth_offered(s) && s->server->tls != NULL && !s->tls_active)
			snprintf(reply, replysize, "530 5.7.0 Must issue a STARTTLS command first");
		else
			snprintf(reply, replysize, "530 5.7.0 Authentication required");
		return -1;
	}

	rc = sender_owned(s, sender, reply, replysize);
	if (rc > 0)
		return 0;
	if (rc == 0) {
		addr_format(sender, formatted, sizeof formatted);
		log_sanitize(user, sizeof user, s->auth.user, strlen(s->auth.user));
		snprintf(reply, replysize,
		    "553 5.7.1 <%s>: Sender address rejected: not owned by user %s", formatted, user);
	}
	return -1;
}

void
submission_header_reset(struct session *s)
{
	free(s->auth.header);
	s->auth.header = NULL;
	s->auth.header_len = 0;
	s->auth.header_done = 0;
	s->auth.header_too_long = 0;
}

void
submission_header_append(struct session *s, const char *data, size_t len)
{
	struct session_auth *auth = &s->auth;
	size_t take, search_from;

	if (auth->user[0] == '\0' || auth->header_done || auth->header_too_long || len == 0)
		return;
	if (auth->header == NULL)
		auth->header = xmalloc(SUBMISSION_HEADER_MAX);

	take = len < SUBMISSION_HEADER_MAX - auth->header_len ?
	    len : SUBMISSION_HEADER_MAX - auth->header_len;
	search_from = auth->header_len > 0 ? auth->header_len - 1 : 0;
	memcpy(auth->header + auth->header_len, data, take);
	auth->header_len += take;

	/* The header ends at an empty line; content is stored with LF line ends. */
	if (auth->header[0] == '\n' ||
	    memmem(auth->header + search_from, auth->header_len - search_from, "\n\n", 2) != NULL)
		auth->header_done = 1;
	else if (auth->header_len == SUBMISSION_HEADER_MAX)
		auth->header_too_long = 1;
}

/* Check one From: field value. Returns 0, or -1 with REPLY set. */
static int
check_from_value(struct session *s, const char *value, char *reply, size_t replysize)
{
	char *addresses[SUBMISSION_FROM_MAX], user[sizeof s->auth.user * 4];
	size_t found = header_addresses(value, addresses, SUBMISSION_FROM_MAX);
	size_t stored = found < SUBMISSION_FROM_MAX ? found : SUBMISSION_FROM_MAX;
	int result = 0;

	log_sanitize(user, sizeof user, s->auth.user, strlen(s->auth.user));
	if (found > SUBMISSION_FROM_MAX) {
		snprintf(reply, replysize, "550 5.7.1 Error: more than %d From: addresses",
		    SUBMISSION_FROM_MAX);
		result = -1;
	}
	for (size_t i = 0; i < stored; i++) {
		struct mailaddr address;
		char text[ADDR_MAX * 4 + 8];
		const char *why;
		int rc;

		if (result < 0)
			break;
		log_sanitize(text, sizeof text, addresses[i], strlen(addresses[i]));
		if (addr_parse_plain(addresses[i], ADDR_ALLOW_UTF8, &address, &why) < 0) {
			snprintf(reply, replysize,
			    "550 5.7.1 <%s>: From: address rejected: invalid address (%s)", text, why);
			result = -1;
			break;
		}
		rc = sender_owned(s, &address, reply, replysize);
		if (rc == 0)
			snprintf(reply, replysize,
			    "550 5.7.1 <%s>: From: address rejected: not owned by user %s", text, user);
		if (rc <= 0)
			result = -1;
	}
	for (size_t i = 0; i < stored; i++)
		free(addresses[i]);
	return result;
}

/*
 * Return the line number of the first line in the header section of
 * HEADER (LEN bytes) that is neither a field nor a continuation, or 0
 * when there is none. header_parse ends the header at such a line, but
 * Dovecot 2.3.19 reads fields past it and Python's email package skips
 * a leading mbox "From " line, so a From: after it would reach readers
 * unchecked.
 */
static size_t
malformed_header_line(const char *header, size_t len, const struct header_list *list)
{
	size_t lineno = 1;

	if (list->body_offset != list->header_len || list->header_len >= len)
		return 0;	/* the header ended at an empty line or at the end */
	for (size_t i = 0; i < list->header_len; i++)
		if (header[i] == '\n')
			lineno++;
	return lineno;
}

const char *
submission_check_header(struct session *s, char *reply, size_t replysize)
{
	struct session_auth *auth = &s->auth;
	struct header_list list = { 0 };
	const char *result = NULL;
	size_t malformed;

	if (auth->user[0] == '\0')
		return NULL;
	if (auth->header_too_long) {
		snprintf(reply, replysize,
		    "550 5.7.1 Error: header longer than %d bytes, From: cannot be checked",
		    SUBMISSION_HEADER_MAX);
		return reply;
	}
	if (auth->header_len == 0)
		return NULL;
	if (header_parse(auth->header, auth->header_len, &list) < 0)
		fatalx("out of memory parsing a message header");

	malformed = malformed_header_line(auth->header, auth->header_len, &list);
	if (malformed > 0) {
		snprintf(reply, replysize,
		    "550 5.6.0 Error: header line %zu is neither a header field nor a continuation",
		    malformed);
		header_list_free(&list);
		return reply;
	}

	for (size_t i = 0; i < list.count && result == NULL; i++) {
		const struct header_field *field = &list.fields[i];
		char *value;

		if (field->namelen != 4 || ascii_ncasecmp(field->name, "From", 4) != 0)
			continue;
		value = header_unfold(field);
		if (check_from_value(s, value, reply, replysize) < 0)
			result = reply;
		free(value);
	}
	header_list_free(&list);
	return result;
}

/*
 * Warn when a submission listener can never take mail: MAIL needs AUTH
 * there, and AUTH needs TLS unless smtpd_plaintext_auth allows it.
 */
static void
warn_submission_without_tls(const struct smtpd *server)
{
	if (server->tls != NULL || server->auth_settings.plaintext != PLAINTEXT_AUTH_NEVER)
		return;
	for (size_t i = 0; i < server->nlisteners; i++) {
		if (server->listener_kinds[i] != LISTENER_SUBMISSION)
			continue;
		log_warn("smtpd_submission_listen is set without tls_cert_file, so clients cannot "
		    "use AUTH there and every MAIL gets 530; set tls_cert_file, or "
		    "smtpd_plaintext_auth = loopback for local clients");
		return;
	}
}

/* Create the rate table, the sender login map and the authd client that
 * AUTH and the submission checks use. Call after privsep_drop. */
void
submission_start(struct smtpd *server)
{
	const struct smtpd_auth_settings *settings = &server->auth_settings;

	warn_submission_without_tls(server);
	server->rates = rate_table_new(settings->rate_time_unit, SUBMISSION_RATE_SLOTS);
	server->sender_logins = sender_login_map_new(settings->sender_login_maps,
	    server->settings.recipient_delimiter);
	server->auth = auth_client_new(server->base, settings->auth_socket, settings->timeout);
	if (settings->offer != AUTH_OFFER_NO)
		auth_client_refresh_mechanisms(server->auth);
}

void
submission_stop(struct smtpd *server)
{
	auth_client_free(server->auth);
	sender_login_map_free(server->sender_logins);
	rate_table_free(server->rates);
}

int
submission_connection_rate_exceeded(struct smtpd *server, const struct sockaddr *sa,
    const char *ip)
{
	const struct smtpd_auth_settings *settings = &server->auth_settings;
	unsigned long count;

	if (settings->connection_rate_limit == 0 || netaddr_list_match(server->mynetworks, sa))
		return 0;
	count = rate_count(server->rates, ip, RATE_CONNECTION, time(NULL));
	if (count <= (unsigned long)settings->connection_rate_limit)
		return 0;
	log_warn("Connection rate limit exceeded: %lu from unknown[%s] in %llds", count, ip,
	    settings->rate_time_unit);
	return 1;
}
