/*
 * Address lists for the IMAP ENVELOPE (RFC 3501 section 7.4.2): each
 * mailbox becomes (name adl mailbox host), and a group is framed by
 * (NIL NIL "group name" NIL) and (NIL NIL NIL NIL). Display names are
 * sent with their RFC 2047 encoded words, for the client to decode.
 */
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

/* Addresses rendered per field; the rest are dropped. */
#define MAX_ADDRESSES 1000

enum token_kind {
	TOKEN_ATOM,
	TOKEN_QUOTED,
	TOKEN_LITERAL,		/* [domain literal], brackets included */
	TOKEN_SPECIAL,		/* one of < > , : ; @ . */
	TOKEN_END,
};

struct token {
	enum token_kind kind;
	char special;
	struct mime_buf text;	/* atom text, or quoted string content */
};

struct scanner {
	const char *p;
	const char *end;
	struct mime_buf comment;	/* the last comment skipped, parentheses removed */
};

static int
is_atom_char(char c)
{
	return c != ' ' && c != '\t' && c != '\r' && c != '\n' && strchr("()<>,:;@.\"[]\\", c) == NULL;
}

/* Skip whitespace and comments, which may nest, keeping the text of
 * the last comment. */
static void
skip_cfws(struct scanner *sc)
{
	int depth = 0;

	while (sc->p < sc->end) {
		char c = *sc->p;

		if (depth > 0 && c == '\\' && sc->p + 1 < sc->end) {
			mime_buf_add_char(&sc->comment, sc->p[1]);
			sc->p += 2;
			continue;
		}
		if (c == '(' && depth++ == 0) {
			sc->comment.len = 0;
			mime_buf_add(&sc->comment, "", 0);
		} else if (c == ')' && depth > 0) {
			if (--depth > 0)
				mime_buf_add_char(&sc->comment, c);
		} else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			return;
		} else if (depth > 0 && c != '\r' && c != '\n') {
			mime_buf_add_char(&sc->comment, c);
		}
		sc->p++;
	}
}

static void
read_quoted(struct scanner *sc, struct token *tok)
{
	sc->p++;
	while (sc->p < sc->end && *sc->p != '"') {
		if (*sc->p == '\\' && sc->p + 1 < sc->end)
			sc->p++;
		if (*sc->p != '\r' && *sc->p != '\n')
			mime_buf_add_char(&tok->text, *sc->p);
		sc->p++;
	}
	if (sc->p < sc->end)
		sc->p++;
}

static void
next_token(struct scanner *sc, struct token *tok)
{
	tok->text.len = 0;
	mime_buf_add(&tok->text, "", 0);

	skip_cfws(sc);
	if (sc->p >= sc->end) {
		tok->kind = TOKEN_END;
		return;
	}

	if (*sc->p == '"') {
		tok->kind = TOKEN_QUOTED;
		read_quoted(sc, tok);
	} else if (*sc->p == '[') {
		const char *close = memchr(sc->p, ']', (size_t)(sc->end - sc->p));
		const char *stop = close != NULL ? close + 1 : sc->end;

		tok->kind = TOKEN_LITERAL;
		mime_buf_add(&tok->text, sc->p, (size_t)(stop - sc->p));
		sc->p = stop;
	} else if (is_atom_char(*sc->p)) {
		tok->kind = TOKEN_ATOM;
		while (sc->p < sc->end && is_atom_char(*sc->p))
			mime_buf_add_char(&tok->text, *sc->p++);
	} else {
		tok->kind = TOKEN_SPECIAL;
		tok->special = *sc->p++;
	}
}

static int
is_special(const struct token *tok, char c)
{
	return tok->kind == TOKEN_SPECIAL && tok->special == c;
}

struct address {
	struct mime_buf name;
	struct mime_buf route;
	struct mime_buf mailbox;
	struct mime_buf host;
	int has_host;
};

