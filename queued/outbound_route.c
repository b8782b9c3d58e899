/* Routing: transport_maps, relayhost, then MX and A/AAAA lookups. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cdbmap.h"
#include "config.h"
#include "log.h"
#include "netaddr.h"
#include "outbound_route.h"
#include "queued.h"
#include "resolver.h"
#include "util.h"

#define RR_A	1
#define RR_MX	15
#define RR_AAAA	28

struct transport_entry {
	char *domain;		/* "example.com", or ".example.com" for its subdomains */
	char *transport;	/* "smtp:[host]:25", "error:text", ... */
};

static struct transport_entry *transports;
static size_t ntransports;
static struct cdbmap *transport_cdb;	/* transport_maps ending in .cdb */

/* One host to look up addresses for. */
struct lookup_host {
	char name[ROUTE_NAME_MAX];
	int preference;
	unsigned order;		/* random tie-breaker among equal preferences */
	struct route_address *addresses;
	size_t naddresses;
};

struct lookup {
	struct route *route;
	route_cb *cb;
	void *arg;
	char name[ROUTE_NAME_MAX];	/* the domain or host to resolve */
	int port;
	int use_mx;
	int configured;			/* the name comes from relayhost or transport_maps */
	struct lookup_host hosts[ROUTE_HOSTS_MAX];
	size_t nhosts;
	size_t pending;			/* address queries in flight */
	int nxdomain;			/* the name without MX does not exist */
	char error[256];		/* the last temporary DNS failure */
};

struct address_query {
	struct lookup *lookup;
	size_t host;
	int rrtype;
};

static void finish_lookup(struct lookup *lookup);

/* Return whether this client supports TRANSPORT. */
static int
transport_supported(const char *transport)
{
	return strncmp(transport, "smtp:", 5) == 0 || strncmp(transport, "relay:", 6) == 0 ||
	    strncmp(transport, "error:", 6) == 0 || strncmp(transport, "defer:", 6) == 0;
}

