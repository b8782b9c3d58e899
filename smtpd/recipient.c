/*
 * Recipient policy at RCPT time: local and virtual recipients must
 * exist (alias map or authd's userdb), other domains are relayed only
 * for clients in mynetworks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdbmap.h"
#include "log.h"
#include "smtpd.h"
#include "userdb.h"
#include "util.h"

enum domain_class { DOMAIN_REMOTE, DOMAIN_LOCAL, DOMAIN_VIRTUAL };

static int
domain_in_list(const char *domain, char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (ascii_casecmp(domain, list[i]) == 0)
			return 1;
	return 0;
}

static enum domain_class
domain_classify(const struct smtpd_settings *settings, const char *domain)
{
	if (ascii_casecmp(domain, settings->hostname) == 0 ||
	    domain_in_list(domain, settings->local_domains))
		return DOMAIN_LOCAL;
	if (domain_in_list(domain, settings->virtual_domains))
		return DOMAIN_VIRTUAL;
	return DOMAIN_REMOTE;
}

/* 1 if KEY is in the alias map, 0 if not or there is no map. */
static int
alias_exists(struct smtpd *server, const char *key)
{
	char *value = NULL;
	int rc;

	cdbmap_refresh(&server->aliases, server->settings.alias_map_path);
	if (server->aliases == NULL)
		return 0;
	rc = cdbmap_lookup(server->aliases, key, &value);
	free(value);
	if (rc < 0) {
		char text[512];

		log_sanitize(text, sizeof text, key, strlen(key));
		log_warn("alias map %s: read error looking up %s", server->settings.alias_map_path, text);
	}
	return rc == 1;
}

/*
 * Look KEY up as an alias, then as a user. Returns 1 if found, 0 if
 * not, -1 if authd could not be asked.
 */
static int
recipient_key_exists(struct session *s, const char *key)
{
	struct smtpd *server = s->server;
	struct userdb_entry entry;
	char err[256];
	int rc;

	if (alias_exists(server, key))
		return 1;

	/* TODO: the lookup blocks the event loop for up to smtpd_userdb_timeout; make it asynchronous. */
	rc = userdb_lookup(server->userdb, key, "smtp", (int)(server->settings.userdb_timeout * 1000),
	    &entry, err, sizeof err);
	if (rc < 0) {
		char text[512];

		log_sanitize(text, sizeof text, key, strlen(key));
		log_warn("userdb lookup of %s failed: %s", text, err);
	}
	return rc;
}

/*
 * Check the user part of RCPT in a local (KEY_DOMAIN NULL) or virtual
 * domain: first the full local part, then the part before the
 * recipient delimiter ("user+detail" -> "user").
 */
static int
recipient_exists(struct session *s, const struct mailaddr *rcpt, const char *key_domain)
{
	char local[sizeof rcpt->local], user[sizeof rcpt->local], detail[sizeof rcpt->local];
	char key[sizeof rcpt->local + sizeof rcpt->domain + 1];
	int rc;

	strlcpy_x(local, rcpt->local, sizeof local);
	ascii_lower(local);
	addr_split_detail(local, s->server->settings.recipient_delimiter, user, sizeof user,
	    detail, sizeof detail);

	if (key_domain != NULL)
		snprintf(key, sizeof key, "%s@%s", local, key_domain);
	else
		strlcpy_x(key, local, sizeof key);
	rc = recipient_key_exists(s, key);
	if (rc != 0 || detail[0] == '\0')
		return rc;

	if (key_domain != NULL)
		snprintf(key, sizeof key, "%s@%s", user, key_domain);
	else
		strlcpy_x(key, user, sizeof key);
	return recipient_key_exists(s, key);
}

int
recipient_check(struct session *s, const struct mailaddr *rcpt, char *reply, size_t replysize)
{
	const struct smtpd_settings *settings = &s->server->settings;
	char formatted[ADDR_MAX * 4 + 8];
	enum domain_class class;
	int rc;

	addr_format(rcpt, formatted, sizeof formatted);

	/* RFC 5321 4.5.1: postmaster is accepted bare and in every local domain. */
	if (rcpt->domain[0] == '\0') {
		if (ascii_casecmp(rcpt->local, "postmaster") == 0)
			return 250;
		snprintf(reply, replysize,
		    "501 5.1.3 <%s>: Recipient address rejected: domain required", formatted);
		return 501;
	}

	class = domain_classify(settings, rcpt->domain);
	if (class == DOMAIN_REMOTE) {
		if (s->in_mynetworks)
			return 250;
		snprintf(reply, replysize, "554 5.7.1 <%s>: Relay access denied", formatted);
		return 554;
	}
	if (class == DOMAIN_LOCAL && ascii_casecmp(rcpt->local, "postmaster") == 0)
		return 250;

	rc = recipient_exists(s, rcpt, class == DOMAIN_VIRTUAL ? rcpt->domain : NULL);
	if (rc > 0)
		return 250;
	if (rc < 0) {
		snprintf(reply, replysize,
		    "451 4.3.0 <%s>: Recipient address rejected: temporary lookup failure, try again later",
		    formatted);
		return 451;
	}
	snprintf(reply, replysize,
	    "550 5.1.1 <%s>: Recipient address rejected: User unknown in %s recipient table",
	    formatted, class == DOMAIN_VIRTUAL ? "virtual" : "local");
	return 550;
}
