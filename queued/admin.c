/* Admin requests: the queue listing (mailq), SHOW, FLUSH and DELETE. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "client.h"
#include "envelope.h"
#include "ipc.h"
#include "log.h"
#include "log_repeat.h"
#include "queued.h"
#include "scheduler.h"
#include "spool.h"

/* SHOW, FLUSH and DELETE need root, the queue user or queued's own uid. */
static int
admin_allowed(uid_t uid)
{
	return uid == 0 || uid == queued_settings.queue_uid || uid == getuid();
}

static void
send_simple(struct client *client, const char *type, const char *key, const char *value)
{
	struct ipc_msg *reply = ipc_msg_new(type);

	if (key != NULL)
		ipc_msg_add(reply, key, value);
	client_send(client, reply, -1);
	ipc_msg_free(reply);
}

/* Recipient status as the protocol names it: "failed" is reported as
 * "bounced", since the notification is being queued. */
static const char *
listed_status(enum rcpt_status status)
{
	return status == RCPT_FAILED ? "bounced" : envelope_status_name(status);
}

static void
add_message_fields(struct ipc_msg *reply, const struct qmsg *msg)
{
	const struct envelope *env = msg->env;
	int deferred = msg->state == QMSG_DEFERRED;

	ipc_msg_add(reply, "id", env->id);
	ipc_msg_addf(reply, "arrival", "%lld", env->arrival_usec / 1000000);
	ipc_msg_addf(reply, "size", "%lld", env->size);
	ipc_msg_add(reply, "sender", env->sender);
	ipc_msg_add(reply, "queue", deferred ? "deferred" : "active");
	ipc_msg_addf(reply, "next_attempt", "%lld", deferred ? env->next_attempt : 0);
	ipc_msg_addf(reply, "attempts", "%d", env->attempts);
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct envelope_rcpt *rcpt = &env->rcpts[i];

		ipc_msg_add(reply, "rcpt", rcpt->address);
		ipc_msg_add(reply, "status", listed_status(rcpt->status));
		ipc_msg_add(reply, "reason", rcpt->reason != NULL ? rcpt->reason : "");
	}
}

static void
handle_list(struct client *client)
{
	struct qmsg *msg;

	TAILQ_FOREACH(msg, &scheduler_messages, all_entry) {
		struct ipc_msg *entry = ipc_msg_new("ENTRY");

		add_message_fields(entry, msg);
		client_send(client, entry, -1);
		ipc_msg_free(entry);
	}
	send_simple(client, "END", NULL, NULL);
}

static void
handle_show(struct client *client, const char *id)
{
	const struct qmsg *msg = id != NULL ? scheduler_find(id) : NULL;
	struct ipc_msg *reply;
	int fd;

	if (msg == NULL) {
		send_simple(client, "ERROR", "reason", "queue id not found");
		return;
	}
	fd = spool_open_data(&queued_spool, msg->env);
	if (fd < 0) {
		send_simple(client, "ERROR", "reason", strerror(errno));
		return;
	}

	reply = ipc_msg_new("SHOW-OK");
	add_message_fields(reply, msg);
	for (size_t i = 0; i < msg->env->nattrs; i++)
		ipc_msg_add(reply, msg->env->attrs[i].key, msg->env->attrs[i].value);
	client_send(client, reply, fd);
	ipc_msg_free(reply);
	close(fd);
}

static void
handle_flush(struct client *client, const char *id, uid_t uid)
{
	size_t count;
	struct ipc_msg *reply;

	if (id != NULL && scheduler_find(id) == NULL) {
		send_simple(client, "ERROR", "reason", "queue id not found");
		return;
	}
	count = scheduler_flush(id);
	log_info("flush requested by uid %u: %zu deferred messages rescheduled", (unsigned)uid, count);

	reply = ipc_msg_new("OK");
	ipc_msg_addf(reply, "count", "%zu", count);
	client_send(client, reply, -1);
	ipc_msg_free(reply);
}

static void
handle_delete(struct client *client, const char *id, uid_t uid)
{
	if (id == NULL || scheduler_delete(id) < 0) {
		send_simple(client, "ERROR", "reason", "queue id not found");
		return;
	}
	log_info("%s: delete requested by uid %u", id, (unsigned)uid);
	send_simple(client, "OK", NULL, NULL);
}

int
admin_handle(struct client *client, const struct ipc_msg *request)
{
	static struct log_repeat denied_repeat;
	const char *type = request->type;
	const char *id = ipc_msg_get(request, "id");

	if (strcmp(type, "LIST") == 0) {
		handle_list(client);
		return 0;
	}
	if (strcmp(type, "SHOW") != 0 && strcmp(type, "FLUSH") != 0 && strcmp(type, "DELETE") != 0)
		return -1;

	if (!admin_allowed(client->uid)) {
		log_repeat(&denied_repeat, LOG_REPEAT_WARN, "%s request from uid %u rejected: permission denied",
		    type, (unsigned)client->uid);
		send_simple(client, "ERROR", "reason", "permission denied");
		return 0;
	}
	if (strcmp(type, "SHOW") == 0)
		handle_show(client, id);
	else if (strcmp(type, "FLUSH") == 0)
		handle_flush(client, id, client->uid);
	else
		handle_delete(client, id, client->uid);
	return 0;
}
