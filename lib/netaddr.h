/* Network address lists (mynetworks): CIDR matching for IPv4 and IPv6. */
#ifndef ESTAFETA_NETADDR_H
#define ESTAFETA_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

struct netaddr_list;

/* Parse items like "127.0.0.0/8", "::1/128", "[::1]/128", "192.0.2.1". */
struct netaddr_list *netaddr_list_parse(char *const *items, char *err, size_t errsize);
void netaddr_list_free(struct netaddr_list *list);
int netaddr_list_match(const struct netaddr_list *list, const struct sockaddr *sa);

/* Printable address (no port) of SA into OUT. IPv4-mapped IPv6 is shown as IPv4. */
char *netaddr_format(const struct sockaddr *sa, char *out, size_t outsize);

/*
 * Fill OUT with the AF_INET or AF_INET6 address ADDR (4 or 16 bytes in
 * network byte order) and PORT. Returns the length of the sockaddr.
 */
socklen_t netaddr_sockaddr(struct sockaddr_storage *out, int family, const void *addr,
    unsigned short port);

/* Parse "192.0.2.1:port", "[v6]:port" or ":port"/"port" (every IPv4 address,
 * 0.0.0.0). Hosts must be numeric. 0 or -1. */
int netaddr_parse_listen(const char *text, struct sockaddr_storage *out, socklen_t *outlen);

#endif
