/* CIDR lists for IPv4 and IPv6, and listen address parsing. Numeric
 * addresses only: nothing here queries a resolver. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"
#include "util.h"

struct netaddr_block {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];		/* network byte order, host bits cleared */
	unsigned prefix;		/* 0..32 or 0..128 */
};

struct netaddr_list {
	struct netaddr_block *blocks;
	size_t count;
};

/* Clear the bits of ADDR past PREFIX. */
static void
netaddr_mask(unsigned char *addr, size_t len, unsigned prefix)
{
	for (size_t i = 0; i < len; i++) {
		unsigned bits = prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;

		if (bits >= 8)
			continue;
		addr[i] &= (unsigned char)(0xff << (8 - bits));
	}
}

/* Parse one item: "192.0.2.0/24", "2001:db8::/32", "[::1]/128", "192.0.2.1". */
static int
netaddr_block_parse(const char *item, struct netaddr_block *out, char *err, size_t errsize)
{
	char text[INET6_ADDRSTRLEN + 8];
	char *slash, *host = text;
	size_t len = strlen(item);
	unsigned max;

	if (len == 0 || len >= sizeof text) {
		snprintf(err, errsize, "invalid network address: %.100s", item);
		return -1;
	}
	memcpy(text, item, len + 1);

	slash = strchr(text, '/');
	if (slash != NULL)
		*slash = '\0';
	if (host[0] == '[') {
		size_t hostlen = strlen(host);

		if (hostlen < 3 || host[hostlen - 1] != ']') {
			snprintf(err, errsize, "invalid network address: %.100s", item);
			return -1;
		}
		host[hostlen - 1] = '\0';
		host++;
	}

	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		snprintf(err, errsize, "invalid network address: %.100s (expected a numeric IPv4 or IPv6 address)",
		    item);
		return -1;
	}

	out->prefix = max;
	if (slash != NULL) {
		char *end;
		long prefix;

		errno = 0;
		prefix = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || errno != 0 || prefix < 0 || prefix > (long)max) {
			snprintf(err, errsize, "invalid prefix length in %.100s (expected 0 to %u)", item, max);
			return -1;
		}
		out->prefix = (unsigned)prefix;
	}
	netaddr_mask(out->addr, out->family == AF_INET ? 4 : 16, out->prefix);
	return 0;
}

struct netaddr_list *
netaddr_list_parse(char *const *items, char *err, size_t errsize)
{
	struct netaddr_list *list = xcalloc(1, sizeof *list);
	size_t n = 0;

	while (items != NULL && items[n] != NULL)
		n++;
	list->blocks = xcalloc(n, sizeof *list->blocks);
	for (size_t i = 0; i < n; i++) {
		if (netaddr_block_parse(items[i], &list->blocks[i], err, errsize) < 0) {
			netaddr_list_free(list);
			return NULL;
		}
		list->count++;
	}
	return list;
}

void
netaddr_list_free(struct netaddr_list *list)
{
	if (list == NULL)
		return;
	free(list->blocks);
	free(list);
}

/*
 * The address of SA as family and bytes. An IPv4-mapped IPv6 address
 * (::ffff:192.0.2.1) becomes plain IPv4, so IPv4 blocks match clients
 * of a dual-stack socket. Returns 0, or -1 for other families.
 */
static int
netaddr_bytes(const struct sockaddr *sa, int *family, unsigned char *addr)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		*family = AF_INET;
		memcpy(addr, &sin->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			*family = AF_INET;
			memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			*family = AF_INET6;
			memcpy(addr, sin6->sin6_addr.s6_addr, 16);
		}
		return 0;
	}
	return -1;
}

int
netaddr_list_match(const struct netaddr_list *list, const struct sockaddr *sa)
{
	unsigned char addr[16];
	int family;

	if (list == NULL || netaddr_bytes(sa, &family, addr) < 0)
		return 0;
	for (size_t i = 0; i < list->count; i++) {
		const struct netaddr_block *block = &list->blocks[i];
		unsigned char masked[16];
		size_t len = family == AF_INET ? 4 : 16;

		if (block->family != family)
			continue;
		memcpy(masked, addr, len);
		netaddr_mask(masked, len, block->prefix);
		if (memcmp(masked, block->addr, len) == 0)
			return 1;
	}
	return 0;
}

char *
netaddr_format(const struct sockaddr *sa, char *out, size_t outsize)
{
	unsigned char addr[16];
	int family;

	if (outsize == 0)
		return out;
	if (netaddr_bytes(sa, &family, addr) < 0 ||
	    inet_ntop(family, addr, out, (socklen_t)outsize) == NULL)
		strlcpy_x(out, "unknown", outsize);
	return out;
}

socklen_t
netaddr_sockaddr(struct sockaddr_storage *out, int family, const void *addr, unsigned short port)
{
	memset(out, 0, sizeof *out);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, addr, 4);
		return sizeof *sin;
	}

	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	memcpy(&sin6->sin6_addr, addr, 16);
	return sizeof *sin6;
}

/* Parse a decimal port 1..65535. */
static int
netaddr_parse_port(const char *text, unsigned short *port)
{
	char *end;
	long value;

	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	value = strtol(text, &end, 10);
	if (*end != '\0' || errno != 0 || value < 1 || value > 65535)
		return -1;
	*port = (unsigned short)value;
	return 0;
}

int
netaddr_parse_listen(const char *text, struct sockaddr_storage *out, socklen_t *outlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port_text;
	unsigned short port;
	size_t hostlen;

	memset(out, 0, sizeof *out);

	/* "[v6]:port", "host:port", ":port" or "port" */
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		hostlen = (size_t)(close - text - 1);
		if (hostlen >= sizeof host)
			return -1;
		memcpy(host, text + 1, hostlen);
		host[hostlen] = '\0';
		port_text = close + 2;
	} else {
		const char *colon = strrchr(text, ':');

		if (colon != NULL && strchr(text, ':') != colon)
			return -1;	/* a bare IPv6 address needs brackets */
		hostlen = colon != NULL ? (size_t)(colon - text) : 0;
		if (hostlen >= sizeof host)
			return -1;
		memcpy(host, text, hostlen);
		host[hostlen] = '\0';
		port_text = colon != NULL ? colon + 1 : text;
	}
	if (netaddr_parse_port(port_text, &port) < 0)
		return -1;

	unsigned char addr[16] = { 0 };

	/* An empty host means every IPv4 address (0.0.0.0). */
	if (host[0] == '\0' || (text[0] != '[' && inet_pton(AF_INET, host, addr) == 1)) {
		*outlen = netaddr_sockaddr(out, AF_INET, addr, port);
		return 0;
	}
	if (text[0] == '[' && inet_pton(AF_INET6, host, addr) == 1) {
		*outlen = netaddr_sockaddr(out, AF_INET6, addr, port);
		return 0;
	}
	return -1;
}