static void
render_address(struct mime_buf *buf, const struct address *addr)
{
	mime_buf_add_char(buf, '(');
	if (addr->name.len > 0)
		mime_buf_add_string_len(buf, addr->name.data, addr->name.len);
	else
		mime_buf_add_str(buf, "NIL");
	mime_buf_add_char(buf, ' ');
	if (addr->route.len > 0)
		mime_buf_add_string_len(buf, addr->route.data, addr->route.len);
	else
		mime_buf_add_str(buf, "NIL");
	mime_buf_add_char(buf, ' ');
	mime_buf_add_string_len(buf, addr->mailbox.data != NULL ? addr->mailbox.data : "",
	    addr->mailbox.len);
	mime_buf_add_char(buf, ' ');
	/* A missing domain is an empty host, because NIL marks a group. */
	mime_buf_add_string_len(buf, addr->host.data != NULL ? addr->host.data : "", addr->host.len);
	mime_buf_add_char(buf, ')');
}

/* Append a word of a display name: words are separated by one space,
 * but a '.' joins without one ("John Q. Public"). */
static void
add_phrase_word(struct mime_buf *phrase, const char *word, size_t len, int is_dot)
{
	if (phrase->len > 0 && !is_dot)
		mime_buf_add_char(phrase, ' ');
	mime_buf_add(phrase, word, len);
}

/* Add a quoted string to a local part, quoted again so the result is
 * still a valid addr-spec when the client joins mailbox and host. */
static void
add_local_word(struct mime_buf *local, const struct token *tok)
{
	if (tok->kind != TOKEN_QUOTED) {
		mime_buf_add(local, tok->text.data, tok->text.len);
		return;
	}
	mime_buf_add_char(local, '"');
	for (size_t i = 0; i < tok->text.len; i++) {
		if (tok->text.data[i] == '"' || tok->text.data[i] == '\\')
			mime_buf_add_char(local, '\\');
		mime_buf_add_char(local, tok->text.data[i]);
	}
	mime_buf_add_char(local, '"');
}

/* Read a domain up to a token that cannot be part of one. */
static void
read_domain(struct scanner *sc, struct token *tok, struct mime_buf *host)
{
	next_token(sc, tok);
	while (tok->kind == TOKEN_ATOM || tok->kind == TOKEN_LITERAL || is_special(tok, '.')) {
		if (tok->kind == TOKEN_SPECIAL)
			mime_buf_add_char(host, '.');
		else
			mime_buf_add(host, tok->text.data, tok->text.len);
		next_token(sc, tok);
	}
}

/* An angle address after '<': [route ':'] local-part '@' domain '>'.
 * Leaves TOK at the token after '>'. */
static void
read_angle_addr(struct scanner *sc, struct token *tok, struct address *addr)
{
	next_token(sc, tok);
	if (is_special(tok, '@')) {
		/* Obsolete source route "@a,@b:" (RFC 5322 section 4.4). */
		while (!is_special(tok, ':') && !is_special(tok, '>') && tok->kind != TOKEN_END) {
			if (tok->kind == TOKEN_SPECIAL)
				mime_buf_add_char(&addr->route, tok->special);
			else
				mime_buf_add(&addr->route, tok->text.data, tok->text.len);
			next_token(sc, tok);
		}
		if (is_special(tok, ':'))
			next_token(sc, tok);
	}

	while (tok->kind == TOKEN_ATOM || tok->kind == TOKEN_QUOTED || is_special(tok, '.')) {
		if (tok->kind == TOKEN_SPECIAL)
			mime_buf_add_char(&addr->mailbox, '.');
		else
			add_local_word(&addr->mailbox, tok);
		next_token(sc, tok);
	}
	if (is_special(tok, '@')) {
		addr->has_host = 1;
		read_domain(sc, tok, &addr->host);
	}
	while (!is_special(tok, '>') && tok->kind != TOKEN_END)
		next_token(sc, tok);
	if (is_special(tok, '>'))
		next_token(sc, tok);
}

static void
address_reset(struct address *addr)
{
	addr->name.len = 0;
	addr->route.len = 0;
	addr->mailbox.len = 0;
	addr->host.len = 0;
	addr->has_host = 0;
}

