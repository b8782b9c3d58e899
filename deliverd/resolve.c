/*
 * Recipient resolution in the unprivileged LMTP session: which
 * destinations an RCPT address stands for.
 *
 *   virtual_domains      aliases by full address, then the userdb by
 *                        full address (user+detail@domain, then
 *                        user@domain)
 *   local_domains,       aliases by local part, then the userdb by local
 *   myhostname, none     part (user+detail, then user): system users
 *   anything else        not local: rejected at RCPT, resubmitted to
 *                        queued when an alias points there
 *
 * Local parts are compared in lower case, as Postfix's local(8) does.
 * An alias that lists itself ("alice: alice, bob") means the user's own
 * mailbox. :include: files are read here, as smtpd_user, so they must be
 * readable by that user; they must also be owned by root (or by the user
 * deliverd runs as, when it was not started as root) and writable by
 * nobody else, because their commands run as default_privs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "addr.h"
#include "aliases.h"
#include "cdbmap.h"
#include "config.h"
#include "deliverd.h"
#include "domain.h"
#include "log.h"
#include "userdb.h"
#include "userdb_cache.h"
#include "util.h"

#define USERDB_TIMEOUT_MS 10000
#define INCLUDE_FILE_MAX (1024 * 1024)

struct resolver {
	struct userdb_client *userdb;
	struct userdb_cache *users;	/* results of userdb, for deliverd_userdb_cache_time */
	struct cdbmap *aliases;
	char *alias_map_path;
	int refuse_uid0;
	char delimiter;
	long long recursion_limit;
	long long expansion_limit;
};

/* The state of one expansion: the chain of aliases being expanded, to
 * spot an alias that lists itself. */
struct expansion {
	struct resolver *resolver;
	struct target_list *out;
	const char *chain[1000];
	size_t depth;
};

struct resolver *
resolver_new(int refuse_uid0)
{
	struct resolver *resolver = xcalloc(1, sizeof *resolver);
	const char *delimiter = config_string("recipient_delimiter");

	resolver->userdb = userdb_client_new(config_string("userdb_socket"));
	resolver->users = userdb_cache_new(config_time("deliverd_userdb_cache_time"));
	resolver->alias_map_path = xasprintf("%s.cdb", config_string("alias_database"));
	resolver->aliases = cdbmap_open(resolver->alias_map_path);
	if (resolver->aliases == NULL && errno != ENOENT)
		log_warn("cannot open alias map %s: %s", resolver->alias_map_path, strerror(errno));
	resolver->refuse_uid0 = refuse_uid0;
	resolver->delimiter = delimiter[0];
	resolver->recursion_limit = config_int("deliverd_recursion_limit");
	resolver->expansion_limit = config_int("deliverd_expansion_limit");
	return resolver;
}

void
resolver_free(struct resolver *resolver)
{
	if (resolver == NULL)
		return;
	userdb_client_free(resolver->userdb);
	userdb_cache_free(resolver->users);
	cdbmap_close(resolver->aliases);
	free(resolver->alias_map_path);
	free(resolver);
}

void
resolver_refresh(struct resolver *resolver)
{
	cdbmap_refresh(&resolver->aliases, resolver->alias_map_path);
}

void
target_list_free(struct target_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		free(list->items[i].address);
		free(list->items[i].user);
		free(list->items[i].detail);
		free(list->items[i].text);
	}
	free(list->items);
	memset(list, 0, sizeof *list);
}

/* Whether an equal destination is already in the list. */
static int
target_exists(const struct target_list *list, const struct target *target)
{
	for (size_t i = 0; i < list->count; i++) {
		const struct target *other = &list->items[i];

		if (other->kind != target->kind)
			continue;
		if (target->kind == TARGET_MAILBOX && strcmp(other->user, target->user) == 0 &&
		    strcmp(other->detail, target->detail) == 0)
			return 1;
		if (target->kind != TARGET_MAILBOX && strcmp(other->text, target->text) == 0 &&
		    strcmp(other->address, target->address) == 0)
			return 1;
	}
	return 0;
}

/* Append a destination (strings copied). Returns it, or NULL when an
 * equal one is already listed. */
