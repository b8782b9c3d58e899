/* Field splitting shared by authd's two line protocols. */
#include <string.h>

#include "authd.h"

size_t
authd_split_fields(char *line, char **fields, size_t max)
{
	size_t n = 0;

	while (n < max) {
		char *tab = strchr(line, '\t');

		fields[n++] = line;
		if (tab == NULL)
			break;
		*tab = '\0';
		line = tab + 1;
	}
	return n;
}
