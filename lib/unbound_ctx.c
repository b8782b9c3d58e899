/* A libunbound context that forwards to dns_resolvers only. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "unbound_ctx.h"

/* Zones for which libunbound 1.17 returns NXDOMAIN itself: "test."
 * (RFC 6761), and the reverse zones of the documentation networks (RFC
 * 5737, RFC 3849). "transparent" sends them to the configured servers,
 * as unblock-lan-zones does for the private networks (RFC 6303). */
static const char *const forwarded_local_zones[] = {
	"test.",
	"2.0.192.in-addr.arpa.",
	"100.51.198.in-addr.arpa.",
	"113.0.203.in-addr.arpa.",
	"8.b.d.0.1.0.0.2.ip6.arpa.",
	NULL,
};

static int
set_forwarders(struct ub_ctx *ctx, char *const *servers, char *err, size_t errsize)
{
	for (size_t i = 0; servers[i] != NULL; i++) {
		int rc = ub_ctx_set_fwd(ctx, servers[i]);

		if (rc != 0) {
			snprintf(err, errsize, "invalid dns_resolvers entry %s: %s", servers[i],
			    ub_strerror(rc));
			return -1;
		}
	}

	/* A resolver on 127.0.0.1 is allowed because the admin named it. */
	if (ub_ctx_set_option(ctx, "do-not-query-localhost:", "no") != 0) {
		snprintf(err, errsize, "libunbound rejected do-not-query-localhost");
		return -1;
	}

	/* The SPF ptr mechanism needs the PTR records of clients on private
	 * and documentation networks, and tests serve names under "test.". */
	if (ub_ctx_set_option(ctx, "unblock-lan-zones:", "yes") != 0) {
		snprintf(err, errsize, "libunbound rejected unblock-lan-zones");
		return -1;
	}
	for (size_t i = 0; forwarded_local_zones[i] != NULL; i++) {
		char zone[128];

		snprintf(zone, sizeof zone, "%s transparent", forwarded_local_zones[i]);
		if (ub_ctx_set_option(ctx, "local-zone:", zone) != 0) {
			snprintf(err, errsize, "libunbound rejected local-zone %s", zone);
			return -1;
		}
	}
	return 0;
}

static int
set_trust_anchor(struct ub_ctx *ctx, const char *file, char *err, size_t errsize)
{
	int rc;

	if (file[0] == '\0') {
		log_warn("DNS resolver: dns_trust_anchor_file is empty, so no answer is DNSSEC-validated and queued uses no DANE");
		return 0;
	}
	if (access(file, R_OK) < 0) {
		snprintf(err, errsize, "dns_trust_anchor_file %s: %s", file, strerror(errno));
		return -1;
	}
	rc = ub_ctx_add_ta_file(ctx, file);
	if (rc != 0) {
		snprintf(err, errsize, "dns_trust_anchor_file %s: %s", file, ub_strerror(rc));
		return -1;
	}
	return 0;
}

struct ub_ctx *
unbound_ctx_create(char *err, size_t errsize)
{
	struct ub_ctx *ctx = ub_ctx_create();

	if (ctx == NULL) {
		snprintf(err, errsize, "ub_ctx_create failed");
		return NULL;
	}

	/* Queries run in a thread of this process, not a forked child. */
	err[0] = '\0';
	if (ub_ctx_async(ctx, 1) != 0 ||
	    set_forwarders(ctx, config_list("dns_resolvers"), err, errsize) < 0 ||
	    set_trust_anchor(ctx, config_string("dns_trust_anchor_file"), err, errsize) < 0) {
		if (err[0] == '\0')
			snprintf(err, errsize, "ub_ctx_async failed");
		ub_ctx_delete(ctx);
		return NULL;
	}
	return ctx;
}
