/* Envelope files: format, parsing and per-recipient state. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "envelope.h"
#include "util.h"

static const char *const status_names[] = {
	[RCPT_PENDING] = "pending",
	[RCPT_DEFERRED] = "deferred",
	[RCPT_SENT] = "sent",
	[RCPT_FAILED] = "failed",
	[RCPT_BOUNCED] = "bounced",
};

const char *
envelope_status_name(enum rcpt_status status)
{
	return status_names[status];
}

static const char *const notify_names[] = {
	[DSN_NOTIFY_SUCCESS] = "SUCCESS",
	[DSN_NOTIFY_FAILURE] = "FAILURE",
	[DSN_NOTIFY_DELAY] = "DELAY",
};

int
envelope_notify_valid(const char *text)
{
	char copy[64], *save = NULL;
	unsigned seen = 0;

	if (strcmp(text, "NEVER") == 0)
		return 1;
	if (*text == '\0' || strlen(text) >= sizeof copy || strstr(text, ",,") != NULL ||
	    text[0] == ',' || text[strlen(text) - 1] == ',')
		return 0;
	strlcpy_x(copy, text, sizeof copy);
	for (char *word = strtok_r(copy, ",", &save); word != NULL;
	    word = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof notify_names / sizeof notify_names[0]; i++)
			if (strcmp(word, notify_names[i]) == 0)
				break;
		if (i == sizeof notify_names / sizeof notify_names[0] || (seen & (1u << i)))
			return 0;
		seen |= 1u << i;
	}
	return 1;
}

int
envelope_rcpt_wants(const struct envelope_rcpt *rcpt, enum dsn_notify kind)
{
	char copy[64], *save = NULL;

	if (rcpt->notify == NULL)
		return kind != DSN_NOTIFY_SUCCESS;
	strlcpy_x(copy, rcpt->notify, sizeof copy);
	for (char *word = strtok_r(copy, ",", &save); word != NULL;
	    word = strtok_r(NULL, ",", &save))
		if (strcmp(word, notify_names[kind]) == 0)
			return 1;
	return 0;
}

static int
envelope_status_parse(const char *name, enum rcpt_status *out)
{
	for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++) {
		if (strcmp(status_names[i], name) == 0) {
			*out = (enum rcpt_status)i;
			return 0;
		}
	}
	return -1;
}

unsigned long
envelope_crc(unsigned long crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	/* zlib takes at most UINT_MAX bytes per call. */
	while (len > 0) {
		uInt chunk = len > UINT_MAX ? UINT_MAX : (uInt)len;

		crc = crc32(crc, p, chunk);
		p += chunk;
		len -= chunk;
	}
	return crc;
}

struct envelope *
envelope_new(const char *id, const char *sender)
{
	struct envelope *env = xcalloc(1, sizeof *env);

	strlcpy_x(env->id, id, sizeof env->id);
	env->sender = xstrdup(sender);
	return env;
}

void
envelope_free(struct envelope *env)
{
	if (env == NULL)
		return;
	for (size_t i = 0; i < env->nattrs; i++) {
		free(env->attrs[i].key);
		free(env->attrs[i].value);
	}
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].address);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].notify);
		free(env->rcpts[i].dsn);
		free(env->rcpts[i].reason);
		free(env->rcpts[i].remote_mta);
		free(env->rcpts[i].reply_command);
	}
	free(env->attrs);
	free(env->rcpts);
	free(env->sender);
	free(env);
}

struct envelope_rcpt *
envelope_add_rcpt(struct envelope *env, const char *address)
{
	struct envelope_rcpt *rcpt;

	env->rcpts = xrealloc(env->rcpts, (env->nrcpts + 1) * sizeof *env->rcpts);
	rcpt = &env->rcpts[env->nrcpts++];
	memset(rcpt, 0, sizeof *rcpt);
	rcpt->address = xstrdup(address);
	rcpt->status = RCPT_PENDING;
	return rcpt;
}

const char *
envelope_attr(const struct envelope *env, const char *key)
{
	for (size_t i = 0; i < env->nattrs; i++)
		if (strcmp(env->attrs[i].key, key) == 0)
			return env->attrs[i].value;
	return NULL;
}

void
envelope_set_attr(struct envelope *env, const char *key, const char *value)
{
	for (size_t i = 0; i < env->nattrs; i++) {
		if (strcmp(env->attrs[i].key, key) == 0) {
			free(env->attrs[i].value);
			env->attrs[i].value = xstrdup(value);
			return;
		}
	}
	env->attrs = xrealloc(env->attrs, (env->nattrs + 1) * sizeof *env->attrs);
	env->attrs[env->nattrs].key = xstrdup(key);
	env->attrs[env->nattrs].value = xstrdup(value);
	env->nattrs++;
}

