/* Envelope addresses given on the command line or in SMTP, and the invoking user. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "header.h"
#include "sendmail.h"
#include "util.h"

void
address_list_add(struct address_list *list, const char *address)
{
	for (size_t i = 0; i < list->count; i++)
		if (strcmp(list->items[i], address) == 0)
			return;
	if (list->count == list->capacity) {
		list->capacity = list->capacity == 0 ? 8 : list->capacity * 2;
		list->items = xrealloc(list->items, list->capacity * sizeof *list->items);
	}
	list->items[list->count++] = xstrdup(address);
}

void
address_list_free(struct address_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->items[i]);
	free(list->items);
	memset(list, 0, sizeof *list);
}

const char *
my_hostname(void)
{
	return config_myhostname();
}

int
address_normalize(const char *text, char *out, size_t outsize)
{
	char *found[1] = { NULL };
	char candidate[ADDR_MAX * 4 + 2];
	struct mailaddr parsed;
	const char *why;
	size_t count;

	if (*text == '\0' || strcmp(text, "<>") == 0) {
		*out = '\0';
		return 1;
	}

	/* As Postfix does, read TEXT like a header field: "Name <addr>" works too. */
	count = header_addresses(text, found, 1);
	if (count == 0 || found[0] == NULL || *found[0] == '\0') {
		free(found[0]);
		return -1;
	}
	if (strchr(found[0], '@') == NULL)
		snprintf(candidate, sizeof candidate, "%s@%s", found[0], my_hostname());
	else
		snprintf(candidate, sizeof candidate, "%s", found[0]);
	free(found[0]);

	if (addr_parse_plain(candidate, ADDR_ALLOW_UTF8, &parsed, &why) < 0)
		return -1;
	addr_format(&parsed, out, outsize);
	return 0;
}

int
local_user_get(struct local_user *user)
{
	struct passwd *pw = getpwuid(getuid());

	memset(user, 0, sizeof *user);
	user->uid = getuid();
	if (pw == NULL)
		return -1;
	strlcpy_x(user->name, pw->pw_name, sizeof user->name);
	if (pw->pw_gecos != NULL) {
		strlcpy_x(user->gecos_name, pw->pw_gecos, sizeof user->gecos_name);
		user->gecos_name[strcspn(user->gecos_name, ",")] = '\0';
	}
	return 0;
}

/* Add every address in TEXT (a list such as "a, Name <b@c>") to LIST. -1 if one is invalid. */
int
address_list_add_text(struct address_list *list, const char *text)
{
	size_t count = header_addresses(text, NULL, 0);
	char **found;
	int rc = count > 0 ? 0 : -1;

	if (count == 0)
		return -1;
	found = xcalloc(count, sizeof *found);
	count = header_addresses(text, found, count);
	for (size_t i = 0; i < count; i++) {
		char normalized[ADDR_MAX * 4 + 2];

		if (address_normalize(found[i], normalized, sizeof normalized) == 0)
			address_list_add(list, normalized);
		else
			rc = -1;
		free(found[i]);
	}
	free(found);
	return rc;
}
