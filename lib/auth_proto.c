#include <string.h>

#include "auth_proto.h"

const char *
auth_proto_field(char *fields, const char *name)
{
	size_t n = strlen(name);

	for (char *p = fields; p != NULL; ) {
		char *tab = strchr(p, '\t');

		if (tab != NULL)
			*tab = '\0';
		if (strncmp(p, name, n) == 0 && p[n] == '=')
			return p + n + 1;
		p = tab != NULL ? tab + 1 : NULL;
	}
	return "";
}

int
auth_proto_has_field(const char *fields, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = fields; p != NULL; p = strchr(p, '\t')) {
		if (*p == '\t')
			p++;
		if (strncmp(p, name, n) == 0 && (p[n] == '\t' || p[n] == '\0'))
			return 1;
	}
	return 0;
}