static struct target *
target_add(struct expansion *expansion, enum target_kind kind, const char *address,
    const char *user, const char *detail, const char *text, int forward)
{
	struct target_list *list = expansion->out;
	struct target target = {
		.kind = kind,
		.address = (char *)address,
		.user = (char *)(user != NULL ? user : ""),
		.detail = (char *)(detail != NULL ? detail : ""),
		.text = (char *)(text != NULL ? text : ""),
		.forward = forward,
		.uid = (uid_t)-1,
		.gid = (gid_t)-1,
	};

	if (target_exists(list, &target))
		return NULL;
	if (list->count == list->capacity) {
		list->capacity = list->capacity ? list->capacity * 2 : 4;
		list->items = xrealloc(list->items, list->capacity * sizeof *list->items);
	}
	target.address = xstrdup(target.address);
	target.user = xstrdup(target.user);
	target.detail = xstrdup(target.detail);
	target.text = xstrdup(target.text);
	list->items[list->count] = target;
	return &list->items[list->count++];
}

static void
target_add_failure(struct expansion *expansion, const char *address,
    const struct delivery_result *failure)
{
	struct target *target = target_add(expansion, TARGET_FAILED, address, NULL, NULL,
	    failure->text, 0);

	if (target != NULL)
		target->failure = *failure;
}

/* Lower-cased "local@domain" (or "local@myhostname" for a bare local part). */
static char *
full_address(const char *local, const char *domain)
{
	char *address = xasprintf("%s@%s", local, domain[0] != '\0' ? domain : local_hostname());

	ascii_lower(address);
	return address;
}

static int
in_chain(const struct expansion *expansion, const char *address)
{
	for (size_t i = 0; i < expansion->depth; i++)
		if (strcmp(expansion->chain[i], address) == 0)
			return 1;
	return 0;
}

/*
 * Look KEY up in the alias map, and KEY without its detail when it has
 * one (user+detail -> user). Returns the value (new string) or NULL,
 * and the detail that was stripped in DETAIL.
 */
static char *
alias_lookup(struct resolver *resolver, const char *local, const char *domain, int with_domain,
    char *detail, size_t detailsize)
{
	char base[ADDR_MAX_LOCAL * 4 + 1];
	char *key, *value = NULL;

	detail[0] = '\0';
	if (resolver->aliases == NULL)
		return NULL;

	key = with_domain ? xasprintf("%s@%s", local, domain) : xstrdup(local);
	ascii_lower(key);
	if (cdbmap_lookup(resolver->aliases, key, &value) != 1)
		value = NULL;
	free(key);
	if (value != NULL || resolver->delimiter == '\0')
		return value;

	addr_split_detail(local, resolver->delimiter, base, sizeof base, detail, detailsize);
	if (detail[0] == '\0')
		return NULL;
	key = with_domain ? xasprintf("%s@%s", base, domain) : xstrdup(base);
	ascii_lower(key);
	if (cdbmap_lookup(resolver->aliases, key, &value) != 1)
		value = NULL;
	free(key);
	if (value == NULL)
		detail[0] = '\0';
	return value;
}

/*
 * Look the user up in authd's userdb: NAME first, then NAME without
 * its detail. Returns 1 (found, ENTRY and DETAIL filled), 0 (unknown) or
 * -1 (lookup failed, FAILURE filled).
 */
static int
user_lookup(struct resolver *resolver, const char *local, const char *domain, int with_domain,
    struct userdb_entry *entry, char *detail, size_t detailsize,
    struct delivery_result *failure)
{
	char base[ADDR_MAX_LOCAL * 4 + 1], err[256];
	char *name = with_domain ? xasprintf("%s@%s", local, domain) : xstrdup(local);
	int found;

	detail[0] = '\0';
	ascii_lower(name);
	found = userdb_cache_lookup(resolver->users, resolver->userdb, name, "lmtp",
	    USERDB_TIMEOUT_MS, entry, err, sizeof err);
	free(name);

	if (found == 0 && resolver->delimiter != '\0') {
		addr_split_detail(local, resolver->delimiter, base, sizeof base, detail, detailsize);
		if (detail[0] != '\0') {
			name = with_domain ? xasprintf("%s@%s", base, domain) : xstrdup(base);
			ascii_lower(name);
			found = userdb_cache_lookup(resolver->users, resolver->userdb, name, "lmtp",
			    USERDB_TIMEOUT_MS, entry, err, sizeof err);
			free(name);
		}
	}
	if (found < 0) {
		log_warn("userdb lookup for %s@%s failed: %s", local, domain, err);
		result_set(failure, EX_TEMPFAIL, "4.3.0", "user lookup failed, try again later");
	}
	if (found != 1)
		detail[0] = '\0';
	return found;
}

static void expand_address(struct expansion *expansion, const char *local, const char *domain,
    int allow_alias);

