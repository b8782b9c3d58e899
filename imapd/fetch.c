/* FETCH and UID FETCH (RFC 3501 section 6.4.5, RFC 3516 BINARY). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mime.h"
#include "session.h"
#include "util.h"

#define FETCH_ITEMS_MAX	64

enum fetch_kind {
	FETCH_FLAGS,
	FETCH_INTERNALDATE,
	FETCH_RFC822_SIZE,
	FETCH_ENVELOPE,
	FETCH_BODY,		/* BODY without a section: the non-extended structure */
	FETCH_BODYSTRUCTURE,
	FETCH_UID,
	FETCH_SECTION,		/* BODY[...] and BODY.PEEK[...] */
	FETCH_BINARY,
	FETCH_BINARY_SIZE,
	FETCH_RFC822,
	FETCH_RFC822_HEADER,
	FETCH_RFC822_TEXT,
};

struct fetch_item {
	enum fetch_kind kind;
	struct mime_section section;
	char section_text[1024];	/* as the client wrote it, for the response */
	int peek;
	int partial;
	uint32_t offset, count;
};

struct fetch_request {
	struct fetch_item items[FETCH_ITEMS_MAX];
	size_t count;
	int need_message;	/* some item reads the message file */
	int sets_seen;
};

static int
add_item(struct fetch_request *request, enum fetch_kind kind)
{
	if (request->count == FETCH_ITEMS_MAX)
		return -1;
	memset(&request->items[request->count], 0, sizeof request->items[0]);
	request->items[request->count++].kind = kind;
	if (kind != FETCH_FLAGS && kind != FETCH_UID && kind != FETCH_INTERNALDATE &&
	    kind != FETCH_RFC822_SIZE)
		request->need_message = 1;
	if (kind == FETCH_RFC822 || kind == FETCH_RFC822_TEXT)
		request->sets_seen = 1;
	return 0;
}

