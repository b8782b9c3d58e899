/* Checks of what a configuration value means, beyond its type, so that
 * `estafeta config check` rejects what a daemon would reject at start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "netaddr.h"
#include "util.h"

/* Split VALUE like config_list() does; the caller frees with free_items. */
static char **
split_items(const char *value)
{
	size_t n = 0, cap = 4;
	char **items = xcalloc(cap, sizeof *items);
	char *copy = xstrdup(value), *save = NULL;

	for (char *item = strtok_r(copy, ", \t", &save); item != NULL;
	    item = strtok_r(NULL, ", \t", &save)) {
		if (n + 2 > cap) {
			cap *= 2;
			items = xrealloc(items, cap * sizeof *items);
		}
		items[n++] = xstrdup(item);
	}
	items[n] = NULL;
	free(copy);
	return items;
}

static void
free_items(char **items)
{
	for (char **p = items; *p != NULL; p++)
		free(*p);
	free(items);
}

int
config_check_networks(const char *value, char *err, size_t errsize)
{
	char **items = split_items(value);
	struct netaddr_list *list = netaddr_list_parse(items, err, errsize);

	free_items(items);
	if (list == NULL)
		return -1;
	netaddr_list_free(list);
	return 0;
}

int
config_check_listen(const char *value, char *err, size_t errsize)
{
	char **items = split_items(value);
	int rc = 0;

	for (char **p = items; *p != NULL && rc == 0; p++) {
		struct sockaddr_storage ss;
		socklen_t len;

		if (netaddr_parse_listen(*p, &ss, &len) < 0) {
			snprintf(err, errsize, "\"%s\" is not a listen address (HOST:PORT, [IPV6]:PORT or PORT)",
			    *p);
			rc = -1;
		}
	}
	free_items(items);
	return rc;
}

int
config_check_octal_mode(const char *value, char *err, size_t errsize)
{
	char *end;
	long mode = strtol(value, &end, 8);

	if (*value == '\0' || *end != '\0' || mode < 0 || mode > 0777) {
		snprintf(err, errsize, "expected octal permissions such as 0660");
		return -1;
	}
	return 0;
}

/* A host name of letters, digits, '-' and '.', as RFC 1123 allows;
 * empty means the system host name. */
int
config_check_hostname(const char *value, char *err, size_t errsize)
{
	size_t len = strlen(value);

	if (len == 0)
		return 0;
	if (len > 253 || strspn(value, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != len || value[0] == '.' ||
	    value[0] == '-' || strstr(value, "..") != NULL) {
		snprintf(err, errsize, "expected a host name such as mail.example.org");
		return -1;
	}
	return 0;
}

/* The position of a tls_*_protocol value, oldest first, or -1. */
static int
tls_protocol_rank(const char *name)
{
	static const char *const versions[] = { "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", NULL };

	for (int i = 0; versions[i] != NULL; i++)
		if (strcmp(versions[i], name) == 0)
			return i;
	return -1;
}

int
config_check_combinations(char *err, size_t errsize)
{
	const char *min = config_string("tls_min_protocol");
	const char *max = config_string("tls_max_protocol");

	if (tls_protocol_rank(min) > tls_protocol_rank(max)) {
		snprintf(err, errsize, "tls_min_protocol %s is newer than tls_max_protocol %s: lower tls_min_protocol or raise tls_max_protocol",
		    min, max);
		return -1;
	}
	return 0;
}
