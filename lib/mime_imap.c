/* IMAP ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501 section 7.4.2). */
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

static void render_part(struct mime_buf *buf, const struct mime_message *msg,
    const struct mime_part *part, int extended);

/* The unfolded value of the first field NAME as an nstring. */
static void
add_field_nstring(struct mime_buf *buf, const struct mime_part *part, const char *name)
{
	const struct header_field *field = header_find(&part->headers, name);
	char *value;

	if (field == NULL) {
		mime_buf_add_str(buf, "NIL");
		return;
	}
	value = header_unfold(field);
	mime_buf_add_nstring(buf, value);
	free(value);
}

/* Render the addresses of every field NAME as one list (a message may
 * repeat To or Cc), or those of FALLBACK when there are none. */
static void
add_address_field(struct mime_buf *buf, const struct mime_part *part, const char *name,
    const char *fallback)
{
	const struct header_list *headers = &part->headers;
	struct mime_buf joined = { 0 };
	size_t start = buf->len, name_len = strlen(name), found = 0;

	for (size_t i = 0; i < headers->count; i++) {
		const struct header_field *field = &headers->fields[i];

		if (field->namelen != name_len || ascii_ncasecmp(field->name, name, name_len) != 0)
			continue;
		if (joined.len > 0)
			mime_buf_add_char(&joined, ',');
		mime_buf_add(&joined, field->value, field->valuelen);
	}
	if (joined.data != NULL)
		found = mime_render_address_list(buf, joined.data, joined.len);
	free(joined.data);
	if (found > 0)
		return;

	buf->len = start;
	if (fallback != NULL) {
		add_address_field(buf, part, fallback, NULL);
		return;
	}
	mime_buf_add_str(buf, "NIL");
}

static void
render_envelope(struct mime_buf *buf, const struct mime_part *part)
{
	mime_buf_add_char(buf, '(');
	add_field_nstring(buf, part, "Date");
	mime_buf_add_char(buf, ' ');
	add_field_nstring(buf, part, "Subject");
	mime_buf_add_char(buf, ' ');
	add_address_field(buf, part, "From", NULL);
	mime_buf_add_char(buf, ' ');
	/* Sender and Reply-To default to From when absent or empty. */
	add_address_field(buf, part, "Sender", "From");
	mime_buf_add_char(buf, ' ');
	add_address_field(buf, part, "Reply-To", "From");
	mime_buf_add_char(buf, ' ');
	add_address_field(buf, part, "To", NULL);
	mime_buf_add_char(buf, ' ');
	add_address_field(buf, part, "Cc", NULL);
	mime_buf_add_char(buf, ' ');
	add_address_field(buf, part, "Bcc", NULL);
	mime_buf_add_char(buf, ' ');
	add_field_nstring(buf, part, "In-Reply-To");
	mime_buf_add_char(buf, ' ');
	add_field_nstring(buf, part, "Message-ID");
	mime_buf_add_char(buf, ')');
}

char *
mime_envelope(const struct mime_message *msg, const struct mime_part *part, size_t *len)
{
	struct mime_buf buf = { 0 };

	render_envelope(&buf, part);
	return mime_buf_take(&buf, len);
}

/* RFC 2231 form of an extended parameter value:
 * charset'language'percent-encoded. */
static void
add_extended_value(struct mime_buf *buf, const struct mime_param *param)
{
	struct mime_buf value = { 0 };

	mime_buf_add_str(&value, param->charset);
	mime_buf_add_char(&value, '\'');
	if (param->language != NULL)
		mime_buf_add_str(&value, param->language);
	mime_buf_add_char(&value, '\'');
	for (const unsigned char *p = (const unsigned char *)param->value; *p != '\0'; p++) {
		if (*p > 32 && *p < 127 && strchr("*'%()<>@,;:\\\"/[]?=", *p) == NULL)
			mime_buf_add_char(&value, (char)*p);
		else
			mime_buf_add_printf(&value, "%%%02X", *p);
	}
	mime_buf_add_string_len(buf, value.data, value.len);
	free(value.data);
}

/*
 * body-fld-param: ("NAME" "value" ...) or NIL. Continuations are
 * already joined. A parameter that had an RFC 2231 charset goes out as
 * "NAME*" with its value in RFC 2231 form, so that no information is
 * lost and the string stays 7-bit.
 */
