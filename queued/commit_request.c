/* COMMIT request to envelope (see commit_request.h). */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "commit_request.h"
#include "dsn_orcpt.h"
#include "envelope.h"
#include "ipc.h"
#include "log.h"
#include "queued.h"
#include "util.h"

/* Recipients one message may have. */
#define COMMIT_RCPT_MAX 10000

/* COMMIT fields copied into the envelope as message attributes, in
 * this order. Those marked smtpd describe an SMTP client or the local
 * user, and only root and smtpd's uid may set them. */
static const struct {
	const char *name;
	int smtpd;
} commit_attrs[] = {
	{ "client_addr", 1 }, { "client_name", 1 }, { "helo", 1 }, { "protocol", 1 },
	{ "body", 0 }, { "smtputf8", 0 }, { "submitter", 1 }, { "sasl_user", 1 },
};

int
commit_request_trusted(uid_t uid)
{
	return uid == 0 || uid == queued_settings.smtpd_uid;
}

static int
has_control_chars(const char *text)
{
	for (; *text != '\0'; text++)
		if ((unsigned char)*text < 0x20 || *text == 0x7f)
			return 1;
	return 0;
}

/* Check that no field of REQUEST has a control character. Returns 0,
 * or -1 with the reason in WHY. */
static int
check_control_chars(const struct ipc_msg *request, char *why, size_t whysize)
{
	for (size_t i = 0; i < request->nfields; i++) {
		const struct ipc_field *field = &request->fields[i];

		if (has_control_chars(field->key)) {
			snprintf(why, whysize, "invalid field name: control character");
			return -1;
		}
		if (has_control_chars(field->value)) {
			snprintf(why, whysize, "invalid %s: control character", field->key);
			return -1;
		}
	}
	return 0;
}

/*
 * Log the SMTP client attributes, and a submitter other than the user's
 * own NAME, that an ordinary user sent. sendmail -bs sends helo and
 * protocol, so those two are dropped without a warning.
 */
static void
warn_ignored_attrs(const struct envelope *env, const struct ipc_msg *request, uid_t uid,
    const char *name)
{
	static const char *const suspicious[] = { "client_addr", "client_name", "sasl_user",
		"quarantine", "forward" };
	const char *submitter = ipc_msg_get(request, "submitter");
	char ignored[128] = "";
	size_t len = 0;

	for (size_t i = 0; i < sizeof suspicious / sizeof suspicious[0]; i++)
		if (ipc_msg_get(request, suspicious[i]) != NULL)
			len += (size_t)snprintf(ignored + len, sizeof ignored - len, "%s%s",
			    len > 0 ? ", " : "", suspicious[i]);
	if (submitter != NULL && strcmp(submitter, name) != 0)
		snprintf(ignored + len, sizeof ignored - len, "%ssubmitter", len > 0 ? ", " : "");
	if (ignored[0] != '\0')
		log_warn("%s: %s from uid %u ignored: only smtpd may set them", env->id, ignored,
		    (unsigned)uid);
}

/*
 * Copy the attributes of REQUEST into ENV. An ordinary user's message is
 * recorded as protocol LOCAL with the user's own name as submitter, and
 * its SMTP client attributes are dropped.
 */
static void
set_attrs(struct envelope *env, const struct ipc_msg *request, uid_t uid)
{
	int trusted = commit_request_trusted(uid);
	const struct passwd *pw;
	char name[32];

	for (size_t i = 0; i < sizeof commit_attrs / sizeof commit_attrs[0]; i++) {
		const char *value = ipc_msg_get(request, commit_attrs[i].name);

		if (value != NULL && (trusted || !commit_attrs[i].smtpd))
			envelope_set_attr(env, commit_attrs[i].name, value);
	}
	if (trusted)
		return;

	pw = getpwuid(uid);
	snprintf(name, sizeof name, "%u", (unsigned)uid);
	if (pw != NULL)
		strlcpy_x(name, pw->pw_name, sizeof name);
	warn_ignored_attrs(env, request, uid, name);
	envelope_set_attr(env, "protocol", "LOCAL");
	envelope_set_attr(env, "submitter", name);
}

