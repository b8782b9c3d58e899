/*
 * RFC 5321 paths and mailboxes (section 4.1.2), with the SMTPUTF8
 * extensions of RFC 6531 section 3.3: UTF-8 in atoms, quoted strings
 * and domain labels.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "util.h"

#define ADDR_MAX_LABEL 63	/* RFC 1035 2.3.4 */

/* RFC 5322 atext, the characters of a dot-string atom. */
static int
addr_is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int
addr_is_let_dig(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * Length of the well-formed UTF-8 sequence of a non-ASCII character at
 * P (at most AVAIL bytes), or 0 if it is malformed, overlong, a
 * surrogate or beyond U+10FFFF (RFC 3629 section 4).
 */
static size_t
addr_utf8_length(const unsigned char *p, size_t avail)
{
	size_t len;
	unsigned char min2 = 0x80, max2 = 0xbf;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		if (p[0] == 0xe0)
			min2 = 0xa0;
		else if (p[0] == 0xed)
			max2 = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		if (p[0] == 0xf0)
			min2 = 0x90;
		else if (p[0] == 0xf4)
			max2 = 0x8f;
	} else
		return 0;

	if (avail < len || p[1] < min2 || p[1] > max2)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/* Length of the UTF-8 character at P if FLAGS allow UTF-8, else 0. */
static size_t
addr_utf8_char(const char *p, size_t avail, int flags)
{
	if (!(flags & ADDR_ALLOW_UTF8) || (unsigned char)*p < 0x80)
		return 0;
	return addr_utf8_length((const unsigned char *)p, avail);
}

/* A dot-string: atoms separated by single dots. Returns its length or 0. */
static size_t
addr_scan_dot_string(const char *text, size_t avail, int flags)
{
	size_t i = 0, atom = 0;

	while (i < avail) {
		unsigned char c = (unsigned char)text[i];
		size_t n;

		if (addr_is_atext(c)) {
			i++;
			atom++;
		} else if ((n = addr_utf8_char(text + i, avail - i, flags)) > 0) {
			i += n;
			atom++;
		} else if (c == '.' && atom > 0) {
			i++;
			atom = 0;
		} else
			break;
	}
	if (atom == 0)
		return 0;	/* empty, or ends with a dot */
	return i;
}

/*
 * A quoted string at TEXT (which starts with '"'). Stores the content
 * without quotes and backslashes in OUT. Returns the length scanned,
 * quotes included, or 0 if malformed.
 */
static size_t
addr_scan_quoted(const char *text, size_t avail, int flags, char *out, size_t outsize)
{
	size_t i = 1, o = 0;

	while (i < avail) {
		unsigned char c = (unsigned char)text[i];
		size_t n = 1;

		if (c == '"') {
			out[o] = '\0';
			return i + 1;
		}
		if (c == '\\') {
			/* quoted-pairSMTP = %d92 %d32-126 */
			if (i + 1 >= avail || (unsigned char)text[i + 1] < 32 ||
			    (unsigned char)text[i + 1] > 126)
				return 0;
			i++;
		} else if (c >= 0x80) {
			n = addr_utf8_char(text + i, avail - i, flags);
			if (n == 0)
				return 0;
		} else if (c < 32 || c > 126)
			return 0;

		if (o + n >= outsize)
			return 0;
		memcpy(out + o, text + i, n);
		o += n;
		i += n;
	}
	return 0;	/* no closing quote */
}

/* One label: Let-dig [Ldh-str], or U-labels with SMTPUTF8. */
static size_t
addr_scan_label(const char *text, size_t avail, int flags)
{
	size_t i = 0, last_ok = 0;

	while (i < avail) {
		unsigned char c = (unsigned char)text[i];
		size_t n;

		if (addr_is_let_dig(c)) {
			i++;
			last_ok = i;
		} else if (c == '-' && i > 0) {
			i++;
		} else if ((n = addr_utf8_char(text + i, avail - i, flags)) > 0) {
			i += n;
			last_ok = i;
		} else
			break;
	}
	/* A label must not end with a hyphen. */
	if (last_ok != i)
		return 0;
	return i;
}

/* An address literal "[...]" at TEXT: IPv4 or "IPv6:" form only. */
static size_t
addr_scan_literal(const char *text, size_t avail)
{
	const char *close = memchr(text, ']', avail);
	char inner[ADDR_MAX_DOMAIN + 1];
	size_t len;
	unsigned char buf[sizeof(struct in6_addr)];

	if (close == NULL)
		return 0;
	len = (size_t)(close - text - 1);
	if (len == 0 || len >= sizeof inner)
		return 0;
	memcpy(inner, text + 1, len);
	inner[len] = '\0';

	if (ascii_ncasecmp(inner, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, inner + 5, buf) != 1)
			return 0;
	} else if (inet_pton(AF_INET, inner, buf) != 1)
		return 0;
	return len + 2;
}

