/*
 * A request from smtpd (lib/filter_proto.h): decode it into a struct
 * filter_message, run the chain, and encode the struct filter_result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "filter_proto.h"
#include "ipc.h"
#include "log.h"
#include "request.h"
#include "util.h"

static const char *const action_words[] = {
	[FILTER_ACCEPT] = FILTER_ACTION_ACCEPT,
	[FILTER_QUARANTINE] = FILTER_ACTION_QUARANTINE,
	[FILTER_DISCARD] = FILTER_ACTION_DISCARD,
	[FILTER_TEMPFAIL] = FILTER_ACTION_TEMPFAIL,
	[FILTER_REJECT] = FILTER_ACTION_REJECT,
};

static struct ipc_msg *
request_error(const char *error)
{
	struct ipc_msg *reply = ipc_msg_new(FILTER_REPLY_ERROR);

	log_warn("invalid request from smtpd: %s", error);
	ipc_msg_add(reply, FILTER_KEY_ERROR, error);
	return reply;
}

static const char *
get_or_empty(const struct ipc_msg *request, const char *key)
{
	const char *value = ipc_msg_get(request, key);

	return value != NULL ? value : "";
}

/*
 * Fill MSG from REQUEST; RECIPIENTS receives the NULL-terminated list
 * that MSG points to (free the array only). Returns NULL, or what is
 * wrong with the request.
 */
static const char *
request_decode(struct ipc_msg *request, enum filter_stage stage, struct filter_message *msg,
    char ***recipients)
{
	size_t nrcpt = ipc_msg_count(request, FILTER_KEY_RCPT);

	if (ipc_msg_get(request, FILTER_KEY_CLIENT_ADDR) == NULL)
		return "client_addr missing";
	if (ipc_msg_get(request, FILTER_KEY_SENDER) == NULL)
		return "sender missing";

	msg->queue_id = get_or_empty(request, FILTER_KEY_QUEUE_ID);
	msg->client_address = get_or_empty(request, FILTER_KEY_CLIENT_ADDR);
	msg->client_name = get_or_empty(request, FILTER_KEY_CLIENT_NAME);
	if (msg->client_name[0] == '\0')
		msg->client_name = "unknown";
	msg->helo = get_or_empty(request, FILTER_KEY_HELO);
	msg->sender = get_or_empty(request, FILTER_KEY_SENDER);
	msg->auth_user = get_or_empty(request, FILTER_KEY_AUTH_USER);
	msg->mynetworks = ipc_msg_get_int(request, FILTER_KEY_MYNETWORKS, 0) == 1;
	msg->forward = ipc_msg_get_int(request, FILTER_KEY_FORWARD, 0) == 1;
	msg->outbound = msg->auth_user[0] != '\0' || msg->mynetworks;
	msg->spf_result = get_or_empty(request, FILTER_KEY_SPF_RESULT);
	msg->spf_domain = get_or_empty(request, FILTER_KEY_SPF_DOMAIN);
	msg->fd = -1;

	*recipients = xcalloc(nrcpt + 1, sizeof **recipients);
	for (size_t i = 0; i < nrcpt; i++)
		(*recipients)[i] = (char *)ipc_msg_get_nth(request, FILTER_KEY_RCPT, i);
	msg->recipients = *recipients;

	if (stage == FILTER_STAGE_MAIL)
		return NULL;

	if (msg->queue_id[0] == '\0')
		return "queue_id missing";
	if (nrcpt == 0)
		return "no rcpt";
	msg->size = (off_t)ipc_msg_get_int(request, FILTER_KEY_SIZE, -1);
	if (msg->size < 0)
		return "size missing or invalid";
	if (request->fd < 0)
		return "no spool file descriptor attached";
	msg->fd = request->fd;
	return NULL;
}

/*
 * Add FIELD ("Name: value", folded lines separated by LF) as one
 * FILTER_KEY_FIELD entry per line. A field whose continuation lines do
 * not start with a space or tab, or that contains CR, would corrupt the
 * header section: it is left out and logged.
 */
