/* Reading the header edits and the SMTP reply of filterd's RESULT. */
#include <stdlib.h>
#include <string.h>

#include "filter_proto.h"
#include "filter_reply.h"
#include "util.h"

/* Return 1 when LINE starts a header field: a printable name, then a colon. */
static int
field_start_valid(const char *line)
{
	size_t i = 0;

	while (line[i] > ' ' && line[i] < 127 && line[i] != ':')
		i++;
	return i > 0 && line[i] == ':';
}

/* Join the FILTER_KEY_FIELD lines of MSG into whole fields. */
static const char *
parse_fields(const struct ipc_msg *msg, struct header_edits *edits)
{
	size_t count = ipc_msg_count(msg, FILTER_KEY_FIELD);

	for (size_t i = 0; i < count; i++) {
		const char *line = ipc_msg_get_nth(msg, FILTER_KEY_FIELD, i);
		int continuation = line[0] == ' ' || line[0] == '\t';

		if (continuation && edits->nfields == 0)
			return "a field continuation line comes first";
		if (!continuation && !field_start_valid(line))
			return "invalid header field name";
		if (!continuation) {
			if (edits->nfields == FILTER_REPLY_MAX_FIELDS)
				return "too many header fields";
			edits->fields = xrealloc(edits->fields,
			    (edits->nfields + 1) * sizeof *edits->fields);
			edits->fields[edits->nfields++] = xstrdup(line);
			continue;
		}

		char **field = &edits->fields[edits->nfields - 1];
		size_t len = strlen(*field), add = strlen(line);

		if (len + add + 1 > FILTER_REPLY_MAX_FIELD_LEN)
			return "header field too long";
		*field = xrealloc(*field, len + add + 2);
		(*field)[len] = '\n';
		memcpy(*field + len + 1, line, add + 1);
	}
	return NULL;
}

/* Parse the "NAME:INDEX" removals of MSG. */
static const char *
parse_removals(const struct ipc_msg *msg, struct header_edits *edits)
{
	size_t count = ipc_msg_count(msg, FILTER_KEY_REMOVE);

	if (count > FILTER_REPLY_MAX_REMOVALS)
		return "too many removals";
	edits->removals = xcalloc(count + 1, sizeof *edits->removals);
	for (size_t i = 0; i < count; i++) {
		const char *value = ipc_msg_get_nth(msg, FILTER_KEY_REMOVE, i);
		const char *colon = strrchr(value, ':');
		struct header_removal *removal = &edits->removals[i];
		unsigned long index;
		char *end;

		if (colon == NULL || colon == value ||
		    (size_t)(colon - value) >= sizeof removal->name)
			return "invalid removal";
		index = strtoul(colon + 1, &end, 10);
		if (*end != '\0' || index == 0 || index > FILTER_REPLY_MAX_INDEX)
			return "invalid removal index";
		memcpy(removal->name, value, (size_t)(colon - value));
		removal->name[colon - value] = '\0';
		removal->index = (unsigned)index;
		edits->nremovals++;
	}
	return NULL;
}

const char *
filter_reply_edits(const struct ipc_msg *msg, struct header_edits *edits)
{
	const char *prefix = ipc_msg_get(msg, FILTER_KEY_SUBJECT_PREFIX);
	const char *error;

	if ((error = parse_fields(msg, edits)) != NULL)
		return error;
	if ((error = parse_removals(msg, edits)) != NULL)
		return error;
	if (prefix != NULL && strlcpy_x(edits->subject_prefix, prefix,
	    sizeof edits->subject_prefix) >= sizeof edits->subject_prefix)
		return "subject prefix too long";
	return NULL;
}

int
filter_reply_valid(const char *reply, int permanent)
{
	char expected = permanent ? '5' : '4';

	return reply != NULL && reply[0] == expected && reply[1] >= '0' && reply[1] <= '9' &&
	    reply[2] >= '0' && reply[2] <= '9' && reply[3] == ' ';
}
