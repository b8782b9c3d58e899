/*
 * The ESMTP parameters of MAIL FROM (SIZE, BODY, SMTPUTF8, RET, ENVID,
 * REQUIRETLS) and RCPT TO (NOTIFY, ORCPT). Each parser sends the error
 * reply itself and returns -1 when a parameter is unknown, malformed or
 * given twice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtpd.h"
#include "util.h"

/* Bits of the MAIL parameters seen, to reject duplicates. */
enum {
	SEEN_SIZE = 0x01,
	SEEN_BODY = 0x02,
	SEEN_SMTPUTF8 = 0x04,
	SEEN_RET = 0x08,
	SEEN_ENVID = 0x10,
	SEEN_REQUIRETLS = 0x20,
};

static int
parse_size_value(const char *text, long long *out)
{
	char *end;

	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	*out = strtoll(text, &end, 10);
	if (*end != '\0' || errno != 0)
		return -1;
	return 0;
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode xtext (RFC 3461): printable ASCII except '+' and '=', and "+XX"
 * with two upper-case hex digits for any other byte. The decoded text
 * must be printable ASCII too, because it goes into envelope files and
 * report fields. Returns 0, or -1 if TEXT is invalid or its decoded form
 * does not fit in OUT.
 */
static int
xtext_decode(const char *text, char *out, size_t outsize)
{
	size_t len = 0;

	for (const char *p = text; *p != '\0'; p++) {
		int c = (unsigned char)*p;

		if (c == '+') {
			int high = hex_digit(p[1]);
			int low = high < 0 ? -1 : hex_digit(p[2]);

			if (low < 0)
				return -1;
			c = high * 16 + low;
			p += 2;
		} else if (c < '!' || c > '~' || c == '=') {
			return -1;
		}
		if (c < ' ' || c > '~' || len + 1 >= outsize)
			return -1;
		out[len++] = (char)c;
	}
	out[len] = '\0';
	return 0;
}

/* Reply 501 for a malformed value of PARAM and log it. */
static int
reject_value(struct session *s, const char *command, const char *param, const char *expected)
{
	char reply[256];

	snprintf(reply, sizeof reply, "501 5.5.4 Invalid %s parameter: %s", param, expected);
	session_log_reject(s, command, reply, NULL);
	session_reply_raw(s, reply);
	return -1;
}

static int
reject_duplicate(struct session *s, const char *command, const char *param)
{
	char reply[128];

	snprintf(reply, sizeof reply, "501 5.5.4 Duplicate %s parameter", param);
	session_log_reject(s, command, reply, NULL);
	session_reply_raw(s, reply);
	return -1;
}

static int
reject_unknown(struct session *s, const char *param)
{
	char text[64];

	log_sanitize(text, sizeof text, param, strlen(param));
	session_reply(s, "555 5.5.4 Unsupported option: %s", text);
	return -1;
}

/* Returns 1 the first time BIT is seen, 0 for a duplicate. */
static int
first_time(unsigned *seen, unsigned bit)
{
	if (*seen & bit)
		return 0;
	*seen |= bit;
	return 1;
}

static int
parse_body(struct session *s, const char *value, struct mail_params *params)
{
	if (ascii_casecmp(value, "7BIT") == 0)
		params->body = BODY_7BIT;
	else if (ascii_casecmp(value, "8BITMIME") == 0)
		params->body = BODY_8BITMIME;
	else if (ascii_casecmp(value, "BINARYMIME") == 0)
		params->body = BODY_BINARYMIME;
	else {
		session_reply(s, "501 5.5.4 Bad BODY parameter: expected 7BIT, 8BITMIME or BINARYMIME");
		return -1;
	}
	return 0;
}

static int
parse_ret(struct session *s, const char *value, struct mail_params *params)
{
	if (value != NULL && ascii_casecmp(value, "FULL") == 0)
		params->ret = DSN_RET_FULL;
	else if (value != NULL && ascii_casecmp(value, "HDRS") == 0)
		params->ret = DSN_RET_HDRS;
	else
		return reject_value(s, "MAIL", "RET", "expected FULL or HDRS");
	return 0;
}

/*
 * REQUIRETLS (RFC 8689) is advertised only on a TLS session, and a
 * message that requires TLS must not have travelled without it.
 */
static int
parse_requiretls(struct session *s, const char *value, struct mail_params *params)
{
	if (value != NULL)
		return reject_value(s, "MAIL", "REQUIRETLS", "it takes no value");
	if (!session_tls_active(s)) {
		const char *reply = "530 5.7.10 REQUIRETLS needs a TLS session";

		session_log_reject(s, "MAIL", reply, NULL);
		session_reply_raw(s, reply);
		return -1;
	}
	params->requiretls = 1;
	return 0;
}

/* Apply one MAIL parameter PARAM (with VALUE or NULL). */
static int
parse_mail_param(struct session *s, const char *param, const char *value,
    struct mail_params *params, unsigned *seen)
{
	if (ascii_casecmp(param, "SIZE") == 0) {
		if (!first_time(seen, SEEN_SIZE))
			return reject_duplicate(s, "MAIL", "SIZE");
		if (value == NULL || parse_size_value(value, &params->size) < 0) {
			session_reply(s, "501 5.5.4 Bad SIZE parameter syntax");
			return -1;
		}
	} else if (ascii_casecmp(param, "BODY") == 0 && value != NULL) {
		if (!first_time(seen, SEEN_BODY))
			return reject_duplicate(s, "MAIL", "BODY");
		return parse_body(s, value, params);
	} else if (ascii_casecmp(param, "SMTPUTF8") == 0 && value == NULL) {
		if (!first_time(seen, SEEN_SMTPUTF8))
			return reject_duplicate(s, "MAIL", "SMTPUTF8");
		params->smtputf8 = 1;
	} else if (ascii_casecmp(param, "RET") == 0) {
		if (!first_time(seen, SEEN_RET))
			return reject_duplicate(s, "MAIL", "RET");
		return parse_ret(s, value, params);
	} else if (ascii_casecmp(param, "ENVID") == 0) {
		if (!first_time(seen, SEEN_ENVID))
			return reject_duplicate(s, "MAIL", "ENVID");
		if (value == NULL || *value == '\0' || strlen(value) > DSN_ENVID_MAX ||
		    xtext_decode(value, params->envid, sizeof params->envid) < 0)
			return reject_value(s, "MAIL", "ENVID",
			    "expected xtext of printable ASCII, at most 100 characters");
	} else if (ascii_casecmp(param, "REQUIRETLS") == 0) {
		if (!first_time(seen, SEEN_REQUIRETLS))
			return reject_duplicate(s, "MAIL", "REQUIRETLS");
		return parse_requiretls(s, value, params);
	} else {
		return reject_unknown(s, param);
	}
	return 0;
}

/* Parse the MAIL parameters in ARGS ("SIZE=100 BODY=8BITMIME RET=HDRS"). */
int
mail_params_parse(struct session *s, char *args, struct mail_params *params)
{
	char *save = NULL;
	unsigned seen = 0;

	memset(params, 0, sizeof *params);
	params->size = -1;
	params->body = BODY_7BIT;
	params->ret = DSN_RET_DEFAULT;

	for (char *param = strtok_r(args, " ", &save); param != NULL;
	    param = strtok_r(NULL, " ", &save)) {
		char *value = strchr(param, '=');

		if (value != NULL)
			*value++ = '\0';
		if (parse_mail_param(s, param, value, params, &seen) < 0)
			return -1;
	}
	return 0;
}

/* Parse NOTIFY=NEVER or a comma-separated list of SUCCESS, FAILURE and
 * DELAY, each at most once and in any letter case (RFC 3461). */
static int
parse_notify(const char *value, unsigned *notify)
{
	char copy[64], *save = NULL;

	if (value == NULL || *value == '\0' || strlen(value) >= sizeof copy)
		return -1;
	strlcpy_x(copy, value, sizeof copy);
	*notify = 0;
	for (char *word = strtok_r(copy, ",", &save); word != NULL;
	    word = strtok_r(NULL, ",", &save)) {
		unsigned bit;

		if (ascii_casecmp(word, "NEVER") == 0)
			bit = DSN_NOTIFY_NEVER;
		else if (ascii_casecmp(word, "SUCCESS") == 0)
			bit = DSN_NOTIFY_SUCCESS;
		else if (ascii_casecmp(word, "FAILURE") == 0)
			bit = DSN_NOTIFY_FAILURE;
		else if (ascii_casecmp(word, "DELAY") == 0)
			bit = DSN_NOTIFY_DELAY;
		else
			return -1;
		if (*notify & bit)
			return -1;
		*notify |= bit;
	}

	/* strtok_r skips empty words, so "SUCCESS,,DELAY" and a trailing comma need this check. */
	if (strstr(value, ",,") != NULL || value[0] == ',' || value[strlen(value) - 1] == ',')
		return -1;
	if ((*notify & DSN_NOTIFY_NEVER) && *notify != DSN_NOTIFY_NEVER)
		return -1;
	return 0;
}

/*
 * Parse ORCPT=addr-type;xtext (RFC 3461). The address type is an atom,
 * normally "rfc822", and OUT gets "TYPE;" and the decoded address.
 */
static int
parse_orcpt(const char *value, char *out, size_t outsize)
{
	const char *semicolon = value != NULL ? strchr(value, ';') : NULL;
	size_t type_len;

	if (semicolon == NULL || strlen(value) > DSN_ORCPT_MAX)
		return -1;
	type_len = (size_t)(semicolon - value);
	if (type_len == 0 || type_len + 2 >= outsize)
		return -1;
	for (size_t i = 0; i < type_len; i++) {
		unsigned char c = (unsigned char)value[i];

		if (c <= ' ' || c >= 0x7f || strchr("()<>@,;:\\\".[]", c) != NULL)
			return -1;
	}
	if (semicolon[1] == '\0')
		return -1;

	memcpy(out, value, type_len + 1);
	return xtext_decode(semicolon + 1, out + type_len + 1, outsize - type_len - 1);
}

/* Parse the RCPT parameters in ARGS ("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b"). */
int
rcpt_params_parse(struct session *s, char *args, struct rcpt_params *params)
{
	char *save = NULL;
	int seen_notify = 0, seen_orcpt = 0;

	memset(params, 0, sizeof *params);
	for (char *param = strtok_r(args, " ", &save); param != NULL;
	    param = strtok_r(NULL, " ", &save)) {
		char *value = strchr(param, '=');

		if (value != NULL)
			*value++ = '\0';

		if (ascii_casecmp(param, "NOTIFY") == 0) {
			if (seen_notify++)
				return reject_duplicate(s, "RCPT", "NOTIFY");
			if (parse_notify(value, &params->notify) < 0)
				return reject_value(s, "RCPT", "NOTIFY",
				    "expected NEVER or a list of SUCCESS, FAILURE and DELAY");
		} else if (ascii_casecmp(param, "ORCPT") == 0) {
			if (seen_orcpt++)
				return reject_duplicate(s, "RCPT", "ORCPT");
			if (parse_orcpt(value, params->orcpt, sizeof params->orcpt) < 0)
				return reject_value(s, "RCPT", "ORCPT",
				    "expected addr-type;xtext, at most 500 characters");
		} else {
			return reject_unknown(s, param);
		}
	}
	return 0;
}

/* Write NOTIFY bits as the parameter value ("SUCCESS,FAILURE"), or "" for none. */
void
dsn_notify_format(unsigned notify, char *out, size_t size)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ DSN_NOTIFY_NEVER, "NEVER" }, { DSN_NOTIFY_SUCCESS, "SUCCESS" },
		{ DSN_NOTIFY_FAILURE, "FAILURE" }, { DSN_NOTIFY_DELAY, "DELAY" },
	};
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (!(notify & names[i].bit) || len >= size)
			continue;
		len += (size_t)snprintf(out + len, size - len, "%s%s", len > 0 ? "," : "",
		    names[i].name);
	}
}
