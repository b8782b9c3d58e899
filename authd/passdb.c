/*
 * The passdb order of the passdb parameter, tried as Dovecot tries its
 * passdbs: a passdb without an entry for the user passes it on to the
 * next one, and the first one that has the user decides.
 *
 *   passwd-file   users of virtual_passwd_file (names with '@')
 *   pam           system users in the uid range of first_valid_uid and
 *                 last_valid_uid (a bare name, or NAME@local-domain),
 *                 checked by the root pam worker (pam_worker.c)
 *
 * When no passdb has the user and one of them could not be read, the
 * result is a temporary failure, so that a broken file never reads as
 * "unknown user".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "authd.h"
#include "config.h"
#include "domain.h"
#include "ipc.h"
#include "log.h"
#include "util.h"

struct passdb_request {
	struct passdb_request *next;
	unsigned long id;
	size_t next_passdb;	/* index in config_list("passdb") */
	const char *tempfail;	/* why a passdb could not be searched for the user, or NULL */
	char *user;
	char *password;
	char *service;
	char *rip;
	passdb_callback callback;
	void *arg;		/* NULL once the caller cancelled */
};

static struct ipc_conn *pam_conn;
static int pam_worker_gone;
static struct passdb_request *pending;	/* waiting for the pam worker */
static unsigned long next_request_id;

static void passdb_continue(struct passdb_request *request);

static void
request_free(struct passdb_request *request)
{
	free(request->user);
	explicit_bzero(request->password, strlen(request->password));
	free(request->password);
	free(request->service);
	free(request->rip);
	free(request);
}

static void
finish(struct passdb_request *request, enum passdb_status status, const char *user,
    const char *detail)
{
	struct passdb_result result = { status, user, detail };

	if (request->arg != NULL)
		request->callback(request->arg, &result);
	request_free(request);
}

static struct passdb_request *
pending_take(unsigned long id)
{
	for (struct passdb_request **link = &pending; *link != NULL; link = &(*link)->next) {
		struct passdb_request *request = *link;

		if (request->id == id) {
			*link = request->next;
			return request;
		}
	}
	return NULL;
}

/* A reply from the pam worker, or NULL when it exited. */
static void
pam_reply(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct passdb_request *request;
	const char *status, *user;

	if (msg == NULL) {
		log_error("pam worker exited: system users cannot log in until authd restarts");
		ipc_conn_free(conn);
		pam_conn = NULL;
		pam_worker_gone = 1;
		while ((request = pending) != NULL) {
			pending = request->next;
			finish(request, PASSDB_TEMPFAIL, request->user, "the pam worker exited");
		}
		return;
	}

	request = pending_take((unsigned long)ipc_msg_get_int(msg, "id", 0));
	if (request == NULL) {
		log_error("pam worker: result for an unknown request");
		ipc_msg_free(msg);
		return;
	}
	status = ipc_msg_get(msg, "status");
	user = ipc_msg_get(msg, "user");
	if (status != NULL && strcmp(status, "ok") == 0)
		finish(request, PASSDB_OK, user != NULL ? user : request->user, "pam");
	else if (status != NULL && strcmp(status, "fail") == 0)
		finish(request, PASSDB_MISMATCH, request->user, "PAM authentication failed");
	else
		finish(request, PASSDB_TEMPFAIL, request->user, "PAM failed temporarily");
	ipc_msg_free(msg);
}

void
passdb_init(struct event_base *base, int pam_fd)
{
	if (pam_fd >= 0)
		pam_conn = ipc_conn_new(base, pam_fd, pam_reply, NULL);
}

int
passdb_uses(const char *name)
{
	for (char *const *item = config_list("passdb"); *item != NULL; item++)
		if (strcmp(*item, name) == 0)
			return 1;
	return 0;
}

/* 1 when the passwd-file decided (REQUEST is finished then), 0 to go on. */
static int
try_passwd_file(struct passdb_request *request)
{
	const struct passwd_entry *entry;
	char *lower = xstrdup(request->user);
	int refresh_failed, match;

	ascii_lower(lower);
	if (strchr(lower, '@') == NULL) {
		free(lower);
		return 0;
	}
	refresh_failed = passwd_file_refresh(0) < 0;
	entry = passwd_file_find(lower);
	free(lower);
	if (entry == NULL) {
		if (refresh_failed)
			request->tempfail = "the passwd-file cannot be read";
		return 0;
	}

	match = password_check(entry->password, request->password);
	if (match < 0)
		log_error("%s:%d: the password of %s has an unsupported scheme or format",
		    config_string("virtual_passwd_file"), entry->line, entry->name);
	if (match == 1)
		finish(request, PASSDB_OK, entry->name, "passwd-file");
	else
		finish(request, PASSDB_MISMATCH, entry->name, match < 0 ?
		    "unsupported password scheme" : "password mismatch");
	return 1;
}

/*
 * Look up USER as the system user that the pam passdb checks: NAME, or
 * NAME@local-domain as in the userdb. Only users the userdb returns may
 * log in, never root or system accounts. Logs a failed lookup.
 */
