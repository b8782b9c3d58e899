/*
 * The SPF check's part of the message: the Received-SPF: field (RFC 7208
 * section 9.1) and the spf= result for Authentication-Results (RFC 8601).
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "spf.h"

#define FIELD_TEXT_MAX 512

/* Append TEXT to OUT as the body of a comment: printable ASCII only, with
 * '(', ')' and '\' written as quoted-pairs (RFC 5322 section 3.2.2). */
static void
append_comment_text(char *out, size_t outsize, const char *text)
{
	size_t len = strlen(out);

	for (; *text != '\0' && len + 3 < outsize; text++) {
		unsigned char c = (unsigned char)*text;

		if (c < 0x20 || c >= 0x7f)
			c = '?';
		if (c == '(' || c == ')' || c == '\\')
			out[len++] = '\\';
		out[len++] = (char)c;
	}
	out[len] = '\0';
}

/* Whether TEXT is a dot-atom (RFC 5322 section 3.2.3). */
static int
is_dot_atom(const char *text)
{
	static const char specials[] = "!#$%&'*+-/=?^_`{|}~";
	int label = 0;

	if (*text == '\0')
		return 0;
	for (; *text != '\0'; text++) {
		unsigned char c = (unsigned char)*text;

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr(specials, c) != NULL) {
			label++;
		} else {
			return 0;
		}
	}
	return label > 0;
}

/* Write VALUE into OUT as a dot-atom when it is one, else as a
 * quoted-string with printable ASCII only. */
static void
format_value(char *out, size_t outsize, const char *value)
{
	size_t len = 0;

	if (is_dot_atom(value)) {
		snprintf(out, outsize, "%s", value);
		return;
	}
	out[len++] = '"';
	for (; *value != '\0' && len + 4 < outsize; value++) {
		unsigned char c = (unsigned char)*value;

		if (c < 0x20 || c >= 0x7f)
			c = '?';
		if (c == '"' || c == '\\')
			out[len++] = '\\';
		out[len++] = (char)c;
	}
	out[len++] = '"';
	out[len] = '\0';
}

/* The comment of RFC 7208 section 9.1 for RESULT, without parentheses. */
static void
format_comment(char *out, size_t outsize, const char *receiver, const char *result,
    const char *domain, const char *client)
{
	char ip[64] = "", dom[300] = "";

	append_comment_text(ip, sizeof ip, client);
	append_comment_text(dom, sizeof dom, domain[0] != '\0' ? domain : "the sender");

	if (strcmp(result, "pass") == 0)
		snprintf(out, outsize, "%s: domain of %s designates %s as permitted sender",
		    receiver, dom, ip);
	else if (strcmp(result, "fail") == 0)
		snprintf(out, outsize, "%s: domain of %s does not designate %s as permitted sender",
		    receiver, dom, ip);
	else if (strcmp(result, "softfail") == 0)
		snprintf(out, outsize,
		    "%s: domain of transitioning %s does not designate %s as permitted sender",
		    receiver, dom, ip);
	else if (strcmp(result, "neutral") == 0)
		snprintf(out, outsize, "%s: %s is neither permitted nor denied by domain of %s",
		    receiver, ip, dom);
	else if (strcmp(result, "none") == 0)
		snprintf(out, outsize, "%s: domain of %s does not designate permitted sender hosts",
		    receiver, dom);
	else if (strcmp(result, "temperror") == 0)
		snprintf(out, outsize, "%s: temporary error in processing during lookup of %s",
		    receiver, dom);
	else
		snprintf(out, outsize, "%s: permanent error in processing the SPF record of %s",
		    receiver, dom);
}

/* Whether NAME is one of the seven results of RFC 7208 section 2.6. */
static int
result_known(const char *name)
{
	static const char *const results[] = { "none", "neutral", "pass", "fail", "softfail",
		"temperror", "permerror", NULL };

	for (size_t i = 0; results[i] != NULL; i++)
		if (strcmp(name, results[i]) == 0)
			return 1;
	return 0;
}

int
spf_check_message(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	char receiver[300] = "", receiver_value[300], comment[2 * FIELD_TEXT_MAX], client[80],
	    from[FIELD_TEXT_MAX], helo[FIELD_TEXT_MAX], domain[300];
	const char *identity;

	(void)err;
	(void)errsize;
	if (msg->outbound || msg->spf_result == NULL || !result_known(msg->spf_result))
		return 0;

	identity = msg->sender[0] != '\0' ? "mailfrom" : "helo";
	append_comment_text(receiver, sizeof receiver, config_myhostname());
	format_comment(comment, sizeof comment, receiver, msg->spf_result, msg->spf_domain,
	    msg->client_address);
	format_value(receiver_value, sizeof receiver_value, config_myhostname());
	format_value(client, sizeof client, msg->client_address);
	format_value(from, sizeof from, msg->sender[0] != '\0' ? msg->sender : "<>");
	format_value(helo, sizeof helo, msg->helo);
	format_value(domain, sizeof domain, msg->spf_domain);

	filter_result_field(result,
	    "Received-SPF: %s (%s)\n\treceiver=%s; client-ip=%s; envelope-from=%s;\n\thelo=%s; identity=%s",
	    msg->spf_result, comment, receiver_value, client, from, helo, identity);

	/* RFC 8601 section 2.7.2: smtp.mailfrom or smtp.helo names the
	 * identity that was checked; without a valid domain only the result. */
	if (msg->spf_domain[0] == '\0')
		filter_result_authres(result, "spf=%s", msg->spf_result);
	else
		filter_result_authres(result, "spf=%s smtp.%s=%s", msg->spf_result, identity, domain);
	return 0;
}
