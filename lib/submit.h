/*
 * Blocking client for submitting one message to queued (sendmail,
 * forwarding from deliverd, bounces). See queue_proto.h.
 */
#ifndef ESTAFETA_SUBMIT_H
#define ESTAFETA_SUBMIT_H

#include <stddef.h>

#include "queue_proto.h"

struct submit;
struct ipc_msg;

/* Connect and ask for a new queue file. NULL with ERR filled on failure. */
struct submit *submit_begin(const char *socket_path, char *err, size_t errsize);

/* Ask for a new queue file on SOCK, a connection to queued_socket made
 * earlier: queued identifies the client by the credentials it connected
 * with. Takes SOCK, which is closed with the submission. NULL with ERR
 * filled on failure. */
struct submit *submit_begin_socket(int sock, char *err, size_t errsize);

const char *submit_queue_id(const struct submit *s);

/* Append message bytes (LF line ends). 0 or -1. */
int submit_write(struct submit *s, const void *buf, size_t len);

/*
 * Commit with ENVELOPE (type COMMIT; the caller adds sender, rcpt and the
 * optional fields, submit adds id and size). Returns 0 once queued
 * reported the message durable, -1 with ERR filled otherwise, or -2
 * with ERR filled when queued marked the failure permanent (filterd
 * rejected a local submission). Frees S.
 */
int submit_commit(struct submit *s, struct ipc_msg *envelope, char *err, size_t errsize);

/* Give up: the queue file is removed. Frees S. */
void submit_abort(struct submit *s);

#endif
