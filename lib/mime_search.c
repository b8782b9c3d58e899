/* SEARCH support: decoded text of parts and headers, and substring
 * matching that ignores case. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime_internal.h"
#include "util.h"

/* Simple lower-case mapping for the scripts named in mime.h. */
static uint32_t
fold_code_point(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		return c + 32;
	if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177))
		return c | 1;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
		return (c & 1) ? c + 1 : c;
	if (c == 0x178)
		return 0xFF;
	if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
		return c + 32;
	if (c == 0x3C2)		/* final sigma */
		return 0x3C3;
	if (c == 0x386)
		return 0x3AC;
	if (c >= 0x388 && c <= 0x38A)
		return c + 37;
	if (c == 0x38C)
		return 0x3CC;
	if (c == 0x38E || c == 0x38F)
		return c + 63;
	if (c >= 0x410 && c <= 0x42F)
		return c + 32;
	if (c >= 0x400 && c <= 0x40F)
		return c + 80;
	return c;
}

/* Decode the two-byte UTF-8 sequence at P, the only length whose code
 * points fold here besides ASCII. Returns 0 if P does not start one. */
static uint32_t
two_byte_code_point(const unsigned char *p, size_t left)
{
	if (left < 2 || (p[0] & 0xE0) != 0xC0 || (p[1] & 0xC0) != 0x80 || p[0] < 0xC2)
		return 0;
	return ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
}

/* Fold LEN bytes of UTF-8 into a new buffer of the same length: every
 * mapping above keeps the encoded length, and other bytes are copied. */
static char *
fold_utf8(const char *in, size_t len)
{
	const unsigned char *p = (const unsigned char *)in;
	char *out = xmalloc(len + 1);
	size_t i = 0;

	while (i < len) {
		uint32_t c;

		if (p[i] < 0x80) {
			out[i] = (char)fold_code_point(p[i]);
			i++;
			continue;
		}
		c = two_byte_code_point(p + i, len - i);
		if (c == 0) {
			out[i] = (char)p[i];
			i++;
			continue;
		}
		c = fold_code_point(c);
		out[i] = (char)(0xC0 | (c >> 6));
		out[i + 1] = (char)(0x80 | (c & 0x3F));
		i += 2;
	}
	out[len] = '\0';
	return out;
}

int
mime_utf8_contains(const char *haystack, size_t haystack_len, const char *needle,
    size_t needle_len)
{
	char *folded_haystack, *folded_needle;
	int found;

	if (needle_len == 0)
		return 1;
	if (needle_len > haystack_len)
		return 0;

	folded_haystack = fold_utf8(haystack, haystack_len);
	folded_needle = fold_utf8(needle, needle_len);
	found = memmem(folded_haystack, haystack_len, folded_needle, needle_len) != NULL;
	free(folded_haystack);
	free(folded_needle);
	return found;
}

char *
mime_part_text(const struct mime_message *msg, const struct mime_part *part, size_t *out_len)
{
	const struct mime_param *charset;
	char *decoded, *text;
	size_t decoded_len;

	if (strcmp(part->type, "TEXT") != 0 || part->child_count > 0)
		return NULL;
	if (mime_binary_decode(msg, part, &decoded, &decoded_len) != 0) {
		/* An unknown transfer encoding is searched as it is. */
		decoded = xstrndup(msg->data + part->body_offset, part->body_len);
		decoded_len = part->body_len;
	}

	charset = mime_param_find(part->params, part->param_count, "CHARSET");
	text = mime_charset_to_utf8(charset != NULL ? charset->value : "us-ascii", decoded,
	    decoded_len, out_len);
	free(decoded);
	return text;
}

/* The whole header section of PART, unfolded and decoded. */
static int
header_contains(const struct mime_message *msg, const struct mime_part *part, const char *needle)
{
	char *decoded = mime_decode_header(msg->data + part->offset, part->header_len);
	int found = mime_utf8_contains(decoded, strlen(decoded), needle, strlen(needle));

	free(decoded);
	return found;
}

int
mime_search_header(const struct mime_message *msg, const char *name, const char *needle)
{
	const struct header_list *headers = &msg->root.headers;
	size_t name_len = strlen(name);

	for (size_t i = 0; i < headers->count; i++) {
		const struct header_field *field = &headers->fields[i];
		char *decoded;
		int found;

		if (field->namelen != name_len || ascii_ncasecmp(field->name, name, name_len) != 0)
			continue;
		decoded = mime_decode_header(field->value, field->valuelen);
		found = mime_utf8_contains(decoded, strlen(decoded), needle, strlen(needle));
		free(decoded);
		if (found)
			return 1;
	}
	return 0;
}

/* Text parts anywhere below PART, and the headers of enclosed messages,
 * which are part of the outer message's body. */
static int
body_contains(const struct mime_message *msg, const struct mime_part *part, const char *needle)
{
	char *text;
	size_t len;
	int found;

	for (size_t i = 0; i < part->child_count; i++)
		if (body_contains(msg, &part->children[i], needle))
			return 1;
	if (part->message != NULL)
		return header_contains(msg, part->message, needle) ||
		    body_contains(msg, part->message, needle);

	text = mime_part_text(msg, part, &len);
	if (text == NULL)
		return 0;
	found = mime_utf8_contains(text, len, needle, strlen(needle));
	free(text);
	return found;
}

int
mime_search_body(const struct mime_message *msg, const char *needle)
{
	return body_contains(msg, &msg->root, needle);
}

int
mime_search_text(const struct mime_message *msg, const char *needle)
{
	return header_contains(msg, &msg->root, needle) || mime_search_body(msg, needle);
}