/* A domain or address literal at TEXT. Returns its length or 0. */
static size_t
addr_scan_domain(const char *text, size_t avail, int flags)
{
	size_t i = 0;

	if (avail > 0 && text[0] == '[')
		return addr_scan_literal(text, avail);

	for (;;) {
		size_t n = addr_scan_label(text + i, avail - i, flags);

		if (n == 0 || n > ADDR_MAX_LABEL)
			return 0;
		i += n;
		if (i + 1 < avail && text[i] == '.' && text[i + 1] != '.') {
			i++;
			continue;
		}
		return i;
	}
}

int
addr_valid_domain(const char *domain, int flags)
{
	size_t len = strlen(domain);

	if (len == 0 || len > ADDR_MAX_DOMAIN)
		return 0;
	return addr_scan_domain(domain, len, flags) == len;
}

/* Store DOMAIN (LEN bytes) lower-cased in OUT. */
static void
addr_store_domain(struct mailaddr *out, const char *domain, size_t len)
{
	memcpy(out->domain, domain, len);
	out->domain[len] = '\0';
	ascii_lower(out->domain);
}

/*
 * A mailbox "local@domain" at TEXT (or a bare local part when FLAGS
 * allow it). Returns the length scanned or 0 with *WHY set.
 */
static size_t
addr_scan_mailbox(const char *text, size_t avail, int flags, struct mailaddr *out,
    const char **why)
{
	size_t local_len, domain_len;

	memset(out, 0, sizeof *out);
	if (avail > 0 && text[0] == '"') {
		local_len = addr_scan_quoted(text, avail, flags, out->local, sizeof out->local);
		if (local_len == 0 || out->local[0] == '\0') {
			*why = "invalid quoted local part";
			return 0;
		}
	} else {
		local_len = addr_scan_dot_string(text, avail, flags);
		if (local_len == 0) {
			*why = (avail > 0 && (unsigned char)text[0] >= 0x80 && !(flags & ADDR_ALLOW_UTF8)) ?
			    "non-ASCII address without SMTPUTF8" : "invalid local part";
			return 0;
		}
		if (local_len > ADDR_MAX_LOCAL) {
			*why = "local part longer than 64 octets";
			return 0;
		}
		memcpy(out->local, text, local_len);
		out->local[local_len] = '\0';
	}
	if (local_len > ADDR_MAX_LOCAL) {
		*why = "local part longer than 64 octets";
		return 0;
	}

	if (local_len == avail || text[local_len] != '@') {
		if (flags & ADDR_ALLOW_NO_DOMAIN)
			return local_len;
		*why = "missing domain";
		return 0;
	}

	domain_len = addr_scan_domain(text + local_len + 1, avail - local_len - 1, flags);
	if (domain_len == 0) {
		*why = (flags & ADDR_ALLOW_UTF8) || text[local_len + 1] == '[' ?
		    "invalid domain" : "invalid domain (non-ASCII needs SMTPUTF8)";
		return 0;
	}
	if (domain_len > ADDR_MAX_DOMAIN) {
		*why = "domain longer than 255 octets";
		return 0;
	}
	addr_store_domain(out, text + local_len + 1, domain_len);
	return local_len + 1 + domain_len;
}

/* A source route "@a,@b:" (RFC 5321 A-d-l). Returns its length, 0 if none, -1 if malformed. */
static long
addr_scan_source_route(const char *text, size_t avail, int flags)
{
	size_t i = 0;

	if (avail == 0 || text[0] != '@')
		return 0;
	for (;;) {
		size_t n;

		if (i >= avail || text[i] != '@')
			return -1;
		i++;
		n = addr_scan_domain(text + i, avail - i, flags);
		if (n == 0)
			return -1;
		i += n;
		if (i < avail && text[i] == ',') {
			i++;
			continue;
		}
		if (i < avail && text[i] == ':')
			return (long)(i + 1);
		return -1;
	}
}