static enum lookup_result
lookup_pam_user(const char *user, struct user_record *record)
{
	char reason[256], *name = xstrdup(user), *at = strrchr(name, '@');
	enum lookup_result found;

	if (at != NULL) {
		*at = '\0';
		if (at == name || at[1] == '\0' || domain_classify(at + 1) != DOMAIN_LOCAL ||
		    strchr(name, '@') != NULL) {
			free(name);
			return LOOKUP_NOT_FOUND;
		}
	}

	found = users_lookup(name, record, reason, sizeof reason);
	free(name);
	if (found == LOOKUP_TEMPFAIL)
		log_warn("passdb pam: user lookup failed: %s", reason);
	return found;
}

/* 1 when the request went to the pam worker or was finished, 0 to go on. */
static int
try_pam(struct passdb_request *request)
{
	struct user_record record;
	struct ipc_msg *msg;
	enum lookup_result found = lookup_pam_user(request->user, &record);

	if (found == LOOKUP_TEMPFAIL)
		request->tempfail = "the system user lookup failed";
	if (found != LOOKUP_FOUND)
		return 0;
	free(request->user);
	request->user = xstrdup(record.name);
	user_record_clear(&record);

	if (pam_conn == NULL) {
		finish(request, PASSDB_TEMPFAIL, request->user, pam_worker_gone ?
		    "the pam worker exited" : "the pam worker is not running");
		return 1;
	}
	msg = ipc_msg_new("pam");
	ipc_msg_addf(msg, "id", "%lu", request->id);
	ipc_msg_add(msg, "service", config_string("pam_service"));
	ipc_msg_add(msg, "rip", request->rip);
	if (ipc_msg_add(msg, "user", request->user) < 0 ||
	    ipc_msg_add(msg, "password", request->password) < 0) {
		/* A frame value cannot carry CR or LF, so such a password cannot be checked. */
		ipc_msg_free(msg);
		finish(request, PASSDB_MISMATCH, request->user, "password contains CR or LF");
		return 1;
	}
	ipc_conn_send(pam_conn, msg, -1);
	explicit_bzero(msg->fields[msg->nfields - 1].value, strlen(request->password));
	ipc_msg_free(msg);
	request->next = pending;
	pending = request;
	return 1;
}

static void
passdb_continue(struct passdb_request *request)
{
	char *const *list = config_list("passdb");

	while (list[request->next_passdb] != NULL) {
		const char *name = list[request->next_passdb++];

		if (strcmp(name, "passwd-file") == 0 && try_passwd_file(request))
			return;
		if (strcmp(name, "pam") == 0 && try_pam(request))
			return;
	}
	if (request->tempfail != NULL)
		finish(request, PASSDB_TEMPFAIL, request->user, request->tempfail);
	else
		finish(request, PASSDB_UNKNOWN, request->user, "unknown user");
}

/* Whether USER is a system user that the pam passdb would check. */
static int
is_pam_user(const char *user, int *tempfail)
{
	struct user_record record;
	enum lookup_result found = lookup_pam_user(user, &record);

	if (found == LOOKUP_TEMPFAIL)
		*tempfail = 1;
	if (found != LOOKUP_FOUND)
		return 0;
	user_record_clear(&record);
	return 1;
}

enum credentials_status
passdb_lookup_credentials(const char *user, char **stored, char **canonical)
{
	int tempfail = 0;

	for (char *const *item = config_list("passdb"); *item != NULL; item++) {
		if (strcmp(*item, "passwd-file") == 0 && strchr(user, '@') != NULL) {
			char *lower = xstrdup(user);
			const struct passwd_entry *entry;

			ascii_lower(lower);
			if (passwd_file_refresh(0) < 0)
				tempfail = 1;
			entry = passwd_file_find(lower);
			free(lower);
			if (entry != NULL) {
				*stored = xstrdup(entry->password);
				*canonical = xstrdup(entry->name);
				return CREDENTIALS_FOUND;
			}
		}
		/* PAM checks a password and never returns a stored one. */
		if (strcmp(*item, "pam") == 0 && is_pam_user(user, &tempfail))
			return CREDENTIALS_UNAVAILABLE;
	}
	return tempfail ? CREDENTIALS_TEMPFAIL : CREDENTIALS_UNKNOWN;
}

void
passdb_verify(const char *user, const char *password, const char *service, const char *rip,
    passdb_callback callback, void *arg)
{
	struct passdb_request *request = xcalloc(1, sizeof *request);

	request->id = ++next_request_id;
	request->user = xstrdup(user);
	request->password = xstrdup(password);
	request->service = xstrdup(service);
	request->rip = xstrdup(rip);
	request->callback = callback;
	request->arg = arg;
	passdb_continue(request);
}

void
passdb_cancel(void *arg)
{
	for (struct passdb_request *request = pending; request != NULL; request = request->next)
		if (request->arg == arg)
			request->arg = NULL;
}

void
passdb_close(void)
{
	struct passdb_request *request;

	while ((request = pending) != NULL) {
		pending = request->next;
		request->arg = NULL;
		request_free(request);
	}
	if (pam_conn != NULL)
		ipc_conn_free(pam_conn);
	pam_conn = NULL;
}
