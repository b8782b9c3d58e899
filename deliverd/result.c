/* Delivery results and the DELIVER/RESULT frames between processes. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "deliverd.h"
#include "ipc.h"
#include "log.h"
#include "util.h"

void
result_set(struct delivery_result *result, int status, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	result->status = status;
	strlcpy_x(result->dsn, dsn, sizeof result->dsn);
	va_start(ap, fmt);
	vsnprintf(result->text, sizeof result->text, fmt, ap);
	va_end(ap);

	/* The text travels in an IPC field and an LMTP reply line. */
	for (char *p = result->text; *p != '\0'; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
}

int
result_is_temporary(int status)
{
	return status == EX_TEMPFAIL || status == EX_OSERR;
}

/* Enhanced status codes and meanings of the sysexits codes, as in the table
 * of Postfix 3.7 src/global/sys_exits.c. */
static const struct {
	int code;
	const char *dsn;
	const char *meaning;
} sysexits_table[] = {
	{ EX_USAGE, "5.3.0", "command line usage error" },
	{ EX_DATAERR, "5.6.0", "data format error" },
	{ EX_NOINPUT, "5.3.0", "cannot open input" },
	{ EX_NOUSER, "5.1.1", "user unknown" },
	{ EX_NOHOST, "5.1.2", "host name unknown" },
	{ EX_UNAVAILABLE, "5.3.0", "service unavailable" },
	{ EX_SOFTWARE, "5.3.0", "internal software error" },
	{ EX_OSERR, "4.3.0", "system resource problem" },
	{ EX_OSFILE, "5.3.0", "critical OS file missing" },
	{ EX_CANTCREAT, "5.2.0", "cannot create user output file" },
	{ EX_IOERR, "5.3.0", "input/output error" },
	{ EX_TEMPFAIL, "4.3.0", "temporary failure" },
	{ EX_PROTOCOL, "5.5.0", "remote error in protocol" },
	{ EX_NOPERM, "5.7.0", "permission denied" },
	{ EX_CONFIG, "5.3.5", "local configuration error" },
};

void
result_from_exit_code(struct delivery_result *result, int code, const char *what)
{
	if (code == EX_OK) {
		result_set(result, EX_OK, "2.0.0", "delivered to %s", what);
		return;
	}
	for (size_t i = 0; i < sizeof sysexits_table / sizeof sysexits_table[0]; i++) {
		if (sysexits_table[i].code == code) {
			result_set(result, code, sysexits_table[i].dsn, "%s: exit status %d (%s)",
			    what, code, sysexits_table[i].meaning);
			return;
		}
	}
	result_set(result, EX_UNAVAILABLE, "5.3.0", "%s: exit status %d", what, code);
}

void
result_merge(struct delivery_result *combined, const struct delivery_result *one)
{
	int combined_rank = combined->status == EX_OK ? 0 :
	    result_is_temporary(combined->status) ? 2 : 1;
	int one_rank = one->status == EX_OK ? 0 : result_is_temporary(one->status) ? 2 : 1;

	if (one_rank > combined_rank)
		*combined = *one;
}

struct ipc_msg *
result_to_msg(const struct delivery_result *result, long id)
{
	struct ipc_msg *msg = ipc_msg_new("RESULT");

	ipc_msg_addf(msg, "id", "%ld", id);
	ipc_msg_addf(msg, "status", "%d", result->status);
	ipc_msg_add(msg, "dsn", result->dsn);
	ipc_msg_add(msg, "text", result->text);
	return msg;
}

void
result_from_msg(struct delivery_result *result, const struct ipc_msg *msg)
{
	const char *dsn = ipc_msg_get(msg, "dsn");
	const char *text = ipc_msg_get(msg, "text");
	long long status = ipc_msg_get_int(msg, "status", EX_TEMPFAIL);

	if (dsn == NULL || (dsn[0] != '2' && dsn[0] != '4' && dsn[0] != '5')) {
		result_set(result, EX_TEMPFAIL, "4.3.0", "invalid result from the delivery process");
		return;
	}
	result_set(result, (int)status, dsn, "%s", text != NULL ? text : "");
}

static int
field_is_yes(const struct ipc_msg *msg, const char *key)
{
	const char *value = ipc_msg_get(msg, key);

	return value != NULL && strcmp(value, "yes") == 0;
}

static const char *
field_or_empty(const struct ipc_msg *msg, const char *key)
{
	const char *value = ipc_msg_get(msg, key);

	return value != NULL ? value : "";
}

int
request_from_msg(struct delivery_request *request, const struct ipc_msg *msg)
{
	memset(request, 0, sizeof *request);
	request->id = (long)ipc_msg_get_int(msg, "id", -1);
	request->kind = ipc_msg_get(msg, "kind");
	request->sender = ipc_msg_get(msg, "sender");
	request->recipient = ipc_msg_get(msg, "recipient");
	if (request->id < 0 || request->kind == NULL || request->sender == NULL ||
	    request->recipient == NULL)
		return -1;

	request->session_id = field_or_empty(msg, "session");
	request->orig_recipient = field_or_empty(msg, "orig_recipient");
	request->user = field_or_empty(msg, "user");
	request->detail = field_or_empty(msg, "detail");
	request->text = field_or_empty(msg, "text");
	request->forward = field_is_yes(msg, "forward");
	request->default_privs = strcmp(field_or_empty(msg, "privs"), "default") == 0;
	request->quarantine = field_is_yes(msg, "quarantine");
	request->start_usec = ipc_msg_get_int(msg, "start", now_usec());

	if (strcmp(request->kind, "mailbox") == 0)
		return request->user[0] != '\0' ? 0 : -1;
	if (strcmp(request->kind, "command") == 0 || strcmp(request->kind, "file") == 0)
		return request->text[0] != '\0' ? 0 : -1;
	return -1;
}

void
log_delivery(const struct delivery_request *request, const struct delivery_result *result,
    const char *to)
{
	const char *status = result->status == EX_OK ? "sent" :
	    result_is_temporary(result->status) ? "deferred" : "bounced";
	double delay = (double)(now_usec() - request->start_usec) / 1e6;

	if (strcmp(to, request->orig_recipient) == 0 || request->orig_recipient[0] == '\0')
		log_info("%s: to=<%s>, relay=local, delay=%.2f, dsn=%s, status=%s (%s)",
		    request->session_id, to, delay, result->dsn, status, result->text);
	else
		log_info("%s: to=<%s>, orig_to=<%s>, relay=local, delay=%.2f, dsn=%s, status=%s (%s)",
		    request->session_id, to, request->orig_recipient, delay, result->dsn, status,
		    result->text);
}
