/* Admin requests on queued_socket: LIST, SHOW, FLUSH and DELETE. */
#ifndef ESTAFETA_QUEUED_ADMIN_H
#define ESTAFETA_QUEUED_ADMIN_H

#include <sys/types.h>

struct ipc_conn;
struct ipc_msg;

/* Handle REQUEST from a peer with PEER_UID. Returns 0, or -1 if
 * REQUEST is not an admin request. */
int admin_handle(struct ipc_conn *conn, const struct ipc_msg *request, uid_t peer_uid);

#endif