/* Return the length of the valid UTF-8 sequence at P (of at most LEFT
 * bytes), 0 when it is invalid, and store its code point in CP. */
static size_t
utf8_sequence(const unsigned char *p, size_t left, unsigned *cp)
{
	size_t len;
	unsigned min;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2, min = 0x80, *cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3, min = 0x800, *cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4, min = 0x10000, *cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (len > left)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (p[i] & 0x3f);
	}
	if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return len;
}

/* Whether code point CP changes how a terminal shows the text that
 * follows: C1 controls (U+0080..U+009F, U+009B is CSI), the line and
 * paragraph separators and the bidirectional formatting characters. */
static int
is_terminal_control(unsigned cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
	    (cp >= 0x200e && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069);
}

char *
envelope_clean_text(const char *text, size_t max, int keep_utf8)
{
	const unsigned char *in = (const unsigned char *)text;
	size_t len = strlen(text), used = 0;
	char *out;

	if (len > max)
		len = max;
	out = xmalloc(len + 1);
	for (size_t i = 0; i < len;) {
		unsigned char c = in[i];
		unsigned cp;
		size_t n;

		if (c < 0x80) {
			out[used++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
			i++;
			continue;
		}

		/* Valid UTF-8 stays when KEEP_UTF8 is set, except the
		 * controls; an invalid byte becomes "?". */
		n = keep_utf8 ? utf8_sequence(in + i, len - i, &cp) : 0;
		if (n == 0) {
			out[used++] = '?';
			i++;
		} else if (is_terminal_control(cp)) {
			out[used++] = ' ';
			i += n;
		} else {
			memcpy(out + used, in + i, n);
			used += n;
			i += n;
		}
	}
	out[used] = '\0';
	return out;
}

int
envelope_quarantined(const struct envelope *env)
{
	const char *value = envelope_attr(env, "quarantine");

	return value != NULL && strcmp(value, "1") == 0;
}

void
envelope_rcpt_set(struct envelope_rcpt *rcpt, enum rcpt_status status,
    const char *dsn, const char *reason)
{
	/* Copy first: DSN or REASON may be the recipient's current value. */
	char *new_dsn = dsn != NULL ? envelope_clean_text(dsn, 16, 0) : NULL;
	char *new_reason = reason != NULL ? envelope_clean_text(reason, ENVELOPE_REASON_MAX, 1) : NULL;

	rcpt->status = status;
	free(rcpt->dsn);
	rcpt->dsn = new_dsn;
	free(rcpt->reason);
	rcpt->reason = new_reason;
	free(rcpt->remote_mta);
	rcpt->remote_mta = NULL;
	free(rcpt->reply_command);
	rcpt->reply_command = NULL;
}

void
envelope_rcpt_set_remote(struct envelope_rcpt *rcpt, const char *remote_mta,
    const char *command)
{
	char *new_mta = envelope_clean_text(remote_mta, 300, 0);
	char *new_command = envelope_clean_text(command, 20, 0);

	free(rcpt->remote_mta);
	rcpt->remote_mta = new_mta;
	free(rcpt->reply_command);
	rcpt->reply_command = new_command;
}

void
envelope_rcpt_expire(struct envelope_rcpt *rcpt)
{
	char *remote_mta = rcpt->remote_mta, *command = rcpt->reply_command;
	char *reason = xasprintf(ENVELOPE_EXPIRED_PREFIX "%s",
	    rcpt->reason != NULL ? rcpt->reason : "none");

	/* envelope_rcpt_set frees them, so take them first. */
	rcpt->remote_mta = NULL;
	rcpt->reply_command = NULL;
	envelope_rcpt_set(rcpt, RCPT_FAILED,
	    rcpt->dsn != NULL && rcpt->dsn[0] == '4' ? rcpt->dsn : "4.4.7", reason);
	rcpt->remote_mta = remote_mta;
	rcpt->reply_command = command;
	free(reason);
}

void
envelope_rcpt_relayed(struct envelope_rcpt *rcpt, int server_dsn)
{
	if (server_dsn)
		rcpt->success_reported = 1;
	else
		rcpt->relayed = 1;
}

size_t
envelope_count(const struct envelope *env, enum rcpt_status status)
{
	size_t n = 0;

	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == status)
			n++;
	return n;
}

static void
append_field(FILE *fp, const char *key, const char *value)
{
	fprintf(fp, "%s=%s\n", key, value);
}

