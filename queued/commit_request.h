/*
 * The envelope of a COMMIT request (queue_proto.h), checked against the
 * client's uid: only smtpd (or root) may describe an SMTP client, and
 * every other uid is recorded as its own user name.
 */
#ifndef ESTAFETA_QUEUED_COMMIT_REQUEST_H
#define ESTAFETA_QUEUED_COMMIT_REQUEST_H

#include <stddef.h>
#include <sys/types.h>

struct envelope;
struct ipc_msg;

/* 1 if UID may set every attribute: root, or the uid smtpd runs as. */
int commit_request_trusted(uid_t uid);

/* Build the envelope of message ID from REQUEST sent by UID. Returns
 * NULL with the COMMIT-FAIL reason in WHY if the request is invalid. */
struct envelope *commit_request_envelope(const struct ipc_msg *request, const char *id,
    uid_t uid, char *why, size_t whysize);

#endif
