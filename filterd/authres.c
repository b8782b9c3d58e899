/*
 * The Authentication-Results check, last in the chain. It joins
 * result->authres into one field,
 *
 *	Authentication-Results: mail.example.org;
 *		spf=pass smtp.mailfrom=example.com;
 *		dkim=pass header.d=example.com header.s=sel header.b=abcdefgh
 *
 * and removes every Authentication-Results field that arrived with our
 * authserv-id, because only this host may write those (RFC 8601
 * section 5). Fields with other identifiers stay.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authres.h"
#include "config.h"
#include "dkim.h"
#include "header.h"
#include "log.h"
#include "util.h"

#define FIELD_NAME "Authentication-Results"

static const char *
authserv_id(void)
{
	const char *id = config_string("authserv_id");

	return id[0] != '\0' ? id : config_myhostname();
}

/* Skip white space and comments, nested ones included. */
static const char *
skip_cfws(const char *p, const char *end)
{
	int depth = 0;

	while (p < end) {
		if (*p == '(') {
			depth++;
		} else if (*p == ')' && depth > 0) {
			depth--;
		} else if (*p == '\\' && depth > 0 && p + 1 < end) {
			p++;
		} else if (depth == 0 && !isspace((unsigned char)*p)) {
			break;
		}
		p++;
	}
	return p;
}

/* Copy the authserv-id at the start of VALUE (a token or a quoted
 * string, after optional comments) into ID. */
static void
field_authserv_id(const char *value, size_t len, char *id, size_t size)
{
	const char *end = value + len, *p = skip_cfws(value, end);
	size_t n = 0;

	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (n + 1 < size)
				id[n++] = *p;
		}
	} else {
		for (; p < end && *p != ';' && *p != '(' && !isspace((unsigned char)*p); p++) {
			if (n + 1 < size)
				id[n++] = *p;
		}
	}
	id[n] = '\0';
}

/*
 * Remove the Authentication-Results fields of MSG's header with OUR_ID.
 * Returns 1 when there are too many to remove: filter_result_remove has
 * then rejected the message. Returns -1 with ERR set when the spool
 * file cannot be read.
 */
static int
forged_fields_remove(const struct filter_message *msg, const char *our_id,
    struct filter_result *result, char *err, size_t errsize)
{
	struct spool_header header;
	struct header_list list = { 0 };
	unsigned index = 0;
	int rc = 0;

	if (spool_header_read(msg->fd, msg->size, &header, err, errsize) < 0)
		return -1;
	spool_header_fields(&header, &list);

	for (size_t i = 0; i < list.count && rc == 0; i++) {
		const struct header_field *field = &list.fields[i];
		char id[256];

		if (field->namelen != strlen(FIELD_NAME) ||
		    ascii_ncasecmp(field->name, FIELD_NAME, field->namelen) != 0)
			continue;
		index++;
		field_authserv_id(field->value, field->valuelen, id, sizeof id);
		if (ascii_casecmp(id, our_id) != 0)
			continue;
		if (filter_result_remove(result, FIELD_NAME, index) < 0) {
			log_warn("%s: rejecting the message: too many forged %s fields to "
			    "remove (at most %d removals per message, %d fields of one name)",
			    msg->queue_id, FIELD_NAME, FILTER_MAX_REMOVALS, FILTER_MAX_REMOVAL_INDEX);
			rc = 1;
		} else {
			filter_result_log(result, "authres_removed=%u", index);
		}
	}

	header_list_free(&list);
	spool_header_free(&header);
	return rc;
}

/* The field text: our id, then each method result on a line of its own. */
static char *
field_build(const char *our_id, const struct filter_result *result)
{
	size_t len = strlen(FIELD_NAME) + strlen(our_id) + 16, used;
	char *text;

	for (size_t i = 0; i < result->nauthres; i++)
		len += strlen(result->authres[i]) + 4;
	text = xmalloc(len);

	used = (size_t)snprintf(text, len, "%s: %s;%s", FIELD_NAME, our_id,
	    result->nauthres == 0 ? " none" : "");
	for (size_t i = 0; i < result->nauthres; i++)
		used += (size_t)snprintf(text + used, len - used, "\n\t%s%s", result->authres[i],
		    i + 1 < result->nauthres ? ";" : "");
	return text;
}

int
authres_check(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	const char *our_id = authserv_id();
	char *text;
	int rc;

	/* A forged field that cannot be removed must not stay beside ours:
	 * when there are too many, the message is rejected and gets no field.
	 * A forward carries the fields this host added on arrival, after it
	 * removed the forged ones then. */
	rc = msg->forward ? 0 : forged_fields_remove(msg, our_id, result, err, errsize);
	if (rc != 0)
		return rc < 0 ? -1 : 0;

	/* Outbound mail carries no results of ours, unless a check added one. */
	if (msg->outbound && result->nauthres == 0)
		return 0;

	text = field_build(our_id, result);
	if (filter_result_field(result, "%s", text) < 0) {
		snprintf(err, errsize, "cannot add the %s field: too many fields", FIELD_NAME);
		free(text);
		return -1;
	}
	free(text);
	return 0;
}
