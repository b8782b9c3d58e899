/*
 * Limits on what the clients of queued_socket may hold, so that no local
 * user can use up queued's descriptors and block mail submission:
 *
 *   queue_connection_user_limit   connections of one uid
 *   queue_uncommitted_user_limit  uncommitted queue files of one uid
 *   queue_uncommitted_limit       uncommitted queue files of all clients
 *
 * A queue file counts from NEW-OK until its COMMIT-OK or COMMIT-FAIL,
 * its ABORT or the end of its connection, because until then queued
 * keeps a descriptor of it open. The per-uid limits do not apply to
 * root, queue_user, smtpd_user or queued's own uid: smtpd keeps one
 * connection and up to one queue file per SMTP session.
 */
#ifndef ESTAFETA_QUEUED_UID_LIMITS_H
#define ESTAFETA_QUEUED_UID_LIMITS_H

#include <sys/types.h>

/* The connections and queue files of one uid. */
struct uid_usage;

/* Read the limits from the configuration. DESCRIPTOR_LIMIT is queued's
 * RLIMIT_NOFILE: queue_uncommitted_limit is lowered to fit in it. */
void uid_limits_init(long long descriptor_limit);

/* 1 if the per-uid limits do not apply to UID. */
int uid_limits_exempt(uid_t uid);

/* Count a new connection of UID. Returns its usage, or NULL if UID has
 * queue_connection_user_limit connections already. */
struct uid_usage *uid_usage_connect(uid_t uid);

/* Count the end of a connection. USAGE stays valid while it still has
 * queue files. */
void uid_usage_disconnect(struct uid_usage *usage);

/* Count a new queue file. Returns NULL, or the reason for NEW-FAIL if a
 * limit is reached. */
const char *uid_usage_take_file(struct uid_usage *usage);

/* Release a queue file counted by uid_usage_take_file, once it is
 * committed or removed. */
void uid_usage_release_file(struct uid_usage *usage);

#endif
