/* libunbound on queued's event loop: ub_fd is watched for reads, and
 * ub_process runs the callbacks of finished queries. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <idn2.h>

#include "config.h"
#include "log.h"
#include "queued.h"
#include "resolver.h"
#include "unbound_ctx.h"
#include "util.h"

#define CLASS_IN 1
#define DNS_NAME_MAX 255	/* octets of a presentation-form name with its final dot */

static struct ub_ctx *context;
static struct event *answer_ev;

static void
answer_cb(evutil_socket_t fd, short what, void *arg)
{
	int err = ub_process(context);

	if (err != 0)
		log_error("DNS resolver: ub_process failed: %s", ub_strerror(err));
}

int
resolver_init(char *err, size_t errsize)
{
	char *const *servers = config_list("dns_resolvers");
	const char *anchor = config_string("dns_trust_anchor_file");
	int fd;

	if (servers[0] == NULL) {
		snprintf(err, errsize, "no DNS resolver configured (dns_resolvers is empty)");
		return -1;
	}
	context = unbound_ctx_create(err, errsize);
	if (context == NULL)
		return -1;

	fd = ub_fd(context);
	answer_ev = event_new(queued_base, fd, EV_READ | EV_PERSIST, answer_cb, NULL);
	event_add(answer_ev, NULL);
	log_info("DNS resolver: forwarding to %s%s, trust anchor %s", servers[0],
	    servers[1] != NULL ? " and others" : "", anchor[0] != '\0' ? anchor : "none");
	return 0;
}

int
resolver_enabled(void)
{
	return context != NULL;
}

static int
is_ascii(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
		if (*p >= 0x80)
			return 0;
	return 1;
}

int
resolver_ascii_name(const char *name, char *out, size_t outsize, char *err, size_t errsize)
{
	char *converted = NULL;
	char shown[DNS_NAME_MAX + 1];
	int rc;

	if (is_ascii(name)) {
		if (strlcpy_x(out, name, outsize) >= outsize) {
			snprintf(err, errsize, "domain name %s is too long", name);
			return -1;
		}
		return 0;
	}

	log_sanitize(shown, sizeof shown, name, strlen(name));
	rc = idn2_to_ascii_8z(name, &converted, IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK) {
		snprintf(err, errsize, "invalid internationalized domain name %s: %s", shown,
		    idn2_strerror(rc));
		return -1;
	}
	if (strlcpy_x(out, converted, outsize) >= outsize) {
		snprintf(err, errsize, "domain name %s is too long as %s", shown, converted);
		idn2_free(converted);
		return -1;
	}
	idn2_free(converted);
	return 0;
}

int
resolver_resolve(const char *name, int rrtype, resolver_cb *cb, void *arg)
{
	char ascii[DNS_NAME_MAX + 1], err[DNS_NAME_MAX + 100];
	int rc;

	if (context == NULL)
		return -1;
	if (resolver_ascii_name(name, ascii, sizeof ascii, err, sizeof err) < 0) {
		log_warn("DNS resolver: query type %d not sent: %s", rrtype, err);
		return -1;
	}
	rc = ub_resolve_async(context, ascii, rrtype, CLASS_IN, arg, cb, NULL);
	if (rc != 0) {
		log_error("DNS resolver: query for %s type %d failed: %s", ascii, rrtype,
		    ub_strerror(rc));
		return -1;
	}
	return 0;
}

const char *
resolver_strerror(int err)
{
	return ub_strerror(err);
}

void
resolver_stop(void)
{
	if (answer_ev != NULL)
		event_free(answer_ev);
	answer_ev = NULL;
	if (context != NULL)
		ub_ctx_delete(context);
	context = NULL;
}
