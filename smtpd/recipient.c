/*
 * Recipient policy at RCPT time: local and virtual recipients must
 * exist (alias map or authd's userdb), other domains are relayed only
 * for clients in mynetworks. The userdb lookup is asynchronous: the
 * session waits for it with its input paused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdbmap.h"
#include "domain.h"
#include "log.h"
#include "smtpd.h"
#include "userdb_async.h"
#include "util.h"

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

static void recipient_lookup_done(void *arg, int result, const char *error);

/* The reply for a recipient that was not found in any table. */
static int
recipient_unknown(struct session *s, char *reply, size_t replysize)
{
	snprintf(reply, replysize,
	    "550 5.1.1 <%s>: Recipient address rejected: User unknown in %s recipient table",
	    s->lookup.recipient, s->lookup.virtual ? "virtual" : "local");
	return 550;
}

static int
recipient_lookup_failed(struct session *s, const char *error, char *reply, size_t replysize)
{
	char text[512];

	log_sanitize(text, sizeof text, s->lookup.keys[s->lookup.next - 1],
	    strlen(s->lookup.keys[s->lookup.next - 1]));
	log_warn("userdb lookup of %s failed: %s", text, error);
	snprintf(reply, replysize,
	    "451 4.3.0 <%s>: Recipient address rejected: temporary lookup failure, try again later",
	    s->lookup.recipient);
	return 451;
}

/*
 * Try the next key: the alias map first, then authd's userdb. Returns
 * 250 when found, RECIPIENT_PENDING while a userdb lookup runs, or the
 * error code with REPLY set.
 */
static int
recipient_lookup_next(struct session *s, char *reply, size_t replysize)
{
	struct recipient_lookup *lookup = &s->lookup;

	while (lookup->next < lookup->nkeys) {
		const char *key = lookup->keys[lookup->next++];
		char err[256];
		int result;

		if (alias_exists(s->server, key))
			return 250;

		lookup->request = userdb_async_lookup(s->server->userdb, key, recipient_lookup_done,
		    s, &result, err, sizeof err);
		if (lookup->request != NULL)
			return RECIPIENT_PENDING;
		if (result > 0)
			return 250;
		if (result < 0)
			return recipient_lookup_failed(s, err, reply, replysize);
	}
	return recipient_unknown(s, reply, replysize);
}

/* The userdb replied: finish RCPT, or try the next key. */
static void
recipient_lookup_done(void *arg, int result, const char *error)
{
	struct session *s = arg;
	char reply[2048];
	int code;

	s->lookup.request = NULL;
	if (result > 0)
		code = 250;
	else if (result < 0)
		code = recipient_lookup_failed(s, error, reply, sizeof reply);
	else
		code = recipient_lookup_next(s, reply, sizeof reply);
	if (code == RECIPIENT_PENDING)
		return;

	rcpt_finish(s, code, reply);
	command_finish(s);
	session_set_state(s, SESSION_COMMAND);
	session_resume(s);
}

void
recipient_lookup_cancel(struct session *s)
{
	userdb_async_cancel(s->lookup.request);
	s->lookup.request = NULL;
}

/*
 * Set up the keys for RCPT in a local (KEY_DOMAIN NULL) or virtual
 * domain: first the full local part, then the part before the
 * recipient delimiter ("user+detail" -> "user").
 */
static void
recipient_lookup_keys(struct session *s, const struct mailaddr *rcpt, const char *key_domain)
{
	struct recipient_lookup *lookup = &s->lookup;
	char local[sizeof rcpt->local], user[sizeof rcpt->local], detail[sizeof rcpt->local];

	strlcpy_x(local, rcpt->local, sizeof local);
	ascii_lower(local);
	addr_split_detail(local, s->server->settings.recipient_delimiter, user, sizeof user,
	    detail, sizeof detail);

	lookup->nkeys = detail[0] != '\0' ? 2 : 1;
	lookup->next = 0;
	lookup->virtual = key_domain != NULL;
	for (int i = 0; i < lookup->nkeys; i++) {
		const char *part = i == 0 ? local : user;

		if (key_domain != NULL)
			snprintf(lookup->keys[i], sizeof lookup->keys[i], "%s@%s", part, key_domain);
		else
			strlcpy_x(lookup->keys[i], part, sizeof lookup->keys[i]);
	}
}

int
recipient_check(struct session *s, const struct mailaddr *rcpt, char *reply, size_t replysize)
{
	const char *formatted = s->lookup.recipient;
	enum domain_class class;

	/* RFC 5321 4.5.1: postmaster is accepted bare and in every local domain. */
	if (rcpt->domain[0] == '\0') {
		if (ascii_casecmp(rcpt->local, "postmaster") == 0)
			return 250;
		snprintf(reply, replysize,
		    "501 5.1.3 <%s>: Recipient address rejected: domain required", formatted);
		return 501;
	}

	class = domain_classify(rcpt->domain);
	if (class == DOMAIN_REMOTE) {
		if (s->in_mynetworks || s->auth.user[0] != '\0')
			return 250;
		snprintf(reply, replysize, "554 5.7.1 <%s>: Relay access denied", formatted);
		return 554;
	}
	if (class == DOMAIN_LOCAL && ascii_casecmp(rcpt->local, "postmaster") == 0)
		return 250;

	recipient_lookup_keys(s, rcpt, class == DOMAIN_VIRTUAL ? rcpt->domain : NULL);
	return recipient_lookup_next(s, reply, replysize);
}
