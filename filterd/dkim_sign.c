/*
 * DKIM signing (RFC 6376) of outbound mail at the message stage, with
 * the key that dkim_signing_table lists for the From: domain, relaxed
 * canonicalization of header and body, and From oversigned. The check
 * runs after the checks that edit the header, so it signs the header as
 * it will be stored: with the fields they insert, without the fields in
 * result->removals, and with result->subject_prefix in the Subject: field.
 * Mail of a login (SMTP AUTH, or a local submission's user) is signed
 * only when the login owns every address in its From: fields, by the
 * rules smtpd applies after AUTH (sender_login.h).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "config.h"
#include "dkim.h"
#include "header.h"
#include "log.h"
#include "sender_login.h"
#include "util.h"

#define SIGNATURE_FIELD "DKIM-Signature"

/* Maximum number of From: addresses checked per message; a message with
 * more is not signed. */
#define FROM_OWNER_MAX 32

/* smtpd_sender_login_maps. The map reloads itself when its file changes,
 * so the worker threads take turns with it. */
static struct sender_login_map *from_owners;
static pthread_mutex_t from_owners_lock = PTHREAD_MUTEX_INITIALIZER;

/* Whether RESULT removes FIELD, the INDEXth (1-based) field of its name. */
static int
field_removed(const struct filter_result *result, const struct header_field *field,
    unsigned index)
{
	for (size_t i = 0; i < result->nremovals; i++) {
		const char *name = result->removals[i].name;

		if (result->removals[i].index == index && strlen(name) == field->namelen &&
		    ascii_ncasecmp(name, field->name, field->namelen) == 0)
			return 1;
	}
	return 0;
}

/* The number of fields before FIELDS[AT] with the same name, plus one. */
static unsigned
field_index(const struct header_list *list, size_t at)
{
	const struct header_field *field = &list->fields[at];
	unsigned index = 1;

	for (size_t i = 0; i < at; i++) {
		if (list->fields[i].namelen == field->namelen &&
		    ascii_ncasecmp(list->fields[i].name, field->name, field->namelen) == 0)
			index++;
	}
	return index;
}

static int
field_named(const struct header_field *field, const char *name)
{
	return field->namelen == strlen(name) &&
	    ascii_ncasecmp(field->name, name, field->namelen) == 0;
}

/* FIELD (a Subject: field) with PREFIX at the start of its value, after
 * the white space that follows the colon. */
static char *
subject_with_prefix(const struct header_field *field, const char *prefix)
{
	const char *value = field->value, *end = field->start + field->len;
	char *joined, *crlf;

	while (value < end && (*value == ' ' || *value == '\t'))
		value++;
	joined = xasprintf("%.*s%s%.*s", (int)(value - field->start), field->start, prefix,
	    (int)(end - value), value);
	crlf = dkim_field_crlf(joined, strlen(joined));
	free(joined);
	return crlf;
}

/* The first From: address domain of the header as it will be stored, in
 * DOMAIN. Returns 0, or -1 when there is none. */
static int
from_domain(const struct header_list *list, const struct filter_result *result, char *domain,
    size_t size)
{
	char *addresses[4] = { 0 };
	size_t count = 0;
	int rc = -1;

	for (size_t i = 0; i < list->count; i++) {
		const struct header_field *field = &list->fields[i];
		char *value;

		if (!field_named(field, "From") || field_removed(result, field, field_index(list, i)))
			continue;
		value = header_unfold(field);
		count = header_addresses(value, addresses, 4);
		free(value);
		break;
	}
	if (count > 0 && addresses[0] != NULL) {
		const char *at = strrchr(addresses[0], '@');

		if (at != NULL && at[1] != '\0') {
			strlcpy_x(domain, at + 1, size);
			rc = 0;
		}
	}
	for (size_t i = 0; i < count && i < 4; i++)
		free(addresses[i]);
	return rc;
}

/* Whether LOGIN owns ADDRESS (text from a From: field): 1 yes, 0 no, -1
 * when the map cannot be read. No login owns an invalid address. */
static int
address_owned(const char *login, const char *address)
{
	struct mailaddr parsed;
	const char *why;
	int rc;

	if (addr_parse_plain(address, ADDR_ALLOW_UTF8, &parsed, &why) < 0)
		return 0;

	pthread_mutex_lock(&from_owners_lock);
	if (from_owners == NULL)
		from_owners = sender_login_map_new(config_string("smtpd_sender_login_maps"),
		    config_string("recipient_delimiter")[0]);
	rc = sender_login_owns(from_owners, login, &parsed);
	pthread_mutex_unlock(&from_owners_lock);
	return rc;
}

