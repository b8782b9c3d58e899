/*
 * The DSN (RFC 3461) and REQUIRETLS (RFC 8689) fields of a COMMIT
 * request (queue_proto.h): ret, envid, requiretls and tls_required for
 * the message, notify after each rcpt.
 */
#ifndef ESTAFETA_QUEUED_COMMIT_DSN_H
#define ESTAFETA_QUEUED_COMMIT_DSN_H

#include <stddef.h>

struct envelope;
struct ipc_msg;

/* Check the DSN and REQUIRETLS fields of REQUEST and store them in ENV,
 * whose recipients are in the order of the rcpt fields. Returns 0, or
 * -1 with the COMMIT-FAIL reason in WHY. */
int commit_dsn_apply(struct envelope *env, const struct ipc_msg *request, char *why,
    size_t whysize);

/* Whether the sender of ENV logged in with AUTH (sasl_user or auth is
 * set) or submitted the message locally (protocol LOCAL). Only those
 * senders get a "delivered" DSN for NOTIFY=SUCCESS. */
int envelope_sender_authenticated(const struct envelope *env);

#endif
