/* Clients of queued_socket: message submission (NEW, COMMIT, ABORT)
 * and dispatch of admin requests (admin.c). See queue_proto.h. */
#ifndef ESTAFETA_QUEUED_SUBMISSION_H
#define ESTAFETA_QUEUED_SUBMISSION_H

/* Accept clients on LISTEN_FD (a listening Unix socket). */
void submission_start(int listen_fd);

/* Close every client; their uncommitted data files are removed. */
void submission_stop(void);

#endif