/* "[section]" and an optional "<offset.count>" after BODY or BINARY. */
static int
parse_section(struct imap_parser *parser, struct fetch_item *item, int binary)
{
	const char *start = parser->p + 1, *end = start;
	size_t len;

	if (imap_parse_char(parser, '[') < 0)
		return -1;
	while (end < parser->end && *end != ']' && *end != '\r' && *end != '\n')
		end++;
	if (end >= parser->end || *end != ']')
		return -1;
	len = (size_t)(end - start);
	if (len >= sizeof item->section_text)
		return -1;
	memcpy(item->section_text, start, len);
	item->section_text[len] = '\0';
	for (char *p = item->section_text; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	if (mime_section_parse(start, len, &item->section) < 0)
		return -1;
	if (binary && item->section.kind != MIME_SECTION_ALL)
		return -1;
	parser->p = end + 1;

	if (imap_parse_char(parser, '<') == 0) {
		if (imap_parse_number(parser, &item->offset) < 0 || imap_parse_char(parser, '.') < 0 ||
		    imap_parse_number(parser, &item->count) < 0 || item->count == 0 ||
		    imap_parse_char(parser, '>') < 0)
			return -1;
		item->partial = 1;
	}
	return 0;
}

static int
parse_item(struct imap_parser *parser, struct fetch_request *request)
{
	char name[32];
	const char *start = parser->p;
	size_t n = 0;
	struct fetch_item *item;

	while (parser->p < parser->end && n + 1 < sizeof name &&
	    (imap_is_atom_char((unsigned char)*parser->p) && *parser->p != '[')) {
		char c = *parser->p++;

		name[n++] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
	}
	name[n] = '\0';
	if (n == 0) {
		parser->p = start;
		return -1;
	}

	if (strcmp(name, "FLAGS") == 0)
		return add_item(request, FETCH_FLAGS);
	if (strcmp(name, "INTERNALDATE") == 0)
		return add_item(request, FETCH_INTERNALDATE);
	if (strcmp(name, "RFC822.SIZE") == 0)
		return add_item(request, FETCH_RFC822_SIZE);
	if (strcmp(name, "ENVELOPE") == 0)
		return add_item(request, FETCH_ENVELOPE);
	if (strcmp(name, "BODYSTRUCTURE") == 0)
		return add_item(request, FETCH_BODYSTRUCTURE);
	if (strcmp(name, "UID") == 0)
		return add_item(request, FETCH_UID);
	if (strcmp(name, "RFC822") == 0)
		return add_item(request, FETCH_RFC822);
	if (strcmp(name, "RFC822.HEADER") == 0)
		return add_item(request, FETCH_RFC822_HEADER);
	if (strcmp(name, "RFC822.TEXT") == 0)
		return add_item(request, FETCH_RFC822_TEXT);
	if (strcmp(name, "BODY") == 0 && !imap_parse_peek(parser, '['))
		return add_item(request, FETCH_BODY);

	if (strcmp(name, "BODY") == 0 || strcmp(name, "BODY.PEEK") == 0 ||
	    strcmp(name, "BINARY") == 0 || strcmp(name, "BINARY.PEEK") == 0 ||
	    strcmp(name, "BINARY.SIZE") == 0) {
		int binary = name[1] == 'I';
		enum fetch_kind kind = !binary ? FETCH_SECTION :
		    strcmp(name, "BINARY.SIZE") == 0 ? FETCH_BINARY_SIZE : FETCH_BINARY;

		if (add_item(request, kind) < 0)
			return -1;
		item = &request->items[request->count - 1];
		item->peek = strstr(name, ".PEEK") != NULL || kind == FETCH_BINARY_SIZE;
		if (parse_section(parser, item, binary) < 0) {
			request->count--;
			return -1;
		}
		if (kind == FETCH_BINARY_SIZE && item->partial)
			return -1;
		if (!item->peek)
			request->sets_seen = 1;
		return 0;
	}
	return -1;
}

static int
parse_request(struct imap_parser *parser, struct fetch_request *request)
{
	char macro[8];
	const char *start = parser->p;

	if (imap_parse_char(parser, '(') == 0) {
		do {
			if (parse_item(parser, request) < 0)
				return -1;
		} while (imap_parse_sp(parser) == 0);
		return imap_parse_char(parser, ')');
	}
	if (imap_parse_atom(parser, macro, sizeof macro) == 0 && imap_parse_at_end(parser)) {
		int all = ascii_casecmp(macro, "ALL") == 0, full = ascii_casecmp(macro, "FULL") == 0;

		if (all || full || ascii_casecmp(macro, "FAST") == 0) {
			add_item(request, FETCH_FLAGS);
			add_item(request, FETCH_INTERNALDATE);
			add_item(request, FETCH_RFC822_SIZE);
			if (all || full)
				add_item(request, FETCH_ENVELOPE);
			if (full)
				add_item(request, FETCH_BODY);
			return 0;
		}
	}
	parser->p = start;
	return parse_item(parser, request);
}

void
imap_format_date_time(time_t when, char *out, size_t outsize)
{
	struct tm tm;

	localtime_r(&when, &tm);
	strftime(out, outsize, "%d-%b-%Y %H:%M:%S %z", &tm);
}

/* Send DATA as a literal, cut to <offset.count> if ITEM is partial. */
static void
write_data(struct session *s, const struct fetch_item *item, const char *data, size_t len,
    int literal8)
{
	if (item->partial) {
		if (item->offset >= len) {
			len = 0;
		} else {
			data += item->offset;
			len -= item->offset;
			if (len > item->count)
				len = item->count;
		}
		imap_io_printf(&s->io, "<%u>", item->offset);
	}
	imap_io_printf(&s->io, " %s{%zu}\r\n", literal8 && memchr(data, '\0', len) != NULL ? "~" : "",
	    len);
	imap_io_write(&s->io, data, len);
}

static void
write_section(struct session *s, const struct fetch_item *item, const struct mime_message *mime)
{
	struct mime_section_data data = { 0 };

	imap_io_printf(&s->io, "BODY[%s]", item->section_text);
	if (mime_section_fetch(mime, &item->section, &data) < 0)
		data.len = 0;
	write_data(s, item, data.len > 0 ? data.data : "", data.len, 0);
	free(data.owned);
}

/* BINARY[...] and BINARY.SIZE[...]; -1 for an encoding that cannot be decoded. */
static int
write_binary(struct session *s, const struct fetch_item *item, const struct mime_message *mime)
{
	const struct mime_part *part = mime_section_part(mime, &item->section);
	char *decoded = NULL;
	size_t len = 0;

	if (part != NULL && mime_binary_decode(mime, part, &decoded, &len) == MIME_UNKNOWN_CTE)
		return -1;
	if (item->kind == FETCH_BINARY_SIZE) {
		imap_io_printf(&s->io, "BINARY.SIZE[%s] %zu", item->section_text, len);
	} else {
		imap_io_printf(&s->io, "BINARY[%s]", item->section_text);
		write_data(s, item, decoded != NULL ? decoded : "", len, 1);
	}
	free(decoded);
	return 0;
}

static void
write_string(struct session *s, char *text, size_t len)
{
	imap_io_write(&s->io, text, len);
	free(text);
}

/* One "* N FETCH (...)" response. Returns -1 for an undecodable BINARY. */
static int
fetch_message(struct session *s, struct fetch_request *request, size_t index, int uid_mode)
{
	struct message *msg = &s->box->messages[index];
	struct mime_message *mime = NULL;
	const char *sep = "";
	int flags_sent = 0, flags_changed = 0, result = 0;

	if (request->need_message) {
		size_t len;
		char *data = mailbox_read_message(s->box, msg, &len);

		if (data == NULL)
			return 0;	/* expunged by another session meanwhile */
		mime = mime_parse(data, len);
		free(data);
		if (mime == NULL)
			return 0;
		msg->vsize = mime->len;
	}
	if (request->sets_seen && !s->readonly && !(msg->flags & FLAG_SEEN)) {
		if (mailbox_set_flags(s->box, msg, msg->flags | FLAG_SEEN, msg->keywords) == 0)
			flags_changed = 1;
	}

	imap_io_printf(&s->io, "* %zu FETCH (", index + 1);
	if (uid_mode) {
		imap_io_printf(&s->io, "UID %u", msg->uid);
		sep = " ";
	}
	for (size_t i = 0; i < request->count; i++) {
		struct fetch_item *item = &request->items[i];
		char date[64], *text;
		size_t len;

		if (item->kind == FETCH_UID && uid_mode)
			continue;
		imap_io_puts(&s->io, sep);
		sep = " ";
		switch (item->kind) {
		case FETCH_FLAGS:
			session_write_flags(s, msg);
			flags_sent = 1;
			break;
		case FETCH_UID:
			imap_io_printf(&s->io, "UID %u", msg->uid);
			break;
		case FETCH_INTERNALDATE:
			imap_format_date_time(mailbox_message_date(s->box, msg), date, sizeof date);
			imap_io_printf(&s->io, "INTERNALDATE \"%s\"", date);
			break;
		case FETCH_RFC822_SIZE:
			imap_io_printf(&s->io, "RFC822.SIZE %llu",
			    (unsigned long long)mailbox_message_vsize(s->box, msg));
			break;
		case FETCH_ENVELOPE:
			imap_io_puts(&s->io, "ENVELOPE ");
			text = mime_envelope(mime, &mime->root, &len);
			write_string(s, text, len);
			break;
		case FETCH_BODY:
		case FETCH_BODYSTRUCTURE:
			imap_io_puts(&s->io, item->kind == FETCH_BODY ? "BODY " : "BODYSTRUCTURE ");
			text = mime_bodystructure(mime, &mime->root, item->kind == FETCH_BODYSTRUCTURE,
			    &len);
			write_string(s, text, len);
			break;
		case FETCH_SECTION:
			write_section(s, item, mime);
			break;
		case FETCH_BINARY:
		case FETCH_BINARY_SIZE:
			if (write_binary(s, item, mime) < 0) {
				imap_io_printf(&s->io, "BINARY[%s] NIL", item->section_text);
				result = -1;
			}
			break;
		case FETCH_RFC822:
			imap_io_printf(&s->io, "RFC822 {%zu}\r\n", mime->len);
			imap_io_write(&s->io, mime->data, mime->len);
			break;
		case FETCH_RFC822_HEADER:
			len = mime->root.header_len;
			imap_io_printf(&s->io, "RFC822.HEADER {%zu}\r\n", len);
			imap_io_write(&s->io, mime->data, len);
			break;
		case FETCH_RFC822_TEXT:
			len = mime->len - mime->root.body_offset;
			imap_io_printf(&s->io, "RFC822.TEXT {%zu}\r\n", len);
			imap_io_write(&s->io, mime->data + mime->root.body_offset, len);
			break;
		}
	}
	if (flags_changed && !flags_sent) {
		imap_io_puts(&s->io, sep);
		session_write_flags(s, msg);
	}
	imap_io_puts(&s->io, ")\r\n");
	mime_free(mime);
	return result;
}

void
cmd_fetch(struct session *s, struct imap_parser *parser, int uid_mode)
{
	struct fetch_request *request = xcalloc(1, sizeof *request);
	struct imap_seqset set;
	size_t *indices = NULL;
	long count;
	int unknown_cte = 0;

	if (imap_parse_sp(parser) < 0 || imap_parse_seqset(parser, &set) < 0) {
		session_reply(s, "BAD Invalid arguments: expected FETCH sequence-set items");
		free(request);
		return;
	}
	if (imap_parse_sp(parser) < 0 || parse_request(parser, request) < 0 ||
	    !imap_parse_at_end(parser)) {
		session_reply(s, "BAD Invalid FETCH items");
		goto done;
	}
	count = session_resolve(s, &set, uid_mode, &indices);
	if (count < 0) {
		session_reply(s, "BAD Invalid message number: the mailbox has %zu messages",
		    s->box->count);
		goto done;
	}
	for (long i = 0; i < count; i++) {
		if (s->box->messages[indices[i]].gone)
			continue;
		if (fetch_message(s, request, indices[i], uid_mode) < 0)
			unknown_cte = 1;
	}
	if (unknown_cte)
		session_reply(s, "NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding");
	else
		session_reply(s, "OK %sFetch completed.", uid_mode ? "UID " : "");
done:
	for (size_t i = 0; i < request->count; i++)
		if (request->items[i].kind == FETCH_SECTION || request->items[i].kind == FETCH_BINARY ||
		    request->items[i].kind == FETCH_BINARY_SIZE)
			mime_section_free(&request->items[i].section);
	free(request);
	free(indices);
	imap_seqset_free(&set);
}