static void
reply_add_field(struct ipc_msg *reply, const char *id, const char *field)
{
	const char *colon = strchr(field, ':');

	if (colon == NULL || colon == field || strchr(field, '\r') != NULL)
		goto invalid;
	for (const char *lf = strchr(field, '\n'); lf != NULL; lf = strchr(lf + 1, '\n'))
		if (lf[1] != ' ' && lf[1] != '\t')
			goto invalid;

	for (const char *line = field;;) {
		const char *lf = strchr(line, '\n');
		char *copy = xstrndup(line, lf != NULL ? (size_t)(lf - line) : strlen(line));

		ipc_msg_add(reply, FILTER_KEY_FIELD, copy);
		free(copy);
		if (lf == NULL)
			break;
		line = lf + 1;
	}
	return;

invalid:
	log_error("%s: a check returned an invalid header field; leaving it out", id);
}

static void
reply_encode(struct ipc_msg *reply, const struct filter_message *msg,
    const struct filter_result *result)
{
	ipc_msg_add(reply, FILTER_KEY_ACTION, action_words[result->action]);
	if (result->action == FILTER_REJECT || result->action == FILTER_TEMPFAIL)
		ipc_msg_add(reply, FILTER_KEY_REPLY, result->reply);
	if (result->reason[0] != '\0')
		ipc_msg_add(reply, FILTER_KEY_REASON, result->reason);
	if (result->log[0] != '\0')
		ipc_msg_add(reply, FILTER_KEY_LOG, result->log);
	if (result->spf_result[0] != '\0') {
		ipc_msg_add(reply, FILTER_KEY_SPF_RESULT, result->spf_result);
		ipc_msg_add(reply, FILTER_KEY_SPF_DOMAIN, result->spf_domain);
	}

	for (size_t i = 0; i < result->nfields; i++)
		reply_add_field(reply, msg->queue_id, result->fields[i]);
	for (size_t i = 0; i < result->nremovals; i++)
		ipc_msg_addf(reply, FILTER_KEY_REMOVE, "%s:%u", result->removals[i].name,
		    result->removals[i].index);
	if (result->subject_prefix[0] != '\0')
		ipc_msg_add(reply, FILTER_KEY_SUBJECT_PREFIX, result->subject_prefix);
}

/* A REJECT or TEMPFAIL must carry a full SMTP reply of the right class. */
static void
result_check_reply(struct filter_result *result)
{
	const char *expected = result->action == FILTER_REJECT ? "5" : "4";

	if (result->action != FILTER_REJECT && result->action != FILTER_TEMPFAIL)
		return;
	if (strncmp(result->reply, expected, 1) == 0 && strlen(result->reply) >= 4 &&
	    strpbrk(result->reply, "\r\n") == NULL)
		return;
	snprintf(result->reply, sizeof result->reply, "%s",
	    result->action == FILTER_REJECT ? "554 5.7.1 Error: message rejected by the filter"
					    : "451 4.7.0 Error: temporary filter failure, try again later");
}

static void
request_log(enum filter_stage stage, const struct filter_message *msg,
    const struct filter_result *result)
{
	const char *id = msg->queue_id[0] != '\0' ? msg->queue_id : "NOQUEUE";
	char sender[1024];

	log_sanitize(sender, sizeof sender, msg->sender, strlen(msg->sender));
	log_info("%s: action=%s, stage=%s%s%s%s%s, client=[%s], from=<%s>", id,
	    action_words[result->action], stage == FILTER_STAGE_MAIL ? "mail" : "message",
	    result->reason[0] != '\0' ? ", reason=" : "", result->reason,
	    result->log[0] != '\0' ? ", " : "", result->log, msg->client_address, sender);
}

struct ipc_msg *
request_handle(struct ipc_msg *request)
{
	struct filter_message msg = { 0 };
	struct filter_result result = { 0 };
	struct ipc_msg *reply;
	enum filter_stage stage;
	char **recipients = NULL;
	const char *error;

	if (strcmp(request->type, FILTER_REQUEST_MAIL) == 0)
		stage = FILTER_STAGE_MAIL;
	else if (strcmp(request->type, FILTER_REQUEST_MESSAGE) == 0)
		stage = FILTER_STAGE_MESSAGE;
	else
		return request_error("unknown request type");

	error = request_decode(request, stage, &msg, &recipients);
	if (error != NULL) {
		free(recipients);
		return request_error(error);
	}

	chain_run(stage, &msg, &result);
	result_check_reply(&result);
	request_log(stage, &msg, &result);

	reply = ipc_msg_new(FILTER_REPLY_RESULT);
	reply_encode(reply, &msg, &result);
	filter_result_free(&result);
	free(recipients);
	return reply;
}