/* Read an :include: file, checking who may have written it. */
static char *
include_read(const char *path, struct delivery_result *failure)
{
	struct stat st;
	char *text;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		result_set(failure, EX_TEMPFAIL, "4.3.0", "cannot open :include: file %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > INCLUDE_FILE_MAX) {
		result_set(failure, EX_CONFIG, "5.3.5", ":include: file %s is not a regular file of at most 1 MB",
		    path);
		close(fd);
		return NULL;
	}
	if ((st.st_uid != 0 && st.st_uid != geteuid() && st.st_uid != getuid()) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH))) {
		result_set(failure, EX_CONFIG, "5.3.5",
		    ":include: file %s must be owned by root and writable only by its owner", path);
		close(fd);
		return NULL;
	}
	text = xmalloc((size_t)st.st_size + 1);
	n = read(fd, text, (size_t)st.st_size);
	close(fd);
	if (n < 0) {
		result_set(failure, EX_TEMPFAIL, "4.3.0", "cannot read :include: file %s: %s", path,
		    strerror(errno));
		free(text);
		return NULL;
	}
	text[n] = '\0';
	return text;
}

/* Split "local@domain" (the last '@'; no '@' means a bare local part). */
static void
split_address(const char *address, char *local, size_t localsize, char *domain,
    size_t domainsize)
{
	const char *at = strrchr(address, '@');

	if (at == NULL) {
		strlcpy_x(local, address, localsize);
		domain[0] = '\0';
		return;
	}
	strlcpy_x(local, address, localsize);
	if ((size_t)(at - address) < localsize)
		local[at - address] = '\0';
	strlcpy_x(domain, at + 1, domainsize);
	ascii_lower(domain);
}

static void expand_targets(struct expansion *expansion, const char *alias_address,
    const char *detail, const struct alias_target_list *targets);

static void
expand_include(struct expansion *expansion, const char *alias_address, const char *detail,
    const char *path)
{
	struct alias_target_list targets = { 0 };
	struct delivery_result failure;
	char err[256];
	char *text = include_read(path, &failure);

	if (text == NULL) {
		target_add_failure(expansion, alias_address, &failure);
		return;
	}
	if (aliases_split_include(text, &targets, err, sizeof err) < 0) {
		result_set(&failure, EX_CONFIG, "5.3.5", "invalid :include: file %s: %s", path, err);
		target_add_failure(expansion, alias_address, &failure);
	} else {
		expand_targets(expansion, alias_address, detail, &targets);
	}
	alias_target_list_free(&targets);
	free(text);
}

/* Expand the members of the alias ALIAS_ADDRESS, which was found with
 * its address extension DETAIL removed ("" if none). */
static void
expand_targets(struct expansion *expansion, const char *alias_address, const char *detail,
    const struct alias_target_list *targets)
{
	char local[ADDR_MAX_LOCAL * 4 + 1], domain[ADDR_MAX_DOMAIN + 1];

	for (size_t i = 0; i < targets->count; i++) {
		const struct alias_target *target = &targets->targets[i];

		if (expansion->out->count >= (size_t)expansion->resolver->expansion_limit) {
			struct delivery_result failure;

			result_set(&failure, EX_UNAVAILABLE, "5.4.6",
			    "alias %s expands to more than %lld destinations", alias_address,
			    expansion->resolver->expansion_limit);
			target_add_failure(expansion, alias_address, &failure);
			return;
		}

		switch (target->type) {
		case ALIAS_TARGET_ADDRESS:
			split_address(target->text, local, sizeof local, domain, sizeof domain);
			expand_address(expansion, local, domain, 1);
			break;
		case ALIAS_TARGET_LOCAL:
			expand_address(expansion, target->text, "", 0);
			break;
		case ALIAS_TARGET_COMMAND:
			target_add(expansion, TARGET_COMMAND, alias_address, NULL, detail, target->text, 0);
			break;
		case ALIAS_TARGET_FILE:
			target_add(expansion, TARGET_FILE, alias_address, NULL, detail, target->text, 0);
			break;
		case ALIAS_TARGET_INCLUDE:
			expand_include(expansion, alias_address, detail, target->text);
			break;
		}
	}
}

/* Expand the alias VALUE found for ADDRESS, one level deeper. */
static void
expand_alias(struct expansion *expansion, const char *address, const char *detail,
    const char *value)
{
	struct alias_target_list targets = { 0 };
	struct delivery_result failure;
	char err[256];

	if (expansion->depth >= (size_t)expansion->resolver->recursion_limit ||
	    expansion->depth >= sizeof expansion->chain / sizeof expansion->chain[0]) {
		result_set(&failure, EX_UNAVAILABLE, "5.4.6",
		    "alias expansion of %s is nested more than %lld levels deep", address,
		    expansion->resolver->recursion_limit);
		target_add_failure(expansion, address, &failure);
		return;
	}
	if (aliases_split(value, &targets, err, sizeof err) < 0) {
		result_set(&failure, EX_CONFIG, "5.3.5", "invalid alias %s: %s", address, err);
		target_add_failure(expansion, address, &failure);
		return;
	}

	expansion->chain[expansion->depth++] = address;
	expand_targets(expansion, address, detail, &targets);
	expansion->depth--;
	alias_target_list_free(&targets);
}

