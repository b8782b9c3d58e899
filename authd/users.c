/*
 * The lookup order: a name with '@' is a virtual user of the passwd-file,
 * compared in lower case. If it is missing there and its domain is a
 * local domain, the local part is tried as a system user. A bare name is
 * a system user with a uid between first_valid_uid and last_valid_uid.
 */
#include <errno.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authd.h"
#include "config.h"
#include "domain.h"
#include "log.h"
#include "util.h"

static int started_as_root;

/* The ids of virtual_mail_user, for entries that leave uid or gid empty. */
static uid_t vmail_uid;
static gid_t vmail_gid;
static char vmail_error[256];

static void
vmail_resolve(void)
{
	const char *user = config_string("virtual_mail_user");
	struct passwd *pw = getpwnam(user);

	vmail_error[0] = '\0';
	if (pw != NULL) {
		vmail_uid = pw->pw_uid;
		vmail_gid = pw->pw_gid;
		return;
	}
	if (!started_as_root) {
		/* Everything runs as the invoking user then, mailboxes included. */
		vmail_uid = getuid();
		vmail_gid = getgid();
		log_info("virtual_mail_user %s not found: virtual users without a uid get uid %u, gid %u of the running user",
		    user, (unsigned)vmail_uid, (unsigned)vmail_gid);
		return;
	}
	snprintf(vmail_error, sizeof vmail_error,
	    "virtual_mail_user %s not found (create it, or give the user a uid and gid in the passwd-file)",
	    user);
	log_error("%s", vmail_error);
}

void
users_init(int root)
{
	started_as_root = root;
	passwd_file_set_path(config_string("virtual_passwd_file"));
	users_reload();
}

void
users_reload(void)
{
	vmail_resolve();
	passwd_file_refresh(1);
}

void
user_record_clear(struct user_record *record)
{
	free(record->name);
	free(record->home);
	for (size_t i = 0; i < record->nfields; i++) {
		free(record->fields[i].name);
		free(record->fields[i].value);
	}
	free(record->fields);
	memset(record, 0, sizeof *record);
}

static void
record_add_field(struct user_record *record, const char *name, size_t namelen,
    const char *value)
{
	record->fields = xrealloc(record->fields, (record->nfields + 1) * sizeof *record->fields);
	record->fields[record->nfields].name = xstrndup(name, namelen);
	record->fields[record->nfields].value = xstrdup(value);
	record->nfields++;
}

static int
parse_number(const char *text, unsigned long *out)
{
	char *end;

	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	*out = strtoul(text, &end, 10);
	return errno == 0 && *end == '\0' ? 0 : -1;
}

/* TEXT is a number or a user name, as Dovecot allows; "" is virtual_mail_user. */
static int
resolve_uid(const char *text, uid_t *uid, char *reason, size_t reasonsize)
{
	unsigned long number;
	struct passwd *pw;

	if (*text == '\0') {
		if (vmail_error[0] != '\0') {
			snprintf(reason, reasonsize, "%s", vmail_error);
			return -1;
		}
		*uid = vmail_uid;
		return 0;
	}
	if (parse_number(text, &number) == 0 && number != 0 && number < (uid_t)-1) {
		*uid = (uid_t)number;
		return 0;
	}
	pw = parse_number(text, &number) == 0 ? NULL : getpwnam(text);
	if (pw == NULL || pw->pw_uid == 0) {
		snprintf(reason, reasonsize, "invalid uid \"%.64s\"", text);
		return -1;
	}
	*uid = pw->pw_uid;
	return 0;
}

static int
resolve_gid(const char *text, gid_t *gid, char *reason, size_t reasonsize)
{
	unsigned long number;
	struct group *gr;

	if (*text == '\0') {
		if (vmail_error[0] != '\0') {
			snprintf(reason, reasonsize, "%s", vmail_error);
			return -1;
		}
		*gid = vmail_gid;
		return 0;
	}
	if (parse_number(text, &number) == 0 && number != 0 && number < (gid_t)-1) {
		*gid = (gid_t)number;
		return 0;
	}
	gr = parse_number(text, &number) == 0 ? NULL : getgrnam(text);
	if (gr == NULL || gr->gr_gid == 0) {
		snprintf(reason, reasonsize, "invalid gid \"%.64s\"", text);
		return -1;
	}
	*gid = gr->gr_gid;
	return 0;
}

/*
 * Turn a passwd-file entry into a record. userdb_KEY=VALUE extra fields
 * become fields KEY=VALUE; userdb_uid, userdb_gid and userdb_home
 * override the columns, as in Dovecot.
 */
