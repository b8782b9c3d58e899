/* SEARCH and UID SEARCH (RFC 3501 section 6.4.4, RFC 4731 ESEARCH). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mime.h"
#include "session.h"
#include "util.h"

#define SEARCH_DEPTH_MAX	32

enum key_kind {
	KEY_ALL, KEY_AND, KEY_OR, KEY_NOT, KEY_FLAG_SET, KEY_FLAG_UNSET, KEY_KEYWORD,
	KEY_UNKEYWORD, KEY_NEW, KEY_OLD, KEY_RECENT, KEY_SEQSET, KEY_UIDSET, KEY_LARGER,
	KEY_SMALLER, KEY_BEFORE, KEY_ON, KEY_SINCE, KEY_SENTBEFORE, KEY_SENTON, KEY_SENTSINCE,
	KEY_HEADER, KEY_BODY, KEY_TEXT,
};

struct search_key {
	enum key_kind kind;
	unsigned flag;
	char *keyword;
	char *header;		/* field name for KEY_HEADER */
	char *value;		/* string to find, UTF-8 */
	uint64_t number;
	time_t date;
	struct imap_seqset set;
	struct search_key *children;	/* AND: a list; OR, NOT: one or two */
	size_t child_count;
};

static void
key_free(struct search_key *key)
{
	for (size_t i = 0; i < key->child_count; i++)
		key_free(&key->children[i]);
	free(key->children);
	free(key->keyword);
	free(key->header);
	free(key->value);
	imap_seqset_free(&key->set);
}

static struct search_key *
add_child(struct search_key *parent)
{
	parent->children = xrealloc(parent->children,
	    (parent->child_count + 1) * sizeof *parent->children);
	memset(&parent->children[parent->child_count], 0, sizeof *parent->children);
	return &parent->children[parent->child_count++];
}

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
	"Aug", "Sep", "Oct", "Nov", "Dec" };

/* date: d-Mon-yyyy (the day in UTC midnight terms of the server's zone). */
int
imap_parse_date(const char *text, time_t *out)
{
	struct tm tm = { 0 };
	char month[4];
	int day, year;

	if (sscanf(text, "%2d-%3s-%4d", &day, month, &year) != 3)
		return -1;
	for (tm.tm_mon = 0; tm.tm_mon < 12; tm.tm_mon++)
		if (ascii_casecmp(month, months[tm.tm_mon]) == 0)
			break;
	if (tm.tm_mon == 12 || day < 1 || day > 31 || year < 1900)
		return -1;
	tm.tm_mday = day;
	tm.tm_year = year - 1900;
	tm.tm_isdst = -1;
	*out = mktime(&tm);
	return 0;
}

