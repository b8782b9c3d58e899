/*
 * The MTA-STS cache: one struct sts_domain per recipient domain looked
 * up, with the policy in force, its id and the callers waiting for a
 * lookup in progress.
 *
 * Cache file queue_directory/mta-sts/DOMAIN: "id=ID" and "fetched=EPOCH"
 * lines, an empty line, then the policy text as fetched. It is written
 * to a temporary name and renamed, so a crash leaves the old file or the
 * new one.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mta_sts_cache.h"
#include "mta_sts_fetch.h"
#include "queued.h"
#include "resolver.h"
#include "util.h"

#define RR_A	1
#define RR_TXT	16
#define RR_AAAA	28

#define CACHE_DIRECTORY	"mta-sts"

/* Number of domains kept before those without a policy are forgotten. It is
 * Estafeta's own limit on the memory that lookups of many domains take. */
#define DOMAINS_MAX	10000

/* Maximum number of addresses of mta-sts.DOMAIN tried by one fetch. */
#define ADDRESSES_MAX	8

struct waiter {
	mta_sts_lookup_cb *cb;
	void *arg;
	struct waiter *next;
};

struct sts_domain {
	char *name;
	char id[MTA_STS_ID_SIZE];
	struct mta_sts_policy policy;
	int have_policy;
	time_t fetched;		/* when POLICY was fetched */
	time_t checked;		/* when the TXT record was last looked up, 0 never */

	/* A lookup in progress. */
	int busy;
	struct waiter *waiters;
	char new_id[MTA_STS_ID_SIZE];
	char *addresses[ADDRESSES_MAX + 1];
	size_t address_count;
	int address_queries;	/* A and AAAA queries not yet answered */

	struct sts_domain *next;
};

static struct sts_domain *domains;
static size_t domain_count;
static int cache_fd = -1;

/* A domain name that is safe as a file name and in a URL: LDH labels. */
static int
valid_domain(const char *name)
{
	size_t length = strlen(name);

	if (length == 0 || length > 253 || name[0] == '.' || name[0] == '-' ||
	    name[length - 1] == '.' || strstr(name, "..") != NULL)
		return 0;
	return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-.") == length;
}

/* Forget the domains that no lookup is using and that have no policy. */
static void
domains_prune(void)
{
	struct sts_domain **link = &domains;

	while (*link != NULL) {
		struct sts_domain *d = *link;

		if (d->busy || d->have_policy) {
			link = &d->next;
			continue;
		}
		*link = d->next;
		free(d->name);
		free(d);
		domain_count--;
	}
}

static struct sts_domain *
domain_find(const char *name, int create)
{
	struct sts_domain *d;

	for (d = domains; d != NULL; d = d->next) {
		if (strcmp(d->name, name) == 0)
			return d;
	}
	if (!create)
		return NULL;
	if (domain_count >= DOMAINS_MAX)
		domains_prune();
	d = xcalloc(1, sizeof *d);
	d->name = xstrdup(name);
	d->next = domains;
	domains = d;
	domain_count++;
	return d;
}

/* Return the policy in force for D now, or NULL. */
static const struct mta_sts_policy *
policy_in_force(const struct sts_domain *d)
{
	if (!d->have_policy || d->policy.mode == MTA_STS_MODE_NONE)
		return NULL;
	if (time(NULL) >= d->fetched + d->policy.max_age)
		return NULL;
	return &d->policy;
}

static void
answer_waiters(struct sts_domain *d)
{
	struct waiter *w = d->waiters;
	const struct mta_sts_policy *policy = policy_in_force(d);

	d->waiters = NULL;
	d->busy = 0;
	while (w != NULL) {
		struct waiter *next = w->next;

		w->cb(w->arg, policy, d->id);
		free(w);
		w = next;
	}
}