char *
envelope_format(const struct envelope *env, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *fp = open_memstream(&buf, &size);

	if (fp == NULL)
		abort();
	fprintf(fp, "version=%d\n", ENVELOPE_VERSION);
	append_field(fp, "id", env->id);
	fprintf(fp, "arrival=%lld.%06lld\n", env->arrival_usec / 1000000,
	    env->arrival_usec % 1000000);
	fprintf(fp, "size=%lld\n", env->size);
	append_field(fp, "sender", env->sender);
	fprintf(fp, "attempts=%d\n", env->attempts);
	fprintf(fp, "next_attempt=%lld\n", env->next_attempt);
	fprintf(fp, "seq=%lld\n", env->seq);
	if (env->have_data_crc)
		fprintf(fp, "data_crc=%08lX\n", env->data_crc);
	if (env->data_synced)
		fputs("data_synced=1\n", fp);
	for (size_t i = 0; i < env->nattrs; i++)
		append_field(fp, env->attrs[i].key, env->attrs[i].value);

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct envelope_rcpt *rcpt = &env->rcpts[i];

		append_field(fp, "rcpt", rcpt->address);
		if (rcpt->orcpt != NULL)
			append_field(fp, "orcpt", rcpt->orcpt);
		if (rcpt->notify != NULL)
			append_field(fp, "notify", rcpt->notify);
		if (rcpt->success_reported)
			append_field(fp, "success_reported", "1");
		if (rcpt->relayed)
			append_field(fp, "relayed", "1");
		append_field(fp, "status", envelope_status_name(rcpt->status));
		if (rcpt->dsn != NULL)
			append_field(fp, "dsn", rcpt->dsn);
		if (rcpt->reason != NULL)
			append_field(fp, "reason", rcpt->reason);
		if (rcpt->remote_mta != NULL)
			append_field(fp, "remote_mta", rcpt->remote_mta);
		if (rcpt->reply_command != NULL)
			append_field(fp, "reply_command", rcpt->reply_command);
	}
	if (fflush(fp) != 0)
		abort();
	fprintf(fp, "crc=%08lX\n", envelope_crc(0, buf, size));
	fputs("end=1\n", fp);
	fclose(fp);
	*len = size;
	return buf;
}

static int
parse_number(const char *text, long long *out)
{
	char *end;

	if (*text == '\0')
		return -1;
	errno = 0;
	*out = strtoll(text, &end, 10);
	return (*end != '\0' || errno != 0) ? -1 : 0;
}

/* Eight hex digits. */
static int
parse_crc(const char *text, unsigned long *out)
{
	char *end;

	if (strlen(text) != 8)
		return -1;
	errno = 0;
	*out = strtoul(text, &end, 16);
	return (*end != '\0' || errno != 0) ? -1 : 0;
}

/* The crc line at LINE_START: the CRC-32 of all of TEXT before it. */
static int
check_crc(const char *text, const char *line_start, const char *value)
{
	unsigned long crc;

	if (parse_crc(value, &crc) < 0)
		return -1;
	return crc == envelope_crc(0, text, (size_t)(line_start - text)) ? 0 : -1;
}

/* "SECONDS.MICROSECONDS" (or plain seconds) into microseconds. */
static int
parse_arrival(const char *text, long long *usec)
{
	char *copy = xstrdup(text);
	char *dot = strchr(copy, '.');
	long long seconds, fraction = 0;
	int rc = 0;

	if (dot != NULL) {
		*dot = '\0';
		if (strlen(dot + 1) != 6 || parse_number(dot + 1, &fraction) < 0 || fraction < 0)
			rc = -1;
	}
	if (rc == 0 && (parse_number(copy, &seconds) < 0 || seconds < 0))
		rc = -1;
	if (rc == 0)
		*usec = seconds * 1000000 + fraction;
	free(copy);
	return rc;
}

/* Apply one recipient key to the last recipient. */
static int
parse_rcpt_field(struct envelope_rcpt *rcpt, const char *key, const char *value)
{
	if (strcmp(key, "orcpt") == 0) {
		free(rcpt->orcpt);
		rcpt->orcpt = xstrdup(value);
	} else if (strcmp(key, "notify") == 0) {
		if (!envelope_notify_valid(value))
			return -1;
		free(rcpt->notify);
		rcpt->notify = xstrdup(value);
	} else if (strcmp(key, "success_reported") == 0) {
		rcpt->success_reported = strcmp(value, "1") == 0;
	} else if (strcmp(key, "relayed") == 0) {
		rcpt->relayed = strcmp(value, "1") == 0;
	} else if (strcmp(key, "status") == 0) {
		if (envelope_status_parse(value, &rcpt->status) < 0)
			return -1;
	} else if (strcmp(key, "dsn") == 0) {
		free(rcpt->dsn);
		rcpt->dsn = xstrdup(value);
	} else if (strcmp(key, "reason") == 0) {
		free(rcpt->reason);
		rcpt->reason = xstrdup(value);
	} else if (strcmp(key, "remote_mta") == 0) {
		free(rcpt->remote_mta);
		rcpt->remote_mta = xstrdup(value);
	} else if (strcmp(key, "reply_command") == 0) {
		free(rcpt->reply_command);
		rcpt->reply_command = xstrdup(value);
	} else {
		return -1;
	}
	return 0;
}

