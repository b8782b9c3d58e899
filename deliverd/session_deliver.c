/*
 * After DATA: one DELIVER request to the master per local destination,
 * one resubmission per recipient for destinations on other hosts, then
 * one reply per recipient in RCPT order (RFC 2033 section 4.2).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "deliverd.h"
#include "header.h"
#include "ipc.h"
#include "log.h"
#include "session.h"
#include "util.h"

#define HEADER_READ_MAX (1024 * 1024)	/* header bytes searched for Delivered-To */
#define DELIVERED_TO_MAX 100

/* The Delivered-To addresses of the message, lower-cased. */
struct delivered_to {
	char *addresses[DELIVERED_TO_MAX];
	size_t count;
};

static void
delivered_to_read(int fd, off_t size, struct delivered_to *out)
{
	size_t len = size < HEADER_READ_MAX ? (size_t)size : HEADER_READ_MAX;
	char *text = xmalloc(len + 1);
	struct header_list list;
	ssize_t n = pread(fd, text, len, 0);

	out->count = 0;
	if (n <= 0 || header_parse(text, (size_t)n, &list) < 0) {
		free(text);
		return;
	}
	for (size_t i = 0; i < list.count && out->count < DELIVERED_TO_MAX; i++) {
		const struct header_field *field = &list.fields[i];
		char *value, *start;
		size_t end;

		if (field->namelen != 12 || ascii_ncasecmp(field->name, "Delivered-To", 12) != 0)
			continue;
		value = header_unfold(field);
		start = value + (value[0] == '<');
		end = strlen(start);
		if (end > 0 && start[end - 1] == '>')
			start[end - 1] = '\0';
		ascii_lower(start);
		out->addresses[out->count++] = xstrdup(start);
		free(value);
	}
	header_list_free(&list);
	free(text);
}

static int
delivered_to_contains(const struct delivered_to *seen, const char *address)
{
	for (size_t i = 0; i < seen->count; i++)
		if (ascii_casecmp(seen->addresses[i], address) == 0)
			return 1;
	return 0;
}

static void
delivered_to_free(struct delivered_to *seen)
{
	for (size_t i = 0; i < seen->count; i++)
		free(seen->addresses[i]);
	seen->count = 0;
}

/* A request shell for log_delivery on destinations no worker handles. */
static void
log_session_delivery(const struct session *s, const struct recipient *rcpt,
    const char *to, const struct delivery_result *result, long long start_usec)
{
	struct delivery_request request = {
		.session_id = s->id,
		.orig_recipient = rcpt->address,
		.start_usec = start_usec,
	};

	log_delivery(&request, result, to);
}

/*
 * Merge one destination's RESULT into RCPT's single LMTP reply.
 * TODO: bounce or defer failed alias members on their own, as Postfix's
 * local(8) does. Now one member's 4xx makes the retry repeat the members
 * already delivered, and one member's 5xx bounces the whole recipient.
 */
static void
recipient_add_result(struct recipient *rcpt, const struct delivery_result *result)
{
	if (!rcpt->have_result) {
		rcpt->result = *result;
		rcpt->have_result = 1;
		return;
	}
	if (result->status == EX_OK && rcpt->result.status == EX_OK) {
		result_set(&rcpt->result, EX_OK, "2.0.0", "delivered to several destinations");
		return;
	}
	result_merge(&rcpt->result, result);
}

static struct ipc_msg *
deliver_request(const struct session *s, const struct recipient *rcpt,
    const struct target *target, long id, long long start_usec)
{
	struct ipc_msg *msg = ipc_msg_new("DELIVER");

	ipc_msg_addf(msg, "id", "%ld", id);
	ipc_msg_add(msg, "kind", target->kind == TARGET_MAILBOX ? "mailbox" :
	    target->kind == TARGET_COMMAND ? "command" : "file");
	ipc_msg_add(msg, "session", s->id);
	ipc_msg_add(msg, "sender", s->sender);
	ipc_msg_add(msg, "recipient", target->address);
	ipc_msg_add(msg, "orig_recipient", rcpt->address);
	ipc_msg_addf(msg, "start", "%lld", start_usec);
	ipc_msg_add(msg, "detail", target->detail);
	if (target->kind == TARGET_MAILBOX) {
		ipc_msg_add(msg, "user", target->user);
		ipc_msg_add(msg, "forward", target->forward ? "yes" : "no");
		if (s->quarantine)
			ipc_msg_add(msg, "quarantine", "yes");
		if (target->uid != (uid_t)-1 && target->gid != (gid_t)-1) {
			ipc_msg_addf(msg, "uid", "%u", (unsigned)target->uid);
			ipc_msg_addf(msg, "gid", "%u", (unsigned)target->gid);
		}
	} else {
		ipc_msg_add(msg, "text", target->text);
		ipc_msg_add(msg, "privs", "default");
	}
	return msg;
}

/* Resubmit the REMOTE destinations of RCPT to queued in one message. */
static void
forward_remote(struct session *s, struct recipient *rcpt, const struct message *msg,
    long long start_usec)
{
	struct target_list *targets = &rcpt->targets;
	struct delivery_result result;
	char **addresses = xcalloc(targets->count, sizeof *addresses);
	size_t count = 0;

	for (size_t i = 0; i < targets->count; i++)
		if (targets->items[i].kind == TARGET_REMOTE)
			addresses[count++] = targets->items[i].text;
	if (count > 0) {
		forward_submit(msg, addresses, count, rcpt->address, NULL, s->id, &result);
		for (size_t i = 0; i < count; i++)
			log_session_delivery(s, rcpt, addresses[i], &result, start_usec);
		recipient_add_result(rcpt, &result);
	}
	free(addresses);
}

