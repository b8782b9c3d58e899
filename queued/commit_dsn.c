/* Checks of the DSN and REQUIRETLS fields of COMMIT (see commit_dsn.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit_dsn.h"
#include "envelope.h"
#include "ipc.h"
#include "util.h"

#define ENVID_MAX 100	/* smtpd accepts at most 100 characters of xtext */

/* Printable ASCII, as smtpd leaves an ENVID after xtext decoding. */
static int
printable_ascii(const char *text)
{
	for (; *text != '\0'; text++)
		if (*text < ' ' || *text > '~')
			return 0;
	return 1;
}

static int
apply_message_fields(struct envelope *env, const struct ipc_msg *request, char *why,
    size_t whysize)
{
	const char *ret = ipc_msg_get(request, "ret");
	const char *envid = ipc_msg_get(request, "envid");
	const char *requiretls = ipc_msg_get(request, "requiretls");
	const char *tls_required = ipc_msg_get(request, "tls_required");

	if (ret != NULL) {
		if (strcmp(ret, "FULL") != 0 && strcmp(ret, "HDRS") != 0) {
			snprintf(why, whysize, "invalid ret: expected FULL or HDRS");
			return -1;
		}
		envelope_set_attr(env, "ret", ret);
	}
	if (envid != NULL) {
		if (*envid == '\0' || strlen(envid) > ENVID_MAX || !printable_ascii(envid)) {
			snprintf(why, whysize, "invalid envid: expected 1 to %d printable ASCII characters",
			    ENVID_MAX);
			return -1;
		}
		envelope_set_attr(env, "envid", envid);
	}
	if (requiretls != NULL) {
		if (strcmp(requiretls, "1") != 0) {
			snprintf(why, whysize, "invalid requiretls: expected 1");
			return -1;
		}
		envelope_set_attr(env, "requiretls", "1");
	}
	if (tls_required != NULL) {
		if (strcmp(tls_required, "no") != 0) {
			snprintf(why, whysize, "invalid tls_required: expected no");
			return -1;
		}
		envelope_set_attr(env, "tls_required", "no");
	}
	return 0;
}

int
commit_dsn_apply(struct envelope *env, const struct ipc_msg *request, char *why,
    size_t whysize)
{
	size_t rcpt_index = 0;

	if (apply_message_fields(env, request, why, whysize) < 0)
		return -1;

	/* Each notify belongs to the rcpt before it, as each orcpt does. */
	for (size_t i = 0; i < request->nfields; i++) {
		const struct ipc_field *field = &request->fields[i];
		struct envelope_rcpt *rcpt;

		if (strcmp(field->key, "rcpt") == 0) {
			rcpt_index++;
			continue;
		}
		if (strcmp(field->key, "notify") != 0)
			continue;
		if (rcpt_index == 0 || rcpt_index > env->nrcpts || !envelope_notify_valid(field->value)) {
			snprintf(why, whysize, "invalid notify: expected NEVER or SUCCESS, FAILURE and DELAY after a rcpt");
			return -1;
		}
		rcpt = &env->rcpts[rcpt_index - 1];
		free(rcpt->notify);
		rcpt->notify = xstrdup(field->value);
	}
	return 0;
}

int
envelope_sender_authenticated(const struct envelope *env)
{
	const char *protocol = envelope_attr(env, "protocol");

	if (envelope_attr(env, "sasl_user") != NULL || envelope_attr(env, "auth") != NULL)
		return 1;
	return protocol != NULL && strcmp(protocol, "LOCAL") == 0;
}
