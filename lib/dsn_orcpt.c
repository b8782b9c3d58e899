/* Validation of the stored DSN ORCPT parameter. */
#include <string.h>

#include "dsn_orcpt.h"

/* Return whether C may appear in an atom: printable ASCII other than
 * space and the specials of RFC 822 section 3.3. */
static int
atom_char(unsigned char c)
{
	return c > ' ' && c < 0x7f && strchr("()<>@,;:\\\".[]", c) == NULL;
}

int
dsn_orcpt_valid(const char *orcpt)
{
	const char *semicolon = strchr(orcpt, ';');

	if (semicolon == NULL || semicolon == orcpt || semicolon[1] == '\0' ||
	    strlen(orcpt) > DSN_ORCPT_STORED_MAX)
		return 0;

	for (const char *p = orcpt; p < semicolon; p++)
		if (!atom_char((unsigned char)*p))
			return 0;
	for (const char *p = semicolon + 1; *p != '\0'; p++)
		if ((unsigned char)*p < ' ' || (unsigned char)*p > '~')
			return 0;
	return 1;
}