/* Wait for PENDING results; a lost master fails them all temporarily. */
static void
collect_results(struct session *s, long *request_rcpt, size_t pending)
{
	struct delivery_result result;

	while (pending > 0) {
		struct ipc_msg *reply = ipc_recv(s->channel);
		long id;

		if (reply == NULL) {
			log_error("%s: lost the connection to the deliverd master: %s", s->id,
			    errno ? strerror(errno) : "end of file");
			s->master_lost = 1;
			result_set(&result, EX_TEMPFAIL, "4.3.0", "delivery service unavailable");
			for (long i = 0; request_rcpt[i] != -2; i++)
				if (request_rcpt[i] >= 0)
					recipient_add_result(&s->rcpts[request_rcpt[i]], &result);
			return;
		}
		id = (long)ipc_msg_get_int(reply, "id", -1);
		if (strcmp(reply->type, "RESULT") != 0 || id < 0 || request_rcpt[id] < 0) {
			log_error("%s: unexpected message %s from the deliverd master", s->id, reply->type);
			ipc_msg_free(reply);
			continue;
		}
		result_from_msg(&result, reply);
		recipient_add_result(&s->rcpts[request_rcpt[id]], &result);
		request_rcpt[id] = -1;
		pending--;
		ipc_msg_free(reply);
	}
}

/* A loop: an earlier delivery or forward of this message to ADDRESS
 * added "Delivered-To: ADDRESS", as Postfix's local(8) does. */
static void
report_loop(struct session *s, struct recipient *rcpt, const char *address,
    long long start_usec)
{
	struct delivery_result result;

	result_set(&result, EX_UNAVAILABLE, "5.4.6", "mail forwarding loop for %s", address);
	log_session_delivery(s, rcpt, address, &result, start_usec);
	recipient_add_result(rcpt, &result);
}

/* Send one DELIVER per local destination of RCPT. Returns the number of
 * requests sent; REQUEST_RCPT[id] records RCPT_INDEX for each. */
static size_t
dispatch_recipient(struct session *s, size_t rcpt_index, const struct message *msg,
    const struct delivered_to *seen, long *request_rcpt, long *next_id, long long start_usec)
{
	struct recipient *rcpt = &s->rcpts[rcpt_index];
	size_t sent = 0;

	for (size_t j = 0; j < rcpt->targets.count; j++) {
		const struct target *target = &rcpt->targets.items[j];
		struct delivery_result result;
		struct ipc_msg *request;

		if (target->kind == TARGET_REMOTE)
			continue;
		if (target->kind == TARGET_FAILED) {
			log_session_delivery(s, rcpt, target->address, &target->failure, start_usec);
			recipient_add_result(rcpt, &target->failure);
			continue;
		}
		if (delivered_to_contains(seen, target->address)) {
			report_loop(s, rcpt, target->address, start_usec);
			continue;
		}

		request = deliver_request(s, rcpt, target, *next_id, start_usec);
		if (ipc_send(s->channel, request, msg->fd) < 0) {
			log_error("%s: cannot send a delivery request to the deliverd master: %s", s->id,
			    strerror(errno));
			s->master_lost = 1;
			result_set(&result, EX_TEMPFAIL, "4.3.0", "delivery service unavailable");
			recipient_add_result(rcpt, &result);
		} else {
			request_rcpt[*next_id] = (long)rcpt_index;
			sent++;
		}
		ipc_msg_free(request);
		(*next_id)++;
	}

	if (delivered_to_contains(seen, rcpt->address)) {
		for (size_t j = 0; j < rcpt->targets.count; j++)
			if (rcpt->targets.items[j].kind == TARGET_REMOTE) {
				report_loop(s, rcpt, rcpt->address, start_usec);
				break;
			}
	} else {
		forward_remote(s, rcpt, msg, start_usec);
	}
	return sent;
}

void
session_deliver(struct session *s, int fd, off_t size)
{
	struct message msg = { .fd = fd, .size = size, .sender = s->sender };
	struct delivered_to seen;
	long long start_usec = now_usec();
	size_t total = 0, pending = 0;
	long *request_rcpt, next_id = 0;

	log_info("%s: from=<%s>, size=%lld, nrcpt=%zu%s (LMTP)", s->id, s->sender, (long long)size,
	    s->nrcpts, s->quarantine ? ", quarantine=yes" : "");
	delivered_to_read(fd, size, &seen);

	/* request_rcpt[id] is the recipient index of request ID until its
	 * result arrives, -1 otherwise; -2 marks the end of the array. */
	for (size_t i = 0; i < s->nrcpts; i++)
		total += s->rcpts[i].targets.count;
	request_rcpt = xcalloc(total + 1, sizeof *request_rcpt);
	for (size_t i = 0; i < total; i++)
		request_rcpt[i] = -1;
	request_rcpt[total] = -2;

	for (size_t i = 0; i < s->nrcpts; i++)
		pending += dispatch_recipient(s, i, &msg, &seen, request_rcpt, &next_id, start_usec);
	collect_results(s, request_rcpt, pending);

	for (size_t i = 0; i < s->nrcpts; i++) {
		struct recipient *rcpt = &s->rcpts[i];

		if (!rcpt->have_result)
			result_set(&rcpt->result, EX_TEMPFAIL, "4.3.0", "no delivery result");
		session_reply(s, session_reply_code(&rcpt->result), "%s <%s> %s", rcpt->result.dsn,
		    rcpt->address, rcpt->result.text);
	}
	free(request_rcpt);
	delivered_to_free(&seen);
}
