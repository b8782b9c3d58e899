/*
 * MTA-STS record and policy parsing (RFC 8461 sections 3.1, 3.2, 4.1).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta_sts.h"
#include "util.h"

/* Maximum number of mx lines in one policy; this limit is our own, not the RFC's. */
#define MX_MAX	100

const char *
mta_sts_mode_name(enum mta_sts_mode mode)
{
	switch (mode) {
	case MTA_STS_MODE_ENFORCE:
		return "enforce";
	case MTA_STS_MODE_TESTING:
		return "testing";
	default:
		return "none";
	}
}

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* sts-id = 1*32(ALPHA / DIGIT) */
static int
valid_id(const char *value, size_t length)
{
	if (length == 0 || length >= MTA_STS_ID_SIZE)
		return 0;
	for (size_t i = 0; i < length; i++) {
		if (!isalnum((unsigned char)value[i]))
			return 0;
	}
	return 1;
}

/* An extension name: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".") */
static int
valid_extension_name(const char *name, size_t length)
{
	if (length == 0 || length > 32 || !isalnum((unsigned char)name[0]))
		return 0;
	for (size_t i = 1; i < length; i++) {
		if (!isalnum((unsigned char)name[i]) && strchr("_-.", name[i]) == NULL)
			return 0;
	}
	return 1;
}

/* An extension value: 1*(%x21-3A / %x3C / %x3E-7E), so no ';' and no '='. */
static int
valid_extension_value(const char *value, size_t length)
{
	if (length == 0)
		return 0;
	for (size_t i = 0; i < length; i++) {
		unsigned char c = (unsigned char)value[i];

		if (c < 0x21 || c > 0x7e || c == ';' || c == '=')
			return 0;
	}
	return 1;
}

int
mta_sts_txt_parse(const char *txt, size_t length, char id[MTA_STS_ID_SIZE], char *err,
    size_t errsize)
{
	const char *p = txt, *end = txt + length;
	int have_id = 0;

	/* Section 3.1: records that do not begin with "v=STSv1;" are ignored. */
	if (length < 7 || memcmp(txt, "v=STSv1", 7) != 0)
		return 0;
	if (length > 7 && txt[7] != ';' && !is_wsp(txt[7]))
		return 0;
	p += 7;

	/* Fields: *WSP ";" *WSP name "=" value, with an optional final ";". */
	while (p < end) {
		const char *name, *equals, *value;
		size_t name_length, value_length;

		while (p < end && is_wsp(*p))
			p++;
		if (p == end)
			break;
		if (*p != ';') {
			snprintf(err, errsize, "expected ';' at offset %zu", (size_t)(p - txt));
			return -1;
		}
		p++;
		while (p < end && is_wsp(*p))
			p++;
		if (p == end)
			break;

		name = p;
		equals = memchr(p, '=', (size_t)(end - p));
		if (equals == NULL) {
			snprintf(err, errsize, "field without '=' at offset %zu", (size_t)(name - txt));
			return -1;
		}
		name_length = (size_t)(equals - name);
		value = equals + 1;
		for (p = value; p < end && *p != ';' && !is_wsp(*p); p++)
			;
		value_length = (size_t)(p - value);

		if (name_length == 2 && memcmp(name, "id", 2) == 0) {
			if (!valid_id(value, value_length)) {
				snprintf(err, errsize, "invalid id: expected 1 to 32 letters or digits");
				return -1;
			}
			if (!have_id) {
				memcpy(id, value, value_length);
				id[value_length] = '\0';
				have_id = 1;
			}
		} else if (!valid_extension_name(name, name_length) ||
		    !valid_extension_value(value, value_length)) {
			snprintf(err, errsize, "invalid field at offset %zu", (size_t)(name - txt));
			return -1;
		}
	}
	if (!have_id) {
		snprintf(err, errsize, "no id field");
		return -1;
	}
	return 1;
}

/* A host name, or one with a leading "*.": LDH labels of 1 to 63 bytes. */
static int
valid_mx_pattern(const char *value)
{
	const char *p = value;
	size_t total = strlen(value);

	if (strncmp(p, "*.", 2) == 0)
		p += 2;
	if (total == 0 || total > 253)
		return 0;
	while (*p != '\0') {
		size_t label = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-");

		if (label == 0 || label > 63 || p[0] == '-' || p[label - 1] == '-')
			return 0;
		p += label;
		if (*p == '.' && p[1] != '\0')
			p++;
		else if (*p != '\0')
			return 0;
	}
	return 1;
}

static void
policy_add_mx(struct mta_sts_policy *policy, const char *value)
{
	policy->mx = xrealloc(policy->mx, (policy->mx_count + 1) * sizeof *policy->mx);
	policy->mx[policy->mx_count++] = xstrdup(value);
}

/* Parse one "key: value" line into POLICY. SEEN marks the fields already
 * given (bit 0 version, 1 mode, 2 max_age). */