/* Parse the text file of transport_maps. */
static int
load_transports(const char *path, char *err, size_t errsize)
{
	FILE *fp = fopen(path, "r");
	char line[1024];
	int lineno = 0;

	if (fp == NULL) {
		snprintf(err, errsize, "transport_maps %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, fp) != NULL) {
		char domain[ROUTE_NAME_MAX], transport[768];

		lineno++;
		if (line[0] == '#' || sscanf(line, "%255s %767s", domain, transport) < 1)
			continue;
		if (sscanf(line, "%255s %767s", domain, transport) != 2 ||
		    strchr(transport, ':') == NULL) {
			snprintf(err, errsize, "transport_maps %s:%d: expected \"domain transport:nexthop\"",
			    path, lineno);
			fclose(fp);
			return -1;
		}
		if (!transport_supported(transport)) {
			snprintf(err, errsize, "transport_maps %s:%d: unsupported transport %s (use smtp, relay, error or defer)",
			    path, lineno, transport);
			fclose(fp);
			return -1;
		}
		/* error: and defer: keep the rest of the line as the text. */
		if (strncmp(transport, "error:", 6) == 0 || strncmp(transport, "defer:", 6) == 0) {
			char *start = strstr(line, transport);

			start[strcspn(start, "\r\n")] = '\0';
			snprintf(transport, sizeof transport, "%s", start);
		}
		ascii_lower(domain);
		transports = xrealloc(transports, (ntransports + 1) * sizeof *transports);
		transports[ntransports].domain = xstrdup(domain);
		transports[ntransports].transport = xstrdup(transport);
		ntransports++;
	}
	fclose(fp);
	return 0;
}

int
route_init(char *err, size_t errsize)
{
	const char *path = config_string("transport_maps");

	size_t len = strlen(path);

	if (len > 4 && strcmp(path + len - 4, ".cdb") == 0) {
		transport_cdb = cdbmap_open(path);
		if (transport_cdb == NULL) {
			snprintf(err, errsize, "transport_maps %s: %s", path, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (path[0] != '\0' && load_transports(path, err, errsize) < 0)
		return -1;
	return 0;
}

static void
free_transports(struct transport_entry *entries, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(entries[i].domain);
		free(entries[i].transport);
	}
	free(entries);
}

long
route_reload(char *err, size_t errsize)
{
	struct transport_entry *old_transports = transports;
	size_t old_count = ntransports;
	struct cdbmap *old_cdb = transport_cdb;

	transports = NULL;
	ntransports = 0;
	transport_cdb = NULL;
	if (route_init(err, errsize) < 0) {
		free_transports(transports, ntransports);
		transports = old_transports;
		ntransports = old_count;
		transport_cdb = old_cdb;
		return -1;
	}

	free_transports(old_transports, old_count);
	if (old_cdb != NULL)
		cdbmap_close(old_cdb);
	return (long)ntransports;
}

/* Return the entry for KEY in the cdb transport_maps, or NULL. An entry with
 * an unsupported transport becomes a deferral that names it. */
static const char *
find_cdb_transport(const char *key)
{
	static char entry[768];
	char *value = NULL;
	int rc = cdbmap_lookup(transport_cdb, key, &value);

	if (rc < 0) {
		log_error("transport_maps: lookup of %s failed: %s", key, strerror(errno));
		snprintf(entry, sizeof entry, "defer:4.3.0 transport_maps lookup failed");
		return entry;
	}
	if (rc == 0)
		return NULL;
	if (transport_supported(value))
		snprintf(entry, sizeof entry, "%s", value);
	else
		snprintf(entry, sizeof entry, "defer:4.3.5 unsupported transport in transport_maps for %s", key);
	free(value);
	return entry;
}

/* Find the transport_maps entry for DOMAIN (exact, then ".parent" entries).
 * Returns NULL when none applies. */
static const char *
find_transport(const char *domain)
{
	if (transport_cdb != NULL) {
		char key[ROUTE_NAME_MAX];
		const char *entry;

		/* Keys are lower case, as the text map compares them. */
		for (const char *d = domain; d != NULL; d = strchr(d + 1, '.')) {
			snprintf(key, sizeof key, "%s", d);
			ascii_lower(key);
			entry = find_cdb_transport(key);
			if (entry != NULL)
				return entry;
		}
		return NULL;
	}
	for (const char *d = domain; d != NULL; d = strchr(d + 1, '.')) {
		for (size_t i = 0; i < ntransports; i++) {
			const char *key = transports[i].domain;

			if (d == domain && strcasecmp(key, domain) == 0)
				return transports[i].transport;
			if (d != domain && strcasecmp(key, d) == 0)
				return transports[i].transport;
		}
	}
	return NULL;
}

/* Return the "smtp:"-style destination for DOMAIN without the transport
 * name: "[host]:port", "host", "" (deliver by MX), or the whole entry for
 * error: and defer:. RELAY is set when it is relayhost. */
static const char *
destination_for(const char *domain, int *relay)
{
	const char *transport = find_transport(domain);
	const char *relayhost = config_string("relayhost");

	*relay = 0;
	if (transport != NULL) {
		if (strncmp(transport, "smtp:", 5) == 0)
			return transport + 5;
		if (strncmp(transport, "relay:", 6) == 0)
			return transport + 6;
		return transport;
	}
	if (relayhost[0] != '\0') {
		*relay = 1;
		return relayhost;
	}
	return "";
}

void
route_nexthop(const char *domain, char *out, size_t outsize)
{
	int relay;
	const char *destination = destination_for(domain, &relay);

	snprintf(out, outsize, "%s", destination[0] != '\0' ? destination : domain);
	ascii_lower(out);
}

void
route_free(struct route *route)
{
	if (route == NULL)
		return;
	free(route->addresses);
	free(route);
}

static void
deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lookup *lookup = arg;

	lookup->cb(lookup->route, lookup->arg);
	free(lookup);
}

/* Hand the route to the caller from the event loop. */
static void
deliver_later(struct lookup *lookup)
{
	struct timeval now = { 0, 0 };

	event_base_once(queued_base, -1, EV_TIMEOUT, deliver_cb, lookup, &now);
}

static void
fail_lookup(struct lookup *lookup, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fail_lookup(struct lookup *lookup, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	snprintf(lookup->route->dsn, sizeof lookup->route->dsn, "%s", dsn);
	va_start(ap, fmt);
	vsnprintf(lookup->route->reason, sizeof lookup->route->reason, fmt, ap);
	va_end(ap);
	deliver_later(lookup);
}

/* Split "[host]:port", "host:port" or "host" into LOOKUP. Returns 0 or -1. */
static int
parse_destination(struct lookup *lookup, const char *destination)
{
	const char *colon;
	size_t len;

	lookup->use_mx = destination[0] != '[';
	lookup->port = (int)config_int("smtp_port");
	if (destination[0] == '[') {
		const char *close = strchr(destination, ']');

		if (close == NULL)
			return -1;
		len = (size_t)(close - destination - 1);
		if (len == 0 || len >= sizeof lookup->name)
			return -1;
		memcpy(lookup->name, destination + 1, len);
		lookup->name[len] = '\0';
		colon = close[1] == ':' ? close + 1 : NULL;
		if (close[1] != '\0' && colon == NULL)
			return -1;
	} else {
		colon = strrchr(destination, ':');
		len = colon != NULL ? (size_t)(colon - destination) : strlen(destination);
		if (len == 0 || len >= sizeof lookup->name)
			return -1;
		memcpy(lookup->name, destination, len);
		lookup->name[len] = '\0';
	}
	if (colon != NULL) {
		char *end;
		long port = strtol(colon + 1, &end, 10);

		if (*end != '\0' || port < 1 || port > 65535)
			return -1;
		lookup->port = (int)port;
	}
	return 0;
}

/* Add address bytes DATA of family FAMILY to HOST. SECURE is set when
 * the DNS response was DNSSEC-validated. */
static void
add_address(struct lookup *lookup, struct lookup_host *host, int family, const void *data,
    int secure)
{
	struct route_address *address;

	host->addresses = xrealloc(host->addresses, (host->naddresses + 1) * sizeof *address);
	address = &host->addresses[host->naddresses++];
	memset(address, 0, sizeof *address);
	snprintf(address->host, sizeof address->host, "%s", host->name);
	address->port = lookup->port;
	address->preference = host->preference;
	address->secure = secure;
	address->salen = netaddr_sockaddr(&address->sa, family, data, (unsigned short)lookup->port);
	inet_ntop(family, data, address->text, sizeof address->text);
}

static void
address_cb(void *arg, int err, struct ub_result *result)
{
	struct address_query *query = arg;
	struct lookup *lookup = query->lookup;
	struct lookup_host *host = &lookup->hosts[query->host];
	int family = query->rrtype == RR_A ? AF_INET : AF_INET6;
	size_t size = family == AF_INET ? 4 : 16;

	if (err != 0) {
		snprintf(lookup->error, sizeof lookup->error, "DNS lookup of %s failed: %s", host->name,
		    resolver_strerror(err));
	} else if (result->bogus) {
		snprintf(lookup->error, sizeof lookup->error, "DNSSEC validation of %s failed: %s",
		    host->name, result->why_bogus != NULL ? result->why_bogus : "bogus answer");
	} else if (result->nxdomain) {
		if (!lookup->use_mx)
			lookup->nxdomain = 1;
	} else if (result->rcode != 0) {
		snprintf(lookup->error, sizeof lookup->error, "DNS lookup of %s failed with rcode %d",
		    host->name, result->rcode);
	} else {
		for (size_t i = 0; result->data[i] != NULL; i++)
			if ((size_t)result->len[i] == size)
				add_address(lookup, host, family, result->data[i], result->secure);
	}
	if (result != NULL)
		ub_resolve_free(result);
	free(query);
	if (--lookup->pending == 0)
		finish_lookup(lookup);
}

static int
by_preference(const void *a, const void *b)
{
	const struct lookup_host *x = a, *y = b;

	if (x->preference != y->preference)
		return x->preference < y->preference ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Return the record type named when a host has no address: AAAA only with
 * outbound_address_family = ipv6. */
static const char *
address_type(void)
{
	return strcmp(config_string("outbound_address_family"), "ipv6") == 0 ? "AAAA" : "A";
}

/* Return the DSN code for a name that does not exist. The recipient domain
 * bounces, but a relayhost or transport_maps name is a configuration error
 * that the admin can fix, so its mail is deferred. */
static const char *
not_found_dsn(const struct lookup *lookup)
{
	return lookup->configured ? "4.4.3" : "5.1.2";
}

/* Keep the first smtp_mx_address_limit addresses of a domain's route, as
 * Postfix does, so that a domain that publishes hundreds of addresses
 * cannot hold a delivery attempt for hundreds of connect timeouts. A
 * relayhost or transport_maps host named in brackets is not limited. */
static void
limit_addresses(struct lookup *lookup)
{
	long long limit = config_int("smtp_mx_address_limit");
	struct route *route = lookup->route;

	if (!lookup->use_mx || limit <= 0 || route->naddresses <= (size_t)limit)
		return;
	route->naddresses = (size_t)limit;
}

/* Every address query is done: order the addresses and deliver the route. */
static void
finish_lookup(struct lookup *lookup)
{
	struct route *route = lookup->route;

	qsort(lookup->hosts, lookup->nhosts, sizeof lookup->hosts[0], by_preference);
	for (size_t h = 0; h < lookup->nhosts; h++) {
		struct lookup_host *host = &lookup->hosts[h];

		route->addresses = xrealloc(route->addresses,
		    (route->naddresses + host->naddresses + 1) * sizeof *route->addresses);

		/* IPv6 addresses first, whichever DNS reply arrived first. */
		for (size_t a = 0; a < host->naddresses; a++)
			if (host->addresses[a].sa.ss_family == AF_INET6)
				route->addresses[route->naddresses++] = host->addresses[a];
		for (size_t a = 0; a < host->naddresses; a++)
			if (host->addresses[a].sa.ss_family == AF_INET)
				route->addresses[route->naddresses++] = host->addresses[a];
		free(host->addresses);
	}

	limit_addresses(lookup);
	if (route->naddresses > 0) {
		deliver_later(lookup);
		return;
	}
	if (lookup->error[0] != '\0')
		fail_lookup(lookup, "4.4.3", "%s", lookup->error);
	else if (lookup->nxdomain)
		fail_lookup(lookup, not_found_dsn(lookup), "Host or domain name not found. Name service error for name=%s type=%s: Host not found",
		    lookup->name, address_type());
	else if (lookup->use_mx && !(lookup->nhosts == 1 && strcasecmp(lookup->hosts[0].name, lookup->name) == 0))
		fail_lookup(lookup, "4.4.3", "no address found for the MX hosts of %s", lookup->name);
	else
		fail_lookup(lookup, not_found_dsn(lookup), "Host or domain name not found. Name service error for name=%s type=%s: Host found but no data record of that type",
		    lookup->name, address_type());
}

/* Query the addresses of every host in LOOKUP. */
static void
resolve_hosts(struct lookup *lookup)
{
	const char *family = config_string("outbound_address_family");
	int types[2], ntypes = 0;

	if (strcmp(family, "ipv4") != 0)
		types[ntypes++] = RR_AAAA;
	if (strcmp(family, "ipv6") != 0)
		types[ntypes++] = RR_A;

	lookup->pending = 1;	/* held until every query is sent */
	for (size_t h = 0; h < lookup->nhosts; h++) {
		for (int t = 0; t < ntypes; t++) {
			struct address_query *query = xcalloc(1, sizeof *query);

			query->lookup = lookup;
			query->host = h;
			query->rrtype = types[t];
			lookup->pending++;
			if (resolver_resolve(lookup->hosts[h].name, types[t], address_cb, query) < 0) {
				snprintf(lookup->error, sizeof lookup->error, "DNS query for %s failed",
				    lookup->hosts[h].name);
				lookup->pending--;
				free(query);
			}
		}
	}
	if (--lookup->pending == 0)
		finish_lookup(lookup);
}

/* Decode the wire-format name at DATA (LEN bytes) into OUT, without the
 * final dot ("" for the root). Returns 0, or -1 if it is malformed. */
static int
decode_name(const unsigned char *data, size_t len, char *out, size_t outsize)
{
	size_t i = 0, n = 0;

	while (i < len && data[i] != 0) {
		size_t label = data[i++];

		if (label > 63 || i + label > len || n + label + 2 > outsize)
			return -1;
		if (n > 0)
			out[n++] = '.';
		for (size_t k = 0; k < label; k++) {
			unsigned char c = data[i + k];

			/* A host name byte outside letters, digits, '-' and '_' is rejected. */
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '_'))
				return -1;
			out[n++] = (char)c;
		}
		i += label;
	}
	if (i >= len)
		return -1;
	out[n] = '\0';
	return 0;
}

static void
add_host(struct lookup *lookup, const char *name, int preference)
{
	struct lookup_host *host;

	if (lookup->nhosts >= ROUTE_HOSTS_MAX)
		return;
	host = &lookup->hosts[lookup->nhosts++];
	snprintf(host->name, sizeof host->name, "%s", name);
	host->preference = preference;
	host->order = arc4random();
}

/*
 * An MX host named myhostname is this host. As RFC 5321 section 5.1
 * requires, it and every MX host of the same or a higher preference are
 * dropped from the NHOSTS HOSTS. Returns the number of hosts left; 0
 * means a mail loop.
 */
static size_t
drop_self_and_worse(struct lookup_host *hosts, size_t nhosts)
{
	int self = -1;
	size_t kept = 0;

	for (size_t h = 0; h < nhosts; h++)
		if (strcasecmp(hosts[h].name, queued_settings.myhostname) == 0 &&
		    (self < 0 || hosts[h].preference < self))
			self = hosts[h].preference;
	if (self < 0)
		return nhosts;

	for (size_t h = 0; h < nhosts; h++)
		if (hosts[h].preference < self)
			hosts[kept++] = hosts[h];
	return kept;
}

/*
 * Keep the best ROUTE_HOSTS_MAX of the MX hosts in RESULT. Every record
 * is read first, so that neither the check for this host nor the order
 * depends on where the DNS response put a record. Returns 0, or -1 after
 * failing LOOKUP (null MX, no valid host, a mail loop).
 */
static int
add_mx_hosts(struct lookup *lookup, struct ub_result *result)
{
	struct lookup_host *all;
	size_t n = 0, nall = 0;

	while (result->data[n] != NULL)
		n++;
	all = xcalloc(n > 0 ? n : 1, sizeof *all);

	for (size_t i = 0; i < n; i++) {
		const unsigned char *data = (const unsigned char *)result->data[i];
		char name[ROUTE_NAME_MAX];

		if (result->len[i] < 3 || decode_name(data + 2, (size_t)result->len[i] - 2, name, sizeof name) < 0)
			continue;
		/* RFC 7505: a single MX with the root as its host means no mail. */
		if (name[0] == '\0') {
			if (n == 1) {
				free(all);
				fail_lookup(lookup, "5.1.10", "Recipient address rejected: Domain %s does not accept mail (nullMX)",
				    lookup->name);
				return -1;
			}
			continue;
		}
		snprintf(all[nall].name, sizeof all[nall].name, "%s", name);
		all[nall].preference = data[0] << 8 | data[1];
		all[nall].order = arc4random();
		nall++;
	}
	if (nall == 0) {
		free(all);
		fail_lookup(lookup, "4.4.3", "no valid MX host for %s", lookup->name);
		return -1;
	}

	nall = drop_self_and_worse(all, nall);
	if (nall == 0) {
		free(all);
		fail_lookup(lookup, "5.4.6", "mail for %s loops back to myself", lookup->name);
		return -1;
	}

	qsort(all, nall, sizeof *all, by_preference);
	for (size_t h = 0; h < nall && lookup->nhosts < ROUTE_HOSTS_MAX; h++)
		lookup->hosts[lookup->nhosts++] = all[h];
	free(all);
	return 0;
}

static void
mx_cb(void *arg, int err, struct ub_result *result)
{
	struct lookup *lookup = arg;

	if (err != 0) {
		fail_lookup(lookup, "4.4.3", "DNS lookup of MX %s failed: %s", lookup->name, resolver_strerror(err));
		return;
	}
	lookup->route->mx_secure = result->secure;
	if (result->bogus) {
		fail_lookup(lookup, "4.7.5", "DNSSEC validation of MX %s failed: %s", lookup->name,
		    result->why_bogus != NULL ? result->why_bogus : "bogus answer");
	} else if (result->nxdomain) {
		fail_lookup(lookup, not_found_dsn(lookup), "Host or domain name not found. Name service error for name=%s type=MX: Host not found",
		    lookup->name);
	} else if (result->rcode != 0) {
		fail_lookup(lookup, "4.4.3", "DNS lookup of MX %s failed with rcode %d", lookup->name, result->rcode);
	} else if (!result->havedata) {
		add_host(lookup, lookup->name, 0);
		resolve_hosts(lookup);
	} else if (add_mx_hosts(lookup, result) == 0) {
		resolve_hosts(lookup);
	}
	ub_resolve_free(result);
}

/* Route a literal address "[192.0.2.1]" or "[IPv6:2001:db8::1]". Returns 1 if NAME is one. */
static int
route_literal(struct lookup *lookup)
{
	const char *name = lookup->name;
	unsigned char bytes[16];
	struct lookup_host *host;

	if (strncasecmp(name, "IPv6:", 5) == 0)
		name += 5;
	add_host(lookup, lookup->name, 0);
	host = &lookup->hosts[0];
	if (inet_pton(AF_INET, name, bytes) == 1)
		add_address(lookup, host, AF_INET, bytes, 0);
	else if (inet_pton(AF_INET6, name, bytes) == 1)
		add_address(lookup, host, AF_INET6, bytes, 0);
	else {
		lookup->nhosts = 0;
		return 0;
	}
	finish_lookup(lookup);
	return 1;
}

/* Replace a UTF-8 name in LOOKUP with its A-label form, so that the MX,
 * address and TLSA lookups and the TLS host name checks all use the name
 * as the DNS and certificates have it. The recipient addresses keep
 * their UTF-8 form for SMTPUTF8 servers. Returns 0, or -1 after failing
 * LOOKUP. */
static int
to_ascii_name(struct lookup *lookup)
{
	char ascii[ROUTE_NAME_MAX], err[ROUTE_NAME_MAX + 100];

	if (resolver_ascii_name(lookup->name, ascii, sizeof ascii, err, sizeof err) < 0) {
		fail_lookup(lookup, lookup->configured ? "4.3.5" : "5.1.2", "%s", err);
		return -1;
	}
	snprintf(lookup->name, sizeof lookup->name, "%s", ascii);
	return 0;
}

/* error:TEXT and defer:TEXT, with an optional leading enhanced status code. */
static void
route_fixed(struct lookup *lookup, const char *entry, int permanent)
{
	const char *text = strchr(entry, ':') + 1;
	unsigned a, b, c;
	int end = 0;

	if (sscanf(text, "%1u.%3u.%3u %n", &a, &b, &c, &end) == 3 && end > 0 &&
	    (int)a == (permanent ? 5 : 4)) {
		char dsn[16];

		snprintf(dsn, sizeof dsn, "%u.%u.%u", a, b, c);
		fail_lookup(lookup, dsn, "%s", text + end);
		return;
	}
	fail_lookup(lookup, permanent ? "5.0.0" : "4.0.0", "%s",
	    text[0] != '\0' ? text : permanent ? "mail for this domain is rejected by transport_maps" :
	    "mail for this domain is deferred by transport_maps");
}

void
route_lookup(const char *domain, route_cb *cb, void *arg)
{
	struct lookup *lookup = xcalloc(1, sizeof *lookup);
	const char *destination;

	lookup->route = xcalloc(1, sizeof *lookup->route);
	lookup->cb = cb;
	lookup->arg = arg;
	route_nexthop(domain, lookup->route->nexthop, sizeof lookup->route->nexthop);
	destination = destination_for(domain, &lookup->route->relay);

	if (strncmp(destination, "error:", 6) == 0) {
		route_fixed(lookup, destination, 1);
		return;
	}
	if (strncmp(destination, "defer:", 6) == 0) {
		route_fixed(lookup, destination, 0);
		return;
	}
	lookup->configured = destination[0] != '\0';
	if (destination[0] == '\0')
		destination = domain;
	if (parse_destination(lookup, destination) < 0) {
		fail_lookup(lookup, "4.3.5", "invalid destination %s in relayhost or transport_maps", destination);
		return;
	}
	if (!lookup->use_mx && route_literal(lookup))
		return;
	if (to_ascii_name(lookup) < 0)
		return;

	if (!lookup->use_mx) {
		add_host(lookup, lookup->name, 0);
		resolve_hosts(lookup);
		return;
	}
	if (resolver_resolve(lookup->name, RR_MX, mx_cb, lookup) < 0)
		fail_lookup(lookup, "4.4.3", "DNS query for MX %s failed", lookup->name);
}