static void
address_free(struct address *addr)
{
	free(addr->name.data);
	free(addr->route.data);
	free(addr->mailbox.data);
	free(addr->host.data);
}

/*
 * Read one mailbox, group start or group end. The words before '<',
 * ':' or '@' are a display name, a group name or a local part; which
 * one depends on the token that ends them.
 */
enum item {
	ITEM_NONE,
	ITEM_MAILBOX,
	ITEM_GROUP_START,
	ITEM_GROUP_END,
};

static enum item
read_item(struct scanner *sc, struct token *tok, struct address *addr)
{
	struct mime_buf phrase = { 0 }, local = { 0 };
	enum item item = ITEM_NONE;

	address_reset(addr);
	while (tok->kind == TOKEN_ATOM || tok->kind == TOKEN_QUOTED || is_special(tok, '.')) {
		int dot = is_special(tok, '.');

		add_phrase_word(&phrase, dot ? "." : tok->text.data, dot ? 1 : tok->text.len, dot);
		if (dot)
			mime_buf_add_char(&local, '.');
		else
			add_local_word(&local, tok);
		next_token(sc, tok);
	}

	if (is_special(tok, '<')) {
		mime_buf_add(&addr->name, phrase.data, phrase.len);
		read_angle_addr(sc, tok, addr);
		item = ITEM_MAILBOX;
	} else if (is_special(tok, ':')) {
		mime_buf_add(&addr->mailbox, phrase.data, phrase.len);
		next_token(sc, tok);
		item = ITEM_GROUP_START;
	} else if (is_special(tok, '@')) {
		mime_buf_add(&addr->mailbox, local.data, local.len);
		addr->has_host = 1;
		read_domain(sc, tok, &addr->host);
		item = ITEM_MAILBOX;
	} else if (is_special(tok, ';')) {
		next_token(sc, tok);
		item = ITEM_GROUP_END;
	} else if (local.len > 0) {
		mime_buf_add(&addr->mailbox, local.data, local.len);
		item = ITEM_MAILBOX;
	}

	free(phrase.data);
	free(local.data);
	return item;
}

size_t
mime_render_address_list(struct mime_buf *buf, const char *value, size_t len)
{
	struct scanner sc = { value, value + len, { 0 } };
	struct token tok = { 0 };
	struct address addr = { 0 };
	size_t count = 0, start = buf->len;
	int in_group = 0;

	mime_buf_add_char(buf, '(');
	next_token(&sc, &tok);
	while (tok.kind != TOKEN_END && count < MAX_ADDRESSES) {
		enum item item = read_item(&sc, &tok, &addr);

		/* Old mail puts the name in a comment: "user@host (Name)". */
		if (item == ITEM_MAILBOX && addr.name.len == 0 && sc.comment.len > 0)
			mime_buf_add(&addr.name, sc.comment.data, sc.comment.len);
		if (item == ITEM_MAILBOX) {
			render_address(buf, &addr);
			count++;
		} else if (item == ITEM_GROUP_START) {
			mime_buf_add_str(buf, "(NIL NIL ");
			mime_buf_add_string_len(buf, addr.mailbox.data, addr.mailbox.len);
			mime_buf_add_str(buf, " NIL)");
			in_group = 1;
			count++;
		} else if (item == ITEM_GROUP_END && in_group) {
			mime_buf_add_str(buf, "(NIL NIL NIL NIL)");
			in_group = 0;
		}

		/* Skip what does not fit the syntax up to the next address. */
		while (tok.kind != TOKEN_END && !is_special(&tok, ',') && !is_special(&tok, ';') &&
		    item != ITEM_GROUP_START)
			next_token(&sc, &tok);
		sc.comment.len = 0;
		if (is_special(&tok, ','))
			next_token(&sc, &tok);
	}
	if (in_group)
		mime_buf_add_str(buf, "(NIL NIL NIL NIL)");
	mime_buf_add_char(buf, ')');

	if (count == 0) {
		buf->len = start;
		mime_buf_add_str(buf, "NIL");
	}

	address_free(&addr);
	free(tok.text.data);
	free(sc.comment.data);
	return count;
}
