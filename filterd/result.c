/* Building a struct filter_result: actions, fields, removals, log text. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "log.h"
#include "util.h"

void
filter_result_action(struct filter_result *result, enum filter_action action,
    const char *reply, const char *reason)
{
	/* A weaker action, or a second one as strong, keeps the first reply. */
	if (action < result->action || (action == result->action && action != FILTER_ACCEPT))
		return;

	result->action = action;
	strlcpy_x(result->reply, reply != NULL ? reply : "", sizeof result->reply);
	strlcpy_x(result->reason, reason != NULL ? reason : "", sizeof result->reason);
}

static char *
vformat(const char *fmt, va_list ap)
{
	char *text;

	if (vasprintf(&text, fmt, ap) < 0)
		fatalx("out of memory");
	return text;
}

int
filter_result_field(struct filter_result *result, const char *fmt, ...)
{
	va_list ap;

	if (result->nfields == FILTER_MAX_FIELDS)
		return -1;

	va_start(ap, fmt);
	result->fields[result->nfields++] = vformat(fmt, ap);
	va_end(ap);
	return 0;
}

int
filter_result_authres(struct filter_result *result, const char *fmt, ...)
{
	va_list ap;

	if (result->nauthres == FILTER_MAX_FIELDS)
		return -1;

	va_start(ap, fmt);
	result->authres[result->nauthres++] = vformat(fmt, ap);
	va_end(ap);
	return 0;
}

void
filter_result_log(struct filter_result *result, const char *fmt, ...)
{
	size_t used = strlen(result->log);
	va_list ap;

	if (used > 0 && used + 2 < sizeof result->log) {
		memcpy(result->log + used, ", ", 3);
		used += 2;
	}
	if (used + 1 >= sizeof result->log)
		return;

	va_start(ap, fmt);
	vsnprintf(result->log + used, sizeof result->log - used, fmt, ap);
	va_end(ap);
}

int
filter_result_remove(struct filter_result *result, const char *name, unsigned index)
{
	if (result->nremovals == FILTER_MAX_REMOVALS || index > FILTER_MAX_REMOVAL_INDEX) {
		filter_result_action(result, FILTER_REJECT,
		    "550 5.7.1 Message rejected: too many header fields to remove",
		    "too_many_removals");
		return -1;
	}

	if (result->removals == NULL)
		result->removals = xcalloc(FILTER_MAX_REMOVALS, sizeof *result->removals);
	strlcpy_x(result->removals[result->nremovals].name, name,
	    sizeof result->removals[result->nremovals].name);
	result->removals[result->nremovals].index = index;
	result->nremovals++;
	return 0;
}

void
filter_result_free(struct filter_result *result)
{
	for (size_t i = 0; i < result->nfields; i++)
		free(result->fields[i]);
	for (size_t i = 0; i < result->nauthres; i++)
		free(result->authres[i]);
	free(result->removals);
	result->removals = NULL;
	result->nfields = 0;
	result->nauthres = 0;
	result->nremovals = 0;
}