/* Whether C may be part of an address around an '@': the atext of RFC
 * 5322, dots, and the bytes of UTF-8 sequences. */
static int
address_char(unsigned char c)
{
	return c >= 0x80 || isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL;
}

/*
 * Whether LOGIN owns every address-like token (the text around each '@')
 * in VALUE, a From: field's value, in a display name, a group name or a
 * comment too. Mail readers disagree on which address of an odd field is
 * the author (the first of two angle addresses, say), so no address in
 * the field may be someone else's. Returns as from_owned does.
 */
static int
tokens_owned(const char *login, const char *value, char *foreign, size_t size)
{
	for (const char *at = strchr(value, '@'); at != NULL; at = strchr(at + 1, '@')) {
		const char *start = at, *end = at + 1;
		char token[ADDR_MAX * 4 + 8];
		int owned;

		while (start > value && address_char((unsigned char)start[-1]))
			start--;
		while (*end != '\0' && address_char((unsigned char)*end))
			end++;
		if ((size_t)(end - start) >= sizeof token) {
			strlcpy_x(foreign, "(an overlong address)", size);
			return 0;
		}
		memcpy(token, start, (size_t)(end - start));
		token[end - start] = '\0';

		owned = address_owned(login, token);
		if (owned == 0)
			strlcpy_x(foreign, token, size);
		if (owned != 1)
			return owned;
	}
	return 1;
}

/*
 * Whether LOGIN owns every address in the From: fields of the header as
 * it will be stored (tokens_owned). A field with an address that has no
 * domain, or with more than FROM_OWNER_MAX addresses, belongs to no
 * login. Returns 1 yes, 0 no, or -1 when the map cannot be read. On 0,
 * FOREIGN gets the first address LOGIN does not own.
 */
static int
from_owned(const struct header_list *list, const struct filter_result *result, const char *login,
    char *foreign, size_t size)
{
	int owned = 1;

	for (size_t i = 0; i < list->count && owned == 1; i++) {
		const struct header_field *field = &list->fields[i];
		char *addresses[FROM_OWNER_MAX], *value;
		size_t count, stored;

		if (!field_named(field, "From") || field_removed(result, field, field_index(list, i)))
			continue;
		value = header_unfold(field);
		owned = tokens_owned(login, value, foreign, size);
		count = header_addresses(value, addresses, FROM_OWNER_MAX);
		free(value);
		stored = count < FROM_OWNER_MAX ? count : FROM_OWNER_MAX;

		/* tokens_owned has checked every address with an '@'. */
		for (size_t j = 0; j < stored && owned == 1; j++) {
			if (strchr(addresses[j], '@') != NULL)
				continue;
			owned = 0;
			strlcpy_x(foreign, addresses[j], size);
		}
		if (owned == 1 && count > FROM_OWNER_MAX) {
			owned = 0;
			snprintf(foreign, size, "(more than %d addresses)", FROM_OWNER_MAX);
		}
		for (size_t j = 0; j < stored; j++)
			free(addresses[j]);
	}
	return owned;
}

/* Pass the header as it will be stored to DKIM: the fields the checks
 * before this one insert at the top, then the spool file's fields. */
static DKIM_STAT
headers_feed(DKIM *dkim, const struct header_list *list, const struct filter_result *result)
{
	DKIM_STAT status = DKIM_STAT_OK;
	int subject_done = 0;

	for (size_t i = 0; i < result->nfields && status == DKIM_STAT_OK; i++) {
		char *text = dkim_field_crlf(result->fields[i], strlen(result->fields[i]));

		status = dkim_header(dkim, (unsigned char *)text, strlen(text));
		free(text);
	}

	for (size_t i = 0; i < list->count && status == DKIM_STAT_OK; i++) {
		const struct header_field *field = &list->fields[i];
		char *text;

		if (field_removed(result, field, field_index(list, i)))
			continue;
		if (!subject_done && result->subject_prefix[0] != '\0' &&
		    field_named(field, "Subject")) {
			text = subject_with_prefix(field, result->subject_prefix);
			subject_done = 1;
		} else {
			text = dkim_field_crlf(field->start, field->len);
		}
		status = dkim_header(dkim, (unsigned char *)text, strlen(text));
		free(text);
	}
	return status;
}

static int
body_feed(void *context, const unsigned char *data, size_t len)
{
	DKIM *dkim = context;

	return dkim_body(dkim, (unsigned char *)data, len) == DKIM_STAT_OK ? 0 : 1;
}