/* Apply one message key. Returns -1 with *WHY set if it is invalid. */
static int
parse_message_field(struct envelope *env, const char *key, const char *value,
    const char **why)
{
	long long number;

	if (strcmp(key, "id") == 0) {
		if (strlen(value) >= sizeof env->id) {
			*why = "queue id too long";
			return -1;
		}
		strlcpy_x(env->id, value, sizeof env->id);
	} else if (strcmp(key, "arrival") == 0) {
		if (parse_arrival(value, &env->arrival_usec) < 0) {
			*why = "invalid arrival";
			return -1;
		}
	} else if (strcmp(key, "size") == 0) {
		if (parse_number(value, &env->size) < 0 || env->size < 0) {
			*why = "invalid size";
			return -1;
		}
	} else if (strcmp(key, "sender") == 0) {
		free(env->sender);
		env->sender = xstrdup(value);
	} else if (strcmp(key, "attempts") == 0) {
		if (parse_number(value, &number) < 0 || number < 0 || number > 1000000) {
			*why = "invalid attempts";
			return -1;
		}
		env->attempts = (int)number;
	} else if (strcmp(key, "next_attempt") == 0) {
		if (parse_number(value, &env->next_attempt) < 0) {
			*why = "invalid next_attempt";
			return -1;
		}
	} else if (strcmp(key, "seq") == 0) {
		if (parse_number(value, &env->seq) < 0 || env->seq < 0) {
			*why = "invalid seq";
			return -1;
		}
	} else if (strcmp(key, "data_crc") == 0) {
		if (parse_crc(value, &env->data_crc) < 0) {
			*why = "invalid data_crc";
			return -1;
		}
		env->have_data_crc = 1;
	} else if (strcmp(key, "data_synced") == 0) {
		env->data_synced = strcmp(value, "1") == 0;
	} else {
		envelope_set_attr(env, key, value);
	}
	return 0;
}

struct envelope *
envelope_parse(const char *text, size_t len, const char **why)
{
	struct envelope *env = envelope_new("", "");
	const char *p = text, *end = text + len, *line_start;
	int lineno = 0, complete = 0, have_sender = 0;

	*why = NULL;
	if (memchr(text, '\0', len) != NULL)
		*why = "NUL byte in envelope";
	while (p < end && *why == NULL) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line, *eq;

		if (nl == NULL) {
			*why = "last line not terminated";
			break;
		}
		line_start = p;
		line = xstrndup(p, (size_t)(nl - p));
		p = nl + 1;
		lineno++;

		eq = strchr(line, '=');
		if (eq == NULL || eq == line || complete) {
			*why = complete ? "data after the end line" : "line without key=value";
			free(line);
			break;
		}
		*eq = '\0';
		const char *key = line, *value = eq + 1;

		if (lineno == 1) {
			if (strcmp(key, "version") != 0 || strcmp(value, "1") != 0)
				*why = "unsupported envelope version";
		} else if (strcmp(key, "end") == 0) {
			complete = 1;
		} else if (strcmp(key, "crc") == 0) {
			if (check_crc(text, line_start, value) < 0)
				*why = "checksum mismatch";
			env->checksummed = 1;
		} else if (strcmp(key, "rcpt") == 0) {
			envelope_add_rcpt(env, value);
		} else if (env->nrcpts > 0) {
			if (parse_rcpt_field(&env->rcpts[env->nrcpts - 1], key, value) < 0)
				*why = "invalid recipient field";
		} else {
			if (strcmp(key, "sender") == 0)
				have_sender = 1;
			parse_message_field(env, key, value, why);
		}
		free(line);
	}

	if (*why == NULL && !complete)
		*why = "truncated (no end line)";
	if (*why == NULL && (env->id[0] == '\0' || !have_sender || env->nrcpts == 0))
		*why = "id, sender or recipients missing";
	if (*why != NULL) {
		envelope_free(env);
		return NULL;
	}
	return env;
}