static void
add_params(struct mime_buf *buf, const struct mime_param *params, size_t count)
{
	if (count == 0) {
		mime_buf_add_str(buf, "NIL");
		return;
	}

	mime_buf_add_char(buf, '(');
	for (size_t i = 0; i < count; i++) {
		const struct mime_param *param = &params[i];

		if (i > 0)
			mime_buf_add_char(buf, ' ');
		if (param->charset != NULL) {
			char *name = xasprintf("%s*", param->name);

			mime_buf_add_nstring(buf, name);
			free(name);
			mime_buf_add_char(buf, ' ');
			add_extended_value(buf, param);
		} else {
			mime_buf_add_nstring(buf, param->name);
			mime_buf_add_char(buf, ' ');
			mime_buf_add_nstring(buf, param->value);
		}
	}
	mime_buf_add_char(buf, ')');
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void
add_extension_tail(struct mime_buf *buf, const struct mime_part *part)
{
	if (part->disposition != NULL) {
		mime_buf_add_char(buf, '(');
		mime_buf_add_nstring(buf, part->disposition);
		mime_buf_add_char(buf, ' ');
		add_params(buf, part->disposition_params, part->disposition_param_count);
		mime_buf_add_char(buf, ')');
	} else {
		mime_buf_add_str(buf, "NIL");
	}
	mime_buf_add_char(buf, ' ');

	if (part->language_count == 0) {
		mime_buf_add_str(buf, "NIL");
	} else if (part->language_count == 1) {
		mime_buf_add_nstring(buf, part->languages[0]);
	} else {
		mime_buf_add_char(buf, '(');
		for (size_t i = 0; i < part->language_count; i++) {
			if (i > 0)
				mime_buf_add_char(buf, ' ');
			mime_buf_add_nstring(buf, part->languages[i]);
		}
		mime_buf_add_char(buf, ')');
	}
	mime_buf_add_char(buf, ' ');
	mime_buf_add_nstring(buf, part->location);
}

static void
render_multipart(struct mime_buf *buf, const struct mime_message *msg,
    const struct mime_part *part, int extended)
{
	mime_buf_add_char(buf, '(');
	for (size_t i = 0; i < part->child_count; i++)
		render_part(buf, msg, &part->children[i], extended);
	mime_buf_add_char(buf, ' ');
	mime_buf_add_nstring(buf, part->subtype);
	if (extended) {
		mime_buf_add_char(buf, ' ');
		add_params(buf, part->params, part->param_count);
		mime_buf_add_char(buf, ' ');
		add_extension_tail(buf, part);
	}
	mime_buf_add_char(buf, ')');
}

/* body-type-basic, body-type-msg and body-type-text with their
 * extension data: type subtype params id description encoding size,
 * then envelope body lines for a message, lines for text. */
static void
render_single(struct mime_buf *buf, const struct mime_message *msg,
    const struct mime_part *part, int extended)
{
	mime_buf_add_char(buf, '(');
	mime_buf_add_nstring(buf, part->type);
	mime_buf_add_char(buf, ' ');
	mime_buf_add_nstring(buf, part->subtype);
	mime_buf_add_char(buf, ' ');
	add_params(buf, part->params, part->param_count);
	mime_buf_add_char(buf, ' ');
	mime_buf_add_nstring(buf, part->id);
	mime_buf_add_char(buf, ' ');
	mime_buf_add_nstring(buf, part->description);
	mime_buf_add_char(buf, ' ');
	mime_buf_add_nstring(buf, part->encoding);
	mime_buf_add_printf(buf, " %zu", part->body_len);

	if (part->message != NULL) {
		mime_buf_add_char(buf, ' ');
		render_envelope(buf, part->message);
		mime_buf_add_char(buf, ' ');
		render_part(buf, msg, part->message, extended);
		mime_buf_add_printf(buf, " %zu", part->body_lines);
	} else if (strcmp(part->type, "TEXT") == 0) {
		mime_buf_add_printf(buf, " %zu", part->body_lines);
	}

	if (extended) {
		mime_buf_add_char(buf, ' ');
		mime_buf_add_nstring(buf, part->md5);
		mime_buf_add_char(buf, ' ');
		add_extension_tail(buf, part);
	}
	mime_buf_add_char(buf, ')');
}

static void
render_part(struct mime_buf *buf, const struct mime_message *msg, const struct mime_part *part,
    int extended)
{
	if (part->child_count > 0)
		render_multipart(buf, msg, part, extended);
	else
		render_single(buf, msg, part, extended);
}

char *
mime_bodystructure(const struct mime_message *msg, const struct mime_part *part, int extended,
    size_t *len)
{
	struct mime_buf buf = { 0 };

	render_part(&buf, msg, part, extended);
	return mime_buf_take(&buf, len);
}
