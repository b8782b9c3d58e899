/* Replies to queued_socket clients and the limit on unread replies. */
#include <string.h>

#include "client.h"
#include "ipc.h"
#include "log_repeat.h"

/* ipc_conn_pending walks the output queue, so it is only called after
 * this many more reply bytes were queued. */
#define CLIENT_OUTPUT_CHECK (64 * 1024)

/* Frame size on the wire: the 8-byte header, then "type\n" and a
 * "key=value\n" per field (ipc.h). */
static size_t
frame_size(const struct ipc_msg *msg)
{
	size_t size = 8 + strlen(msg->type) + 1;

	for (size_t i = 0; i < msg->nfields; i++)
		size += strlen(msg->fields[i].key) + 1 + strlen(msg->fields[i].value) + 1;
	return size;
}

void
client_send(struct client *client, const struct ipc_msg *msg, int fd)
{
	if (client->conn == NULL || client->dropped)
		return;
	client->unchecked_output += frame_size(msg);
	ipc_conn_send(client->conn, msg, fd);
}

void
client_send_fail(struct client *client, const char *type, const char *id, const char *reason)
{
	struct ipc_msg *reply = ipc_msg_new(type);

	if (id != NULL)
		ipc_msg_add(reply, "id", id);
	ipc_msg_add(reply, "reason", reason);
	client_send(client, reply, -1);
	ipc_msg_free(reply);
}

int
client_output_full(struct client *client)
{
	static struct log_repeat repeat;
	size_t pending;

	if (client->unchecked_output < CLIENT_OUTPUT_CHECK)
		return 0;
	client->unchecked_output = 0;
	pending = ipc_conn_pending(client->conn);
	if (pending <= CLIENT_OUTPUT_MAX)
		return 0;

	log_repeat(&repeat, LOG_REPEAT_WARN,
	    "client uid %u dropped: it does not read its replies (more than %d bytes unread)",
	    (unsigned)client->uid, CLIENT_OUTPUT_MAX);
	client->dropped = 1;
	ipc_conn_shutdown(client->conn);
	return 1;
}