static void
cache_write(const struct sts_domain *d, const char *text, size_t length)
{
	char temporary[300];
	FILE *fp;
	int fd;

	if (cache_fd < 0)
		return;
	snprintf(temporary, sizeof temporary, ".%s.tmp", d->name);
	fd = openat(cache_fd, temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fp = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (fp == NULL) {
		log_warn("MTA-STS: cannot write the cache file of %s: %s", d->name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	fprintf(fp, "id=%s\nfetched=%lld\n\n", d->id, (long long)d->fetched);
	fwrite(text, 1, length, fp);
	if (fflush(fp) != 0 || fsync(fileno(fp)) < 0 || fclose(fp) != 0 ||
	    renameat(cache_fd, temporary, cache_fd, d->name) < 0) {
		log_warn("MTA-STS: cannot write the cache file of %s: %s", d->name, strerror(errno));
		unlinkat(cache_fd, temporary, 0);
	}
}

/* Parse TEXT and make it D's policy under D->new_id. Returns 0, or -1 with
 * ERR set. */
static int
policy_set(struct sts_domain *d, const char *text, size_t length, time_t fetched, char *err,
    size_t errsize)
{
	struct mta_sts_policy policy;

	if (mta_sts_policy_parse(text, length, &policy, err, errsize) < 0)
		return -1;
	mta_sts_policy_free(&d->policy);
	d->policy = policy;
	d->have_policy = 1;
	d->fetched = fetched;
	memcpy(d->id, d->new_id, sizeof d->id);
	return 0;
}

/* Store a fetched policy TEXT for D under D->new_id, in memory and on disk. */
static void
policy_store(struct sts_domain *d, const char *text, size_t length)
{
	char err[256];

	if (policy_set(d, text, length, time(NULL), err, sizeof err) < 0) {
		log_warn("MTA-STS: invalid policy for %s (id=%s): %s%s", d->name, d->new_id, err,
		    policy_in_force(d) != NULL ? "; the cached policy stays in force" : "");
		return;
	}
	log_info("MTA-STS: policy for %s: id=%s mode=%s max_age=%ld mx_patterns=%zu", d->name,
	    d->id, mta_sts_mode_name(d->policy.mode), d->policy.max_age, d->policy.mx_count);
	cache_write(d, text, length);
}

static void
fetch_cb(void *arg, const char *body, size_t length, const char *error)
{
	struct sts_domain *d = arg;

	if (error != NULL)
		log_warn("MTA-STS: policy fetch from mta-sts.%s failed: %s%s", d->name, error,
		    policy_in_force(d) != NULL ? "; the cached policy stays in force" : "");
	else
		policy_store(d, body, length);
	answer_waiters(d);
}

static void
addresses_free(struct sts_domain *d)
{
	for (size_t i = 0; i < d->address_count; i++)
		free(d->addresses[i]);
	d->address_count = 0;
	d->addresses[0] = NULL;
}

/* Start the fetch once both address queries (A and AAAA) have completed. */
static void
fetch_when_ready(struct sts_domain *d)
{
	if (--d->address_queries > 0)
		return;
	if (d->address_count == 0) {
		log_warn("MTA-STS: mta-sts.%s has no address, so its policy cannot be fetched", d->name);
		answer_waiters(d);
		return;
	}
	d->addresses[d->address_count] = NULL;
	if (mta_sts_fetch_start(d->name, (const char *const *)d->addresses, fetch_cb, d) < 0)
		answer_waiters(d);
	addresses_free(d);
}

static void
address_cb(void *arg, int err, struct ub_result *result)
{
	struct sts_domain *d = arg;

	for (int i = 0; err == 0 && result->havedata && result->data[i] != NULL; i++) {
		char text[64];
		int family = result->qtype == RR_A ? AF_INET : AF_INET6;
		size_t expected = family == AF_INET ? 4 : 16;

		if ((size_t)result->len[i] != expected || d->address_count >= ADDRESSES_MAX)
			continue;
		if (inet_ntop(family, result->data[i], text, sizeof text) != NULL)
			d->addresses[d->address_count++] = xstrdup(text);
	}
	if (result != NULL)
		ub_resolve_free(result);
	fetch_when_ready(d);
}

static void
fetch_start(struct sts_domain *d)
{
	char name[300];
	static const int types[] = { RR_A, RR_AAAA };

	snprintf(name, sizeof name, "mta-sts.%s", d->name);
	d->address_queries = 2;
	for (size_t i = 0; i < 2; i++) {
		if (resolver_resolve(name, types[i], address_cb, d) < 0)
			fetch_when_ready(d);
	}
}

/*
 * Find the id of the one STSv1 record in RESULT. Returns 1 with ID set,
 * 0 when there is none, more than one, or one that is invalid, and -1
 * when the lookup failed. Section 3.1 of RFC 8461 counts every record
 * that starts with "v=STSv1", valid or not, and means no policy unless
 * that count is one and the record is valid.
 */
static int
txt_record_id(struct sts_domain *d, int err, struct ub_result *result, char id[MTA_STS_ID_SIZE])
{
	int found = 0, invalid = 0;

	if (err != 0 || result == NULL) {
		log_warn("MTA-STS: TXT lookup of _mta-sts.%s failed: %s", d->name,
		    err != 0 ? resolver_strerror(err) : "no result");
		return -1;
	}
	if (result->rcode != 0 && !result->nxdomain) {
		log_warn("MTA-STS: TXT lookup of _mta-sts.%s failed: rcode %d", d->name, result->rcode);
		return -1;
	}
	for (int i = 0; result->havedata && result->data[i] != NULL; i++) {
		char text[1024], record_id[MTA_STS_ID_SIZE], reason[200];
		const unsigned char *p = (const unsigned char *)result->data[i];
		const unsigned char *end = p + result->len[i];
		size_t length = 0;
		int rc;

		/* The record's strings, concatenated (section 3.1). */
		while (p < end && p + 1 + *p <= end && length + *p < sizeof text) {
			memcpy(text + length, p + 1, *p);
			length += *p;
			p += 1 + *p;
		}
		rc = mta_sts_txt_parse(text, length, record_id, reason, sizeof reason);
		if (rc == 0)
			continue;

		found++;
		if (rc < 0) {
			log_warn("MTA-STS: invalid TXT record at _mta-sts.%s: %s, so it is ignored",
			    d->name, reason);
			invalid = 1;
		} else if (found == 1) {
			/* record_id is set only when rc > 0. */
			memcpy(id, record_id, MTA_STS_ID_SIZE);
		}
	}
	if (found > 1)
		log_warn("MTA-STS: _mta-sts.%s has %d STSv1 records, so none is used", d->name, found);
	if (found != 1 || invalid) {
		id[0] = '\0';
		return 0;
	}
	return 1;
}

static void
txt_cb(void *arg, int err, struct ub_result *result)
{
	struct sts_domain *d = arg;
	char id[MTA_STS_ID_SIZE] = "";
	int rc = txt_record_id(d, err, result, id);

	if (result != NULL)
		ub_resolve_free(result);
	d->checked = time(NULL);

	/* No usable record or a failed lookup: a cached policy stays until max_age. */
	if (rc <= 0) {
		answer_waiters(d);
		return;
	}
	if (strcmp(id, d->id) == 0 && policy_in_force(d) != NULL) {
		answer_waiters(d);
		return;
	}
	memcpy(d->new_id, id, sizeof d->new_id);
	fetch_start(d);
}

void
mta_sts_lookup(const char *domain, mta_sts_lookup_cb *cb, void *arg)
{
	char name[256], query[300];
	struct sts_domain *d;
	struct waiter *w;

	if (strlen(domain) >= sizeof name) {
		cb(arg, NULL, "");
		return;
	}
	strlcpy_x(name, domain, sizeof name);
	ascii_lower(name);
	if (!valid_domain(name)) {
		cb(arg, NULL, "");
		return;
	}
	d = domain_find(name, 1);
	if (!d->busy && d->checked != 0 && time(NULL) - d->checked < MTA_STS_RECHECK_SECONDS) {
		cb(arg, policy_in_force(d), d->id);
		return;
	}

	w = xmalloc(sizeof *w);
	w->cb = cb;
	w->arg = arg;
	w->next = d->waiters;
	d->waiters = w;
	if (d->busy)
		return;

	d->busy = 1;
	snprintf(query, sizeof query, "_mta-sts.%s", name);
	if (resolver_resolve(query, RR_TXT, txt_cb, d) < 0)
		answer_waiters(d);
}

/* Load one cache file, unless it is damaged or expired. */
static void
cache_load_file(const char *name)
{
	char text[MTA_STS_POLICY_MAX + 256], id[MTA_STS_ID_SIZE] = "", reason[256];
	long long fetched = 0;
	struct sts_domain *d;
	char *body;
	ssize_t length;
	int fd;

	if (!valid_domain(name))
		return;
	fd = openat(cache_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	length = read(fd, text, sizeof text - 1);
	close(fd);
	if (length <= 0)
		return;
	text[length] = '\0';

	body = strstr(text, "\n\n");
	if (body == NULL || sscanf(text, "id=%32[A-Za-z0-9]\nfetched=%lld\n", id, &fetched) != 2) {
		log_warn("MTA-STS: ignoring the damaged cache file %s/%s", CACHE_DIRECTORY, name);
		return;
	}
	body += 2;
	d = domain_find(name, 1);
	memcpy(d->new_id, id, sizeof d->new_id);
	if (policy_set(d, body, (size_t)(text + length - body), (time_t)fetched, reason,
	    sizeof reason) < 0) {
		log_warn("MTA-STS: ignoring the cache file %s/%s: %s", CACHE_DIRECTORY, name, reason);
		return;
	}
	if (policy_in_force(d) == NULL) {
		mta_sts_policy_free(&d->policy);
		d->have_policy = 0;
		d->id[0] = '\0';
	}
}

int
mta_sts_cache_init(char *err, size_t errsize)
{
	DIR *dir;
	struct dirent *entry;
	int fd;

	if (mkdirat(queued_spool.dir_fd, CACHE_DIRECTORY, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errsize, "cannot create %s/%s: %s", queued_spool.path, CACHE_DIRECTORY,
		    strerror(errno));
		return -1;
	}
	cache_fd = openat(queued_spool.dir_fd, CACHE_DIRECTORY, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cache_fd < 0) {
		snprintf(err, errsize, "cannot open %s/%s: %s", queued_spool.path, CACHE_DIRECTORY,
		    strerror(errno));
		return -1;
	}

	fd = dup(cache_fd);
	dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (dir == NULL) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((entry = readdir(dir)) != NULL) {
		if (entry->d_name[0] != '.')
			cache_load_file(entry->d_name);
	}
	closedir(dir);
	return 0;
}

void
mta_sts_cache_shutdown(void)
{
	while (domains != NULL) {
		struct sts_domain *d = domains;

		domains = d->next;
		/* A fetch still running refers to D, so D is left allocated.
		 * queued exits right after this. */
		if (d->busy)
			continue;
		mta_sts_policy_free(&d->policy);
		free(d->name);
		free(d);
	}
	domain_count = 0;
	if (cache_fd >= 0)
		close(cache_fd);
	cache_fd = -1;
}