/*
 * Record the flag NAME=1, which only root and smtpd's uid may set:
 * filterd's quarantine verdict (quarantine=1, from smtpd) or deliverd's
 * forward of ~/.forward mail (forward=1). Any other value fails the
 * commit. From an ordinary user it is ignored (warn_ignored_attrs logs
 * it). Returns 0, or -1 with the reason in WHY.
 */
static int
set_trusted_flag(struct envelope *env, const struct ipc_msg *request, uid_t uid,
    const char *name, char *why, size_t whysize)
{
	const char *value = ipc_msg_get(request, name);

	if (value == NULL)
		return 0;
	if (strcmp(value, "1") != 0) {
		snprintf(why, whysize, "invalid %s: expected 1", name);
		return -1;
	}
	if (commit_request_trusted(uid))
		envelope_set_attr(env, name, "1");
	return 0;
}

/* Whether ADDRESS is a mailbox in RFC 5321 syntax, as addr_format()
 * writes it. The LMTP client puts it between angle brackets, so
 * anything else could add parameters to MAIL FROM or RCPT TO. */
static int
address_valid(const char *address)
{
	struct mailaddr parsed;
	const char *why;

	return addr_parse_plain(address, ADDR_ALLOW_UTF8, &parsed, &why) == 0;
}

/* Add the recipients in field order, so that each orcpt follows its rcpt.
 * Returns 0, or -1 with the invalid field in WHY. */
static int
add_rcpts(struct envelope *env, const struct ipc_msg *request, char *why, size_t whysize)
{
	for (size_t i = 0; i < request->nfields; i++) {
		const struct ipc_field *field = &request->fields[i];

		if (strcmp(field->key, "rcpt") == 0) {
			if (!address_valid(field->value)) {
				snprintf(why, whysize, "invalid recipient");
				return -1;
			}
			envelope_add_rcpt(env, field->value);
		} else if (strcmp(field->key, "orcpt") == 0 && env->nrcpts > 0) {
			if (!dsn_orcpt_valid(field->value)) {
				snprintf(why, whysize, "invalid orcpt: expected addr-type;address");
				return -1;
			}
			free(env->rcpts[env->nrcpts - 1].orcpt);
			env->rcpts[env->nrcpts - 1].orcpt = xstrdup(field->value);
		}
	}
	return 0;
}

struct envelope *
commit_request_envelope(const struct ipc_msg *request, const char *id, uid_t uid,
    char *why, size_t whysize)
{
	const char *sender = ipc_msg_get(request, "sender");
	size_t nrcpts = ipc_msg_count(request, "rcpt");
	struct envelope *env;

	if (check_control_chars(request, why, whysize) < 0)
		return NULL;
	if (sender == NULL) {
		snprintf(why, whysize, "sender missing");
		return NULL;
	}
	if (sender[0] != '\0' && !address_valid(sender)) {
		snprintf(why, whysize, "invalid sender");
		return NULL;
	}
	if (nrcpts == 0 || nrcpts > COMMIT_RCPT_MAX) {
		snprintf(why, whysize, "%s", nrcpts == 0 ? "no recipients" : "too many recipients");
		return NULL;
	}

	env = envelope_new(id, sender);
	env->arrival_usec = now_usec();
	env->size = ipc_msg_get_int(request, "size", -1);
	if (add_rcpts(env, request, why, whysize) < 0) {
		envelope_free(env);
		return NULL;
	}

	set_attrs(env, request, uid);
	if (set_trusted_flag(env, request, uid, "quarantine", why, whysize) < 0 ||
	    set_trusted_flag(env, request, uid, "forward", why, whysize) < 0) {
		envelope_free(env);
		return NULL;
	}
	return env;
}