/* Add the signature of DKIM to RESULT as a DKIM-Signature: field, its
 * folded lines joined by LF. */
static int
signature_add(DKIM *dkim, struct filter_result *result, char *err, size_t errsize)
{
	unsigned char *value = NULL;
	size_t len = 0;
	char *text;
	size_t n = 0;
	DKIM_STAT status;

	status = dkim_getsighdr_d(dkim, strlen(SIGNATURE_FIELD ": "), &value, &len);
	if (status != DKIM_STAT_OK || value == NULL) {
		snprintf(err, errsize, "cannot format the DKIM signature: %s",
		    dkim_getresultstr(status));
		return -1;
	}
	text = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++) {
		if (value[i] != '\r')
			text[n++] = (char)value[i];
	}
	text[n] = '\0';
	if (filter_result_field(result, SIGNATURE_FIELD ": %s", text) < 0) {
		snprintf(err, errsize, "cannot add the DKIM-Signature field: too many fields");
		free(text);
		return -1;
	}
	free(text);
	return 0;
}

/* Sign the message of MSG whose header is in LIST with KEY. */
static int
message_sign(const struct filter_message *msg, const struct header_list *list, off_t body_offset,
    const struct dkim_signing_key *key, struct filter_result *result, char *err, size_t errsize)
{
	DKIM_STAT status;
	DKIM *dkim;
	int rc = -1;

	dkim = dkim_sign(dkim_library(), (const unsigned char *)msg->queue_id, NULL,
	    (dkim_sigkey_t)key->pem, (const unsigned char *)key->selector,
	    (const unsigned char *)key->domain, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
	    key->ed25519 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256, -1, &status);
	if (dkim == NULL) {
		snprintf(err, errsize, "cannot start DKIM signing for %s: %s", key->domain,
		    dkim_getresultstr(status));
		return -1;
	}

	status = headers_feed(dkim, list, result);
	if (status == DKIM_STAT_OK)
		status = dkim_eoh(dkim);
	if (status == DKIM_STAT_OK &&
	    spool_body_feed(msg->fd, body_offset, msg->size, body_feed, dkim) != 0)
		status = DKIM_STAT_INTERNAL;
	if (status == DKIM_STAT_OK)
		status = dkim_eom(dkim, NULL);

	if (status != DKIM_STAT_OK) {
		const char *detail = dkim_geterror(dkim);

		snprintf(err, errsize, "DKIM signing for %s failed: %s", key->domain,
		    detail != NULL && detail[0] != '\0' ? detail : dkim_getresultstr(status));
	} else {
		rc = signature_add(dkim, result, err, errsize);
	}
	dkim_free(dkim);
	return rc;
}

int
dkim_sign_check(const struct filter_message *msg, struct filter_result *result, char *err,
    size_t errsize)
{
	struct spool_header header;
	struct header_list list = { 0 };
	struct dkim_signing_key key = { 0 };
	char domain[256], foreign[ADDR_MAX * 4 + 8], clean[512], login[512];
	int owned = 1, rc = 0;

	if (!msg->outbound)
		return 0;

	if (spool_header_read(msg->fd, msg->size, &header, err, errsize) < 0)
		return -1;
	spool_header_fields(&header, &list);

	if (msg->auth_user[0] != '\0')
		owned = from_owned(&list, result, msg->auth_user, foreign, sizeof foreign);

	if (owned < 0) {
		snprintf(err, errsize, "smtpd_sender_login_maps %s cannot be read",
		    config_string("smtpd_sender_login_maps"));
		rc = -1;
	} else if (owned == 0) {
		log_sanitize(login, sizeof login, msg->auth_user, strlen(msg->auth_user));
		filter_result_log(result, "dkim_sign=none (From: %s not owned by %s)",
		    log_sanitize(clean, sizeof clean, foreign, strlen(foreign)), login);
	} else if (from_domain(&list, result, domain, sizeof domain) < 0) {
		filter_result_log(result, "dkim_sign=none (no From: address)");
	} else if (dkim_signing_key_find(domain, &key) < 0) {
		filter_result_log(result, "dkim_sign=none (no key for %s)",
		    log_sanitize(clean, sizeof clean, domain, strlen(domain)));
	} else {
		rc = message_sign(msg, &list, header.body_offset, &key, result, err, errsize);
		if (rc == 0)
			filter_result_log(result, "dkim_sign=%s/%s", key.domain, key.selector);
		free(key.pem);
	}

	header_list_free(&list);
	spool_header_free(&header);
	return rc;
}
