/*
 * Routing of remote recipients: which hosts and addresses receive the
 * mail for one recipient domain. transport_maps comes first, then
 * relayhost, then the domain's MX records (RFC 5321 section 5.1),
 * with the domain's own A/AAAA records when it has no MX.
 */
#ifndef ESTAFETA_QUEUED_OUTBOUND_ROUTE_H
#define ESTAFETA_QUEUED_OUTBOUND_ROUTE_H

#include <stddef.h>
#include <sys/socket.h>

#define ROUTE_HOSTS_MAX	16	/* MX hosts tried per domain, as an upper bound on work */
#define ROUTE_NAME_MAX	256

struct route_address {
	char host[ROUTE_NAME_MAX];	/* MX host name, or the literal address */
	char text[64];			/* the address as text */
	struct sockaddr_storage sa;
	socklen_t salen;
	int port;
	int preference;
	int secure;			/* the A/AAAA answer was DNSSEC-validated */
};

struct route {
	char nexthop[ROUTE_NAME_MAX];	/* the destination the limits count by */
	int relay;			/* the destination is relayhost (AUTH may apply) */
	int mx_secure;			/* the MX answer was DNSSEC-validated */

	/* Addresses in the order to try them. */
	struct route_address *addresses;
	size_t naddresses;

	/* Set when no address is to be tried. A 4.x.x code defers the
	 * recipients and a 5.x.x code bounces them, with REASON. */
	char dsn[16];
	char reason[512];
};

typedef void route_cb(struct route *route, void *arg);

/* Load transport_maps and check relayhost. Returns 0, or -1 with ERR set. */
int route_init(char *err, size_t errsize);

/* Load transport_maps again. Returns the number of entries of a text
 * map (0 for a cdb map), or -1 with ERR set, and then the map loaded
 * before stays in use. */
long route_reload(char *err, size_t errsize);

/* Write the destination that DOMAIN's mail goes to (for concurrency limits
 * and connection reuse) into OUT. */
void route_nexthop(const char *domain, char *out, size_t outsize);

/* Find the route for recipient DOMAIN. CB runs once, later (from the
 * event loop), and owns ROUTE (route_free). */
void route_lookup(const char *domain, route_cb *cb, void *arg);

void route_free(struct route *route);

#endif
