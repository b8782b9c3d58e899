/*
 * The TLS policy for outbound delivery until the client TLS side exists:
 * every host gets level MAY, and no SSL can be made, so STARTTLS is
 * never started and mail goes in plaintext.
 */
#include <stdio.h>
#include <stdlib.h>

#include "outbound_tls.h"
#include "util.h"

int
outbound_tls_init(char *err, size_t errsize)
{
	return 0;
}

void
outbound_tls_shutdown(void)
{
}

void
outbound_tls_policy_lookup(const struct outbound_tls_request *request,
    outbound_tls_policy_cb *cb, void *arg)
{
	struct outbound_tls_policy *policy = xcalloc(1, sizeof *policy);

	policy->level = OUTBOUND_TLS_MAY;
	snprintf(policy->source, sizeof policy->source, "built-in default");
	cb(policy, arg);
}

void
outbound_tls_policy_free(struct outbound_tls_policy *policy)
{
	free(policy);
}

SSL *
outbound_tls_ssl_new(const struct outbound_tls_policy *policy,
    const struct outbound_tls_request *request, char *err, size_t errsize)
{
	/* TODO: build the SSL from the client context in lib/tls once it
	 * has one; until then STARTTLS is never used. */
	snprintf(err, errsize, "no TLS client context");
	return NULL;
}

int
outbound_tls_check(SSL *ssl, const struct outbound_tls_policy *policy,
    const struct outbound_tls_request *request, char *dsn, char *reason,
    size_t reasonsize)
{
	return 0;
}

const char *
outbound_tls_level_name(enum outbound_tls_level level)
{
	switch (level) {
	case OUTBOUND_TLS_NONE: return "none";
	case OUTBOUND_TLS_MAY: return "may";
	case OUTBOUND_TLS_ENCRYPT: return "encrypt";
	case OUTBOUND_TLS_DANE: return "dane";
	case OUTBOUND_TLS_VERIFY: return "verify";
	case OUTBOUND_TLS_MTA_STS: return "mta-sts";
	}
	return "unknown";
}
