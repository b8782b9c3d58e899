/* Admin requests on queued_socket: LIST, SHOW, FLUSH and DELETE. */
#ifndef ESTAFETA_QUEUED_ADMIN_H
#define ESTAFETA_QUEUED_ADMIN_H

struct client;
struct ipc_msg;

/* Handle REQUEST from CLIENT. Returns 0, or -1 if REQUEST is not an
 * admin request. */
int admin_handle(struct client *client, const struct ipc_msg *request);

#endif