/* Find the user ADDRESS belongs to and add their mailbox; ~/.forward
 * is read for system users unless NO_FORWARD ("\user"). */
static void
expand_user(struct expansion *expansion, const char *address, const char *local,
    const char *domain, enum domain_class class, int no_forward)
{
	struct resolver *resolver = expansion->resolver;
	struct delivery_result failure;
	struct userdb_entry entry;
	struct target *target;
	char detail[ADDR_MAX_LOCAL * 4 + 1];
	int found = user_lookup(resolver, local, domain, class == DOMAIN_VIRTUAL, &entry, detail,
	    sizeof detail, &failure);

	if (found < 0) {
		target_add_failure(expansion, address, &failure);
		return;
	}
	if (found == 0) {
		result_set(&failure, EX_NOUSER, "5.1.1", "<%s>: user unknown", address);
		target_add_failure(expansion, address, &failure);
		return;
	}
	if (resolver->refuse_uid0 && entry.uid == 0) {
		result_set(&failure, EX_TEMPFAIL, "4.3.5",
		    "<%s>: mail for uid 0 is not delivered to a mailbox; add an alias for %s to the aliases file and run newaliases",
		    address, entry.user);
		target_add_failure(expansion, address, &failure);
		return;
	}
	target = target_add(expansion, TARGET_MAILBOX, address, entry.user, detail, NULL,
	    class == DOMAIN_LOCAL && !no_forward);
	if (target != NULL) {
		target->uid = entry.uid;
		target->gid = entry.gid;
	}
}

/*
 * Expand one address: aliases first, then the userdb. ALLOW_ALIAS 0
 * ("\user") skips the aliases and ~/.forward; an alias already being
 * expanded is skipped too.
 */
static void
expand_address(struct expansion *expansion, const char *local, const char *domain,
    int allow_alias)
{
	enum domain_class class = domain_classify(domain);
	char detail[ADDR_MAX_LOCAL * 4 + 1];
	char *address = full_address(local, domain);
	char *value = NULL;

	if (class == DOMAIN_REMOTE) {
		target_add(expansion, TARGET_REMOTE, address, NULL, NULL, address, 0);
		free(address);
		return;
	}

	if (allow_alias && !in_chain(expansion, address))
		value = alias_lookup(expansion->resolver, local, domain, class == DOMAIN_VIRTUAL,
		    detail, sizeof detail);
	if (value != NULL)
		expand_alias(expansion, address, detail, value);
	else
		expand_user(expansion, address, local, domain, class, !allow_alias);
	free(value);
	free(address);
}

/* The failure that speaks for the whole list: the first temporary one,
 * else the first permanent one. */
static void
worst_failure(const struct target_list *list, struct delivery_result *failure)
{
	result_set(failure, EX_UNAVAILABLE, "5.1.1", "no destination");
	for (size_t i = 0; i < list->count; i++) {
		if (list->items[i].kind != TARGET_FAILED)
			continue;
		*failure = list->items[i].failure;
		if (result_is_temporary(failure->status))
			return;
	}
	for (size_t i = 0; i < list->count; i++) {
		if (list->items[i].kind == TARGET_FAILED) {
			*failure = list->items[i].failure;
			return;
		}
	}
}

int
resolve_recipient(struct resolver *resolver, const struct mailaddr *rcpt,
    struct target_list *out, struct delivery_result *failure)
{
	struct expansion expansion = { .resolver = resolver, .out = out };
	char local[ADDR_MAX_LOCAL * 4 + 1];

	if (domain_classify(rcpt->domain) == DOMAIN_REMOTE) {
		result_set(failure, EX_NOUSER, "5.1.1", "<%s@%s>: domain %s is not delivered here",
		    rcpt->local, rcpt->domain, rcpt->domain);
		return 0;
	}

	strlcpy_x(local, rcpt->local, sizeof local);
	ascii_lower(local);
	expand_address(&expansion, local, rcpt->domain, 1);

	for (size_t i = 0; i < out->count; i++)
		if (out->items[i].kind != TARGET_FAILED)
			return 1;
	worst_failure(out, failure);
	return 0;
}
