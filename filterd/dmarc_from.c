/*
 * The From: domains of a message for DMARC. RFC 5322 allows exactly one
 * From: field, and RFC 7489 section 6.6.1 evaluates a single author
 * domain, but mail readers show whatever a message carries: a second
 * From: field, a second address, or a field after a line that is not a
 * field. So every address of every From: field is collected here, and
 * the check applies the strictest policy among their domains, so that a
 * second author cannot hide one that publishes p=reject.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>

#include "dkim.h"
#include "dmarc.h"
#include "header.h"
#include "util.h"

/* The maximum number of addresses read from one From: field. */
#define FIELD_ADDRESSES_MAX (DMARC_FROM_MAX + 1)

/* Whether DOMAIN is a host name in ASCII that can go into
 * Authentication-Results and SMTP replies as it is. */
static int
domain_valid(const char *domain)
{
	if (domain[0] == '\0' || domain[0] == '.')
		return 0;
	for (const char *p = domain; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			return 0;
	}
	return 1;
}

/* Copy the domain of ADDRESS into OUT in lower case, a UTF-8 domain
 * (a U-label, RFC 6531) as its A-label, under which DNS publishes its
 * records. Returns 0, or -1 when there is no valid domain. */
static int
address_domain(const char *address, char *out, size_t size)
{
	const char *at = strrchr(address, '@');
	char *ascii = NULL;
	int rc = -1;

	if (at == NULL || at[1] == '\0')
		return -1;
	for (const char *p = at + 1; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80) {
			if (idn2_to_ascii_8z(at + 1, &ascii, IDN2_NONTRANSITIONAL) != IDN2_OK)
				return -1;
			break;
		}
	}

	if (strlen(ascii != NULL ? ascii : at + 1) < size) {
		strlcpy_x(out, ascii != NULL ? ascii : at + 1, size);
		ascii_lower(out);
		rc = domain_valid(out) ? 0 : -1;
	}
	idn2_free(ascii);
	return rc;
}

/* Add DOMAIN to FROM unless it is there already. */
static void
domain_add(struct dmarc_from *from, const char *domain)
{
	for (size_t i = 0; i < from->count; i++) {
		if (strcmp(from->domains[i], domain) == 0)
			return;
	}
	if (from->count == DMARC_FROM_MAX) {
		from->too_many = 1;
		return;
	}
	strlcpy_x(from->domains[from->count++], domain, sizeof from->domains[0]);
}

/* Add the domains of the From: field FIELD to FROM. */
static void
field_domains_add(const struct header_field *field, struct dmarc_from *from)
{
	char *value = header_unfold(field), *addresses[FIELD_ADDRESSES_MAX] = { 0 };
	size_t count = header_addresses(value, addresses, FIELD_ADDRESSES_MAX);

	free(value);
	from->addresses += count;
	if (count > FIELD_ADDRESSES_MAX) {
		from->too_many = 1;
		count = FIELD_ADDRESSES_MAX;
	}

	for (size_t i = 0; i < count; i++) {
		char domain[256];

		if (addresses[i] != NULL && address_domain(addresses[i], domain, sizeof domain) == 0)
			domain_add(from, domain);
		else
			from->invalid++;
		free(addresses[i]);
	}
}

int
dmarc_from_read(const struct filter_message *msg, struct dmarc_from *from, char *err,
    size_t errsize)
{
	struct spool_header header;
	struct header_list list = { 0 };

	memset(from, 0, sizeof *from);
	if (spool_header_read(msg->fd, msg->size, &header, err, errsize) < 0)
		return -1;
	spool_header_fields(&header, &list);

	for (size_t i = 0; i < list.count; i++) {
		const struct header_field *field = &list.fields[i];

		if (field->namelen != 4 || ascii_ncasecmp(field->name, "From", 4) != 0)
			continue;
		from->fields++;
		field_domains_add(field, from);
	}

	header_list_free(&list);
	spool_header_free(&header);
	return 0;
}