int
addr_parse_path(const char *text, int flags, struct mailaddr *out, const char **end,
    const char **why)
{
	size_t avail = strlen(text), i = 1, n;
	long route;

	memset(out, 0, sizeof *out);
	if (avail == 0 || text[0] != '<') {
		*why = "missing '<'";
		return -1;
	}
	if (avail >= 2 && text[1] == '>') {
		if (!(flags & ADDR_ALLOW_EMPTY)) {
			*why = "null address not allowed here";
			return -1;
		}
		*end = text + 2;
		return 0;
	}

	route = addr_scan_source_route(text + i, avail - i, flags);
	if (route < 0) {
		*why = "invalid source route";
		return -1;
	}
	i += (size_t)route;

	n = addr_scan_mailbox(text + i, avail - i, flags, out, why);
	if (n == 0)
		return -1;
	i += n;
	if (i >= avail || text[i] != '>') {
		*why = (flags & ADDR_ALLOW_UTF8) || i >= avail || (unsigned char)text[i] < 0x80 ?
		    "invalid character or missing '>'" : "non-ASCII address without SMTPUTF8";
		return -1;
	}
	*end = text + i + 1;
	return 0;
}

int
addr_parse_plain(const char *text, int flags, struct mailaddr *out, const char **why)
{
	size_t avail = strlen(text), n;

	memset(out, 0, sizeof *out);
	if (avail == 0) {
		if (flags & ADDR_ALLOW_EMPTY)
			return 0;
		*why = "empty address";
		return -1;
	}
	n = addr_scan_mailbox(text, avail, flags, out, why);
	if (n == 0)
		return -1;
	if (n != avail) {
		*why = "invalid character in address";
		return -1;
	}
	return 0;
}

/* Whether LOCAL can be written as a dot-string without quotes. */
static int
addr_local_is_dot_string(const char *local)
{
	size_t len = strlen(local);

	return len > 0 && addr_scan_dot_string(local, len, ADDR_ALLOW_UTF8) == len;
}

/* Write LOCAL as a quoted string, escaping '"' and '\\'. Returns the length written. */
static size_t
addr_quote_local(const char *local, char *out, size_t outsize)
{
	size_t o = 0;

	if (outsize < 3)
		return 0;
	out[o++] = '"';
	for (const char *p = local; *p != '\0'; p++) {
		size_t need = (*p == '"' || *p == '\\') ? 2 : 1;

		if (o + need + 1 >= outsize)
			break;
		if (need == 2)
			out[o++] = '\\';
		out[o++] = *p;
	}
	out[o++] = '"';
	out[o] = '\0';
	return o;
}

char *
addr_format(const struct mailaddr *addr, char *out, size_t outsize)
{
	size_t used;

	if (outsize == 0)
		return out;
	if (addr->local[0] == '\0' || addr_local_is_dot_string(addr->local))
		used = strlcpy_x(out, addr->local, outsize);
	else
		used = addr_quote_local(addr->local, out, outsize);

	if (addr->domain[0] != '\0' && used < outsize)
		snprintf(out + used, outsize - used, "@%s", addr->domain);
	return out;
}

int
addr_is_null(const struct mailaddr *addr)
{
	return addr->local[0] == '\0' && addr->domain[0] == '\0';
}

void
addr_split_detail(const char *local, char delimiter, char *user, size_t usersize,
    char *detail, size_t detailsize)
{
	const char *split = delimiter != '\0' ? strchr(local, delimiter) : NULL;

	/* "+detail" alone has no user part, so it is not split. */
	if (split == NULL || split == local) {
		strlcpy_x(user, local, usersize);
		strlcpy_x(detail, "", detailsize);
		return;
	}

	size_t user_len = (size_t)(split - local);

	if (user_len >= usersize)
		user_len = usersize - 1;
	memcpy(user, local, user_len);
	user[user_len] = '\0';
	strlcpy_x(detail, split + 1, detailsize);
}