static int
policy_line(struct mta_sts_policy *policy, char *line, unsigned *seen, char *err,
    size_t errsize)
{
	char *colon = strchr(line, ':'), *value;
	size_t value_length;

	if (colon == NULL || colon == line) {
		snprintf(err, errsize, "expected \"key: value\"");
		return -1;
	}
	*colon = '\0';
	for (value = colon + 1; is_wsp(*value); value++)
		;
	value_length = strlen(value);
	while (value_length > 0 && is_wsp(value[value_length - 1]))
		value[--value_length] = '\0';

	if (strcmp(line, "version") == 0) {
		if (*seen & 1)
			return 0;
		*seen |= 1;
		if (strcmp(value, "STSv1") != 0) {
			snprintf(err, errsize, "unsupported version \"%.32s\"", value);
			return -1;
		}
	} else if (strcmp(line, "mode") == 0) {
		if (*seen & 2)
			return 0;
		*seen |= 2;
		if (strcmp(value, "enforce") == 0)
			policy->mode = MTA_STS_MODE_ENFORCE;
		else if (strcmp(value, "testing") == 0)
			policy->mode = MTA_STS_MODE_TESTING;
		else if (strcmp(value, "none") == 0)
			policy->mode = MTA_STS_MODE_NONE;
		else {
			snprintf(err, errsize, "invalid mode \"%.32s\": expected enforce, testing or none", value);
			return -1;
		}
	} else if (strcmp(line, "max_age") == 0) {
		if (*seen & 4)
			return 0;
		*seen |= 4;
		if (value_length == 0 || value_length > 10 || strspn(value, "0123456789") != value_length) {
			snprintf(err, errsize, "invalid max_age \"%.32s\": expected 1 to 10 digits", value);
			return -1;
		}
		policy->max_age = strtol(value, NULL, 10);
		if (policy->max_age > MTA_STS_MAX_AGE_MAX)
			policy->max_age = MTA_STS_MAX_AGE_MAX;
	} else if (strcmp(line, "mx") == 0) {
		ascii_lower(value);
		if (value_length > 0 && value[value_length - 1] == '.')
			value[--value_length] = '\0';
		if (!valid_mx_pattern(value)) {
			snprintf(err, errsize, "invalid mx \"%.64s\": expected a host name or *.domain", value);
			return -1;
		}
		if (policy->mx_count >= MX_MAX) {
			snprintf(err, errsize, "more than %d mx lines", MX_MAX);
			return -1;
		}
		policy_add_mx(policy, value);
	} else if (!valid_extension_name(line, strlen(line))) {
		snprintf(err, errsize, "invalid field name \"%.32s\"", line);
		return -1;
	}
	return 0;
}

int
mta_sts_policy_parse(const char *text, size_t length, struct mta_sts_policy *policy,
    char *err, size_t errsize)
{
	const char *p = text, *end = text + length;
	unsigned seen = 0;
	int line_number = 0;
	char reason[200];

	memset(policy, 0, sizeof *policy);
	if (length > MTA_STS_POLICY_MAX) {
		snprintf(err, errsize, "policy larger than %d bytes", MTA_STS_POLICY_MAX);
		return -1;
	}
	if (memchr(text, '\0', length) != NULL) {
		snprintf(err, errsize, "policy contains a NUL byte");
		return -1;
	}

	while (p < end) {
		const char *newline = memchr(p, '\n', (size_t)(end - p));
		size_t line_length = newline != NULL ? (size_t)(newline - p) : (size_t)(end - p);
		char *line;

		line_number++;
		if (line_length > 0 && p[line_length - 1] == '\r')
			line_length--;
		line = xstrndup(p, line_length);
		p = newline != NULL ? newline + 1 : end;

		/* Empty lines are tolerated: many servers end the file with one. */
		if (line[0] != '\0' && policy_line(policy, line, &seen, reason, sizeof reason) < 0) {
			snprintf(err, errsize, "line %d: %s", line_number, reason);
			free(line);
			goto invalid;
		}
		free(line);
	}

	if ((seen & 7) != 7) {
		snprintf(err, errsize, "missing %s field",
		    !(seen & 1) ? "version" : !(seen & 2) ? "mode" : "max_age");
		goto invalid;
	}
	if (policy->mode != MTA_STS_MODE_NONE && policy->mx_count == 0) {
		snprintf(err, errsize, "no mx field in a policy with mode %s", mta_sts_mode_name(policy->mode));
		goto invalid;
	}
	return 0;

invalid:
	mta_sts_policy_free(policy);
	return -1;
}

void
mta_sts_policy_free(struct mta_sts_policy *policy)
{
	for (size_t i = 0; i < policy->mx_count; i++)
		free(policy->mx[i]);
	free(policy->mx);
	memset(policy, 0, sizeof *policy);
}

int
mta_sts_mx_match(const struct mta_sts_policy *policy, const char *host)
{
	char name[256];
	size_t length = strlen(host);

	if (length == 0 || length >= sizeof name)
		return 0;
	memcpy(name, host, length + 1);
	ascii_lower(name);
	if (name[length - 1] == '.')
		name[length - 1] = '\0';

	for (size_t i = 0; i < policy->mx_count; i++) {
		const char *pattern = policy->mx[i];
		const char *dot;

		if (strncmp(pattern, "*.", 2) != 0) {
			if (strcmp(pattern, name) == 0)
				return 1;
			continue;
		}
		dot = strchr(name, '.');
		if (dot != NULL && dot != name && strcmp(dot, pattern + 1) == 0)
			return 1;
	}
	return 0;
}