static enum lookup_result
record_from_entry(const struct passwd_entry *entry, struct user_record *out, char *reason,
    size_t reasonsize)
{
	const char *uid_text = entry->uid, *gid_text = entry->gid, *home = entry->home;
	char detail[300];

	memset(out, 0, sizeof *out);
	out->name = xstrdup(entry->name);

	for (char **item = entry->extra; *item != NULL; item++) {
		const char *key = *item, *eq;

		if (strncmp(key, "userdb_", 7) != 0)
			continue;	/* a passdb field */
		key += 7;
		eq = strchr(key, '=');
		if (strncmp(key, "uid=", 4) == 0)
			uid_text = key + 4;
		else if (strncmp(key, "gid=", 4) == 0)
			gid_text = key + 4;
		else if (strncmp(key, "home=", 5) == 0)
			home = key + 5;
		else if (eq != NULL)
			record_add_field(out, key, (size_t)(eq - key), eq + 1);
		else
			record_add_field(out, key, strlen(key), "");
	}

	if (resolve_uid(uid_text, &out->uid, detail, sizeof detail) < 0 ||
	    resolve_gid(gid_text, &out->gid, detail, sizeof detail) < 0) {
		snprintf(reason, reasonsize, "%s:%d: %s", config_string("virtual_passwd_file"),
		    entry->line, detail);
		user_record_clear(out);
		return LOOKUP_TEMPFAIL;
	}
	if (*home != '\0')
		out->home = xstrdup(home);
	return LOOKUP_FOUND;
}

static enum lookup_result
system_lookup(const char *name, struct user_record *out, char *reason, size_t reasonsize)
{
	long long first = config_int("first_valid_uid"), last = config_int("last_valid_uid");
	struct passwd pwbuf, *pw = NULL;
	char buf[4096];
	int error;

	error = getpwnam_r(name, &pwbuf, buf, sizeof buf, &pw);
	if (pw == NULL) {
		/* getpwnam_r(3) lists these as "name not found", not as errors. */
		if (error == 0 || error == ENOENT || error == ESRCH || error == EBADF ||
		    error == EPERM)
			return LOOKUP_NOT_FOUND;
		snprintf(reason, reasonsize, "system user lookup failed: %s", strerror(error));
		return LOOKUP_TEMPFAIL;
	}
	if (pw->pw_uid == 0 || pw->pw_uid < first || (last > 0 && pw->pw_uid > last))
		return LOOKUP_NOT_FOUND;

	memset(out, 0, sizeof *out);
	out->name = xstrdup(pw->pw_name);
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	out->home = xstrdup(pw->pw_dir);
	return LOOKUP_FOUND;
}

/* Whether DOMAIN names this host's system users. An empty one ("user@") does not. */
static int
is_local_domain(const char *domain)
{
	return domain[0] != '\0' && domain_classify(domain) == DOMAIN_LOCAL;
}

static enum lookup_result
virtual_lookup(const char *name, struct user_record *out, char *reason, size_t reasonsize)
{
	const struct passwd_entry *entry;
	char *lower = xstrdup(name);
	char *at = strrchr(lower, '@');
	enum lookup_result result;

	ascii_lower(lower);
	if (passwd_file_refresh(0) < 0 && passwd_file_find(lower) == NULL) {
		/* Without the file a "not found" could bounce real users. */
		snprintf(reason, reasonsize, "%s", passwd_file_error());
		free(lower);
		return LOOKUP_TEMPFAIL;
	}

	entry = passwd_file_find(lower);
	if (entry != NULL)
		result = record_from_entry(entry, out, reason, reasonsize);
	else if (at != NULL && at > lower && is_local_domain(at + 1)) {
		*at = '\0';
		result = system_lookup(lower, out, reason, reasonsize);
	} else {
		result = LOOKUP_NOT_FOUND;
	}
	free(lower);
	return result;
}

enum lookup_result
users_lookup(const char *name, struct user_record *out, char *reason, size_t reasonsize)
{
	if (*name == '\0')
		return LOOKUP_NOT_FOUND;
	if (strchr(name, '@') != NULL)
		return virtual_lookup(name, out, reason, reasonsize);
	return system_lookup(name, out, reason, reasonsize);
}

int
users_list(const char *mask, void (*emit)(const char *name, void *arg), void *arg)
{
	long long first = config_int("first_valid_uid"), last = config_int("last_valid_uid");
	const struct passwd_entry *const *users;
	struct passwd *pw;
	size_t count;

	if (passwd_file_refresh(0) < 0)
		return -1;
	users = passwd_file_users(&count);
	for (size_t i = 0; i < count; i++)
		if (mask == NULL || fnmatch(mask, users[i]->name, 0) == 0)
			emit(users[i]->name, arg);

	setpwent();
	while ((pw = getpwent()) != NULL) {
		if (pw->pw_uid == 0 || pw->pw_uid < first || (last > 0 && pw->pw_uid > last))
			continue;
		if (mask == NULL || fnmatch(mask, pw->pw_name, 0) == 0)
			emit(pw->pw_name, arg);
	}
	endpwent();
	return 0;
}