/* date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" */
int
imap_parse_date_time(const char *text, time_t *out)
{
	struct tm tm = { 0 };
	char month[4], sign;
	int day, year, zone;

	if (sscanf(text, "%2d-%3s-%4d %2d:%2d:%2d %c%4d", &day, month, &year, &tm.tm_hour,
	    &tm.tm_min, &tm.tm_sec, &sign, &zone) != 8 || (sign != '+' && sign != '-'))
		return -1;
	for (tm.tm_mon = 0; tm.tm_mon < 12; tm.tm_mon++)
		if (ascii_casecmp(month, months[tm.tm_mon]) == 0)
			break;
	if (tm.tm_mon == 12 || day < 1 || day > 31 || year < 1900 || tm.tm_hour > 23 ||
	    tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	tm.tm_mday = day;
	tm.tm_year = year - 1900;
	*out = timegm(&tm) - (sign == '+' ? 1 : -1) * ((zone / 100) * 3600 + (zone % 100) * 60);
	return 0;
}

/* The calendar day of WHEN in the server's zone, as midnight. */
static time_t
day_of(time_t when)
{
	struct tm tm;

	localtime_r(&when, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

struct search_context {
	struct session *s;
	int depth;
};

static int parse_key(struct search_context *ctx, struct imap_parser *parser, struct search_key *key);

static char *
parse_value(struct imap_parser *parser)
{
	return imap_parse_sp(parser) == 0 ? imap_parse_astring_dup(parser, 4096) : NULL;
}

static int
parse_date_arg(struct imap_parser *parser, time_t *out)
{
	char *text = parse_value(parser);
	int r = text != NULL ? imap_parse_date(text, out) : -1;

	free(text);
	return r;
}

static int
parse_key_list(struct search_context *ctx, struct imap_parser *parser, struct search_key *and)
{
	and->kind = KEY_AND;
	do {
		if (parse_key(ctx, parser, add_child(and)) < 0)
			return -1;
	} while (imap_parse_sp(parser) == 0);
	return 0;
}

static int
parse_key(struct search_context *ctx, struct imap_parser *parser, struct search_key *key)
{
	static const struct {
		const char *name;
		enum key_kind kind;
		unsigned flag;
	} simple[] = {
		{ "ALL", KEY_ALL, 0 }, { "NEW", KEY_NEW, 0 }, { "OLD", KEY_OLD, 0 },
		{ "RECENT", KEY_RECENT, 0 },
		{ "ANSWERED", KEY_FLAG_SET, FLAG_ANSWERED }, { "DELETED", KEY_FLAG_SET, FLAG_DELETED },
		{ "DRAFT", KEY_FLAG_SET, FLAG_DRAFT }, { "FLAGGED", KEY_FLAG_SET, FLAG_FLAGGED },
		{ "SEEN", KEY_FLAG_SET, FLAG_SEEN },
		{ "UNANSWERED", KEY_FLAG_UNSET, FLAG_ANSWERED },
		{ "UNDELETED", KEY_FLAG_UNSET, FLAG_DELETED },
		{ "UNDRAFT", KEY_FLAG_UNSET, FLAG_DRAFT },
		{ "UNFLAGGED", KEY_FLAG_UNSET, FLAG_FLAGGED },
		{ "UNSEEN", KEY_FLAG_UNSET, FLAG_SEEN },
	};
	static const struct {
		const char *name;
		enum key_kind kind;
	} dated[] = {
		{ "BEFORE", KEY_BEFORE }, { "ON", KEY_ON }, { "SINCE", KEY_SINCE },
		{ "SENTBEFORE", KEY_SENTBEFORE }, { "SENTON", KEY_SENTON },
		{ "SENTSINCE", KEY_SENTSINCE },
	};
	static const char *const header_keys[] = { "BCC", "CC", "FROM", "SUBJECT", "TO" };
	char name[32];
	int r = -1;

	if (++ctx->depth > SEARCH_DEPTH_MAX)
		goto done;
	if (imap_parse_char(parser, '(') == 0) {
		r = parse_key_list(ctx, parser, key) == 0 ? imap_parse_char(parser, ')') : -1;
		goto done;
	}
	if (imap_parse_peek(parser, '*') || (parser->p < parser->end && *parser->p >= '0' &&
	    *parser->p <= '9')) {
		key->kind = KEY_SEQSET;
		r = imap_parse_seqset(parser, &key->set);
		goto done;
	}
	if (imap_parse_atom(parser, name, sizeof name) < 0)
		goto done;
	for (char *p = name; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');

	for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
		if (strcmp(name, simple[i].name) == 0) {
			key->kind = simple[i].kind;
			key->flag = simple[i].flag;
			r = 0;
			goto done;
		}
	}
	for (size_t i = 0; i < sizeof dated / sizeof dated[0]; i++) {
		if (strcmp(name, dated[i].name) == 0) {
			key->kind = dated[i].kind;
			r = parse_date_arg(parser, &key->date);
			goto done;
		}
	}
	for (size_t i = 0; i < sizeof header_keys / sizeof header_keys[0]; i++) {
		if (strcmp(name, header_keys[i]) == 0) {
			key->kind = KEY_HEADER;
			key->header = xstrdup(header_keys[i]);
			r = (key->value = parse_value(parser)) != NULL ? 0 : -1;
			goto done;
		}
	}
	if (strcmp(name, "HEADER") == 0) {
		key->kind = KEY_HEADER;
		key->header = parse_value(parser);
		key->value = key->header != NULL ? parse_value(parser) : NULL;
		r = key->value != NULL ? 0 : -1;
	} else if (strcmp(name, "BODY") == 0 || strcmp(name, "TEXT") == 0) {
		key->kind = name[0] == 'B' ? KEY_BODY : KEY_TEXT;
		r = (key->value = parse_value(parser)) != NULL ? 0 : -1;
	} else if (strcmp(name, "KEYWORD") == 0 || strcmp(name, "UNKEYWORD") == 0) {
		char word[128];

		key->kind = name[0] == 'K' ? KEY_KEYWORD : KEY_UNKEYWORD;
		if (imap_parse_sp(parser) == 0 && imap_parse_atom(parser, word, sizeof word) == 0) {
			key->keyword = xstrdup(word);
			r = 0;
		}
	} else if (strcmp(name, "LARGER") == 0 || strcmp(name, "SMALLER") == 0) {
		key->kind = name[0] == 'L' ? KEY_LARGER : KEY_SMALLER;
		r = imap_parse_sp(parser) == 0 ? imap_parse_number64(parser, &key->number) : -1;
	} else if (strcmp(name, "UID") == 0) {
		key->kind = KEY_UIDSET;
		r = imap_parse_sp(parser) == 0 ? imap_parse_seqset(parser, &key->set) : -1;
	} else if (strcmp(name, "NOT") == 0) {
		key->kind = KEY_NOT;
		r = imap_parse_sp(parser) == 0 ? parse_key(ctx, parser, add_child(key)) : -1;
	} else if (strcmp(name, "OR") == 0) {
		key->kind = KEY_OR;
		r = imap_parse_sp(parser) == 0 && parse_key(ctx, parser, add_child(key)) == 0 &&
		    imap_parse_sp(parser) == 0 ? parse_key(ctx, parser, add_child(key)) : -1;
	}
done:
	ctx->depth--;
	return r;
}

struct candidate {
	struct session *s;
	size_t index;
	struct message *msg;
	struct mime_message *mime;	/* loaded on first need */
	int unreadable;
};

static struct mime_message *
candidate_mime(struct candidate *c)
{
	if (c->mime == NULL && !c->unreadable) {
		size_t len;
		char *data = mailbox_read_message(c->s->box, c->msg, &len);

		if (data != NULL) {
			c->mime = mime_parse(data, len);
			free(data);
		}
		c->unreadable = c->mime == NULL;
	}
	return c->mime;
}

static time_t
sent_date(struct candidate *c)
{
	struct mime_message *mime = candidate_mime(c);
	const char *value;
	struct tm tm = { 0 };

	/* TODO: parse Date: with lib/header.h once it offers a date parser; this reads the common form only. */
	if (mime == NULL)
		return 0;
	for (size_t i = 0; i < mime->root.headers.count; i++) {
		const struct header_field *field = &mime->root.headers.fields[i];
		char text[128];
		char *p;

		if (field->namelen != 4 || ascii_ncasecmp(field->name, "Date", 4) != 0)
			continue;
		snprintf(text, sizeof text, "%.*s", (int)field->valuelen, field->value);
		value = text;
		p = strchr(value, ',');
		if (p != NULL)
			value = p + 1;
		if (strptime(value, " %d %b %Y", &tm) == NULL)
			return 0;
		tm.tm_isdst = -1;
		return mktime(&tm);
	}
	return 0;
}

static int
matches(struct candidate *c, const struct search_key *key)
{
	struct mailbox *box = c->s->box;
	struct message *msg = c->msg;
	uint32_t star;
	int k;

	switch (key->kind) {
	case KEY_ALL:
		return 1;
	case KEY_AND:
		for (size_t i = 0; i < key->child_count; i++)
			if (!matches(c, &key->children[i]))
				return 0;
		return 1;
	case KEY_OR:
		return matches(c, &key->children[0]) || matches(c, &key->children[1]);
	case KEY_NOT:
		return !matches(c, &key->children[0]);
	case KEY_FLAG_SET:
		return (msg->flags & key->flag) != 0;
	case KEY_FLAG_UNSET:
		return (msg->flags & key->flag) == 0;
	case KEY_KEYWORD:
	case KEY_UNKEYWORD:
		k = mailbox_keyword_index(box, key->keyword, 0);
		return (k >= 0 && (msg->keywords & (1u << k))) == (key->kind == KEY_KEYWORD);
	case KEY_NEW:
		return msg->recent && !(msg->flags & FLAG_SEEN);
	case KEY_OLD:
		return !msg->recent;
	case KEY_RECENT:
		return msg->recent;
	case KEY_SEQSET:
		return imap_seqset_contains(&key->set, (uint32_t)c->index + 1, (uint32_t)box->count);
	case KEY_UIDSET:
		star = box->count > 0 ? box->messages[box->count - 1].uid : 0;
		return imap_seqset_contains(&key->set, msg->uid, star);
	case KEY_LARGER:
		return mailbox_message_vsize(box, msg) > key->number;
	case KEY_SMALLER:
		return mailbox_message_vsize(box, msg) < key->number;
	case KEY_BEFORE:
		return day_of(mailbox_message_date(box, msg)) < key->date;
	case KEY_ON:
		return day_of(mailbox_message_date(box, msg)) == key->date;
	case KEY_SINCE:
		return day_of(mailbox_message_date(box, msg)) >= key->date;
	case KEY_SENTBEFORE:
		return day_of(sent_date(c)) < key->date;
	case KEY_SENTON:
		return day_of(sent_date(c)) == key->date;
	case KEY_SENTSINCE:
		return day_of(sent_date(c)) >= key->date;
	case KEY_HEADER:
		return candidate_mime(c) != NULL && mime_search_header(c->mime, key->header, key->value);
	case KEY_BODY:
		return candidate_mime(c) != NULL && mime_search_body(c->mime, key->value);
	case KEY_TEXT:
		return candidate_mime(c) != NULL && mime_search_text(c->mime, key->value);
	}
	return 0;
}

#define RETURN_MIN	0x1
#define RETURN_MAX	0x2
#define RETURN_ALL	0x4
#define RETURN_COUNT	0x8

/* RETURN (MIN MAX ALL COUNT) of RFC 4731; an empty list means ALL. */
static int
parse_return(struct imap_parser *parser, unsigned *options)
{
	*options = 0;
	if (imap_parse_char(parser, '(') < 0)
		return -1;
	if (imap_parse_char(parser, ')') == 0) {
		*options = RETURN_ALL;
		return 0;
	}
	do {
		char word[16];

		if (imap_parse_atom(parser, word, sizeof word) < 0)
			return -1;
		if (ascii_casecmp(word, "MIN") == 0)
			*options |= RETURN_MIN;
		else if (ascii_casecmp(word, "MAX") == 0)
			*options |= RETURN_MAX;
		else if (ascii_casecmp(word, "ALL") == 0)
			*options |= RETURN_ALL;
		else if (ascii_casecmp(word, "COUNT") == 0)
			*options |= RETURN_COUNT;
		else
			return -1;
	} while (imap_parse_sp(parser) == 0);
	return imap_parse_char(parser, ')');
}

/* The ESEARCH ALL value: the results as a sequence set with ranges. */
static void
write_set(struct session *s, const uint32_t *values, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		size_t j = i;

		while (j + 1 < count && values[j + 1] == values[j] + 1)
			j++;
		imap_io_printf(&s->io, "%s%u", i > 0 ? "," : "", values[i]);
		if (j > i)
			imap_io_printf(&s->io, ":%u", values[j]);
		i = j;
	}
}

void
cmd_search(struct session *s, struct imap_parser *parser, int uid_mode)
{
	struct search_context ctx = { .s = s };
	struct search_key root = { 0 };
	unsigned options = 0;
	int esearch = 0;
	uint32_t *results = NULL;
	size_t count = 0;

	if (imap_parse_sp(parser) < 0)
		goto invalid;
	if (parser->end - parser->p > 7 && ascii_ncasecmp(parser->p, "RETURN ", 7) == 0) {
		parser->p += 7;
		if (parse_return(parser, &options) < 0 || imap_parse_sp(parser) < 0)
			goto invalid;
		esearch = 1;
	}
	if (parser->end - parser->p > 8 && ascii_ncasecmp(parser->p, "CHARSET ", 8) == 0) {
		char *charset;

		parser->p += 8;
		charset = imap_parse_astring_dup(parser, 64);
		if (charset == NULL || imap_parse_sp(parser) < 0) {
			free(charset);
			goto invalid;
		}
		if (ascii_casecmp(charset, "UTF-8") != 0 && ascii_casecmp(charset, "US-ASCII") != 0) {
			free(charset);
			session_reply(s, "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
			return;
		}
		free(charset);
	}
	if (parse_key_list(&ctx, parser, &root) < 0 || !imap_parse_at_end(parser))
		goto invalid;

	results = xcalloc(s->box->count + 1, sizeof *results);
	for (size_t i = 0; i < s->box->count; i++) {
		struct candidate c = { .s = s, .index = i, .msg = &s->box->messages[i] };

		if (!c.msg->gone && matches(&c, &root))
			results[count++] = uid_mode ? c.msg->uid : (uint32_t)i + 1;
		mime_free(c.mime);
	}

	if (esearch) {
		imap_io_printf(&s->io, "* ESEARCH (TAG \"%s\")%s", s->tag, uid_mode ? " UID" : "");
		if ((options & RETURN_MIN) && count > 0)
			imap_io_printf(&s->io, " MIN %u", results[0]);
		if ((options & RETURN_MAX) && count > 0)
			imap_io_printf(&s->io, " MAX %u", results[count - 1]);
		if ((options & RETURN_ALL) && count > 0) {
			imap_io_puts(&s->io, " ALL ");
			write_set(s, results, count);
		}
		if (options & RETURN_COUNT)
			imap_io_printf(&s->io, " COUNT %zu", count);
		imap_io_puts(&s->io, "\r\n");
	} else {
		imap_io_puts(&s->io, "* SEARCH");
		for (size_t i = 0; i < count; i++)
			imap_io_printf(&s->io, " %u", results[i]);
		imap_io_puts(&s->io, "\r\n");
	}
	session_reply(s, "OK %sSearch completed.", uid_mode ? "UID " : "");
	free(results);
	key_free(&root);
	return;

invalid:
	key_free(&root);
	session_reply(s, "BAD Invalid search criteria");
}
