/* The SpamAssassin check: spamd's verdict into header fields and actions. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "scanner_io.h"
#include "spamc.h"
#include "util.h"

/* The fields that spamd's verdict sets; copies in the incoming message
 * are removed so that no sender can forge them. */
static const char *const spam_fields[] = { "X-Spam-Status", "X-Spam-Flag", "X-Spam-Level" };
#define NSPAM_FIELDS (sizeof spam_fields / sizeof spam_fields[0])

#define SYMBOLS_LOG_MAX 200

/* Count the fields in the header section of the spool file whose name is
 * one of spam_fields, reading it a chunk at a time. */
static int
count_spam_fields(const struct filter_message *msg, unsigned counts[NSPAM_FIELDS],
    char *err, size_t errsize)
{
	char buf[16384], name[32];
	size_t linelen = 0, namelen = 0;
	int name_done = 0;
	off_t offset = 0;

	memset(counts, 0, NSPAM_FIELDS * sizeof counts[0]);
	while (offset < msg->size) {
		ssize_t got = pread(msg->fd, buf, sizeof buf, offset);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(err, errsize, "reading the spool file failed: %s", strerror(errno));
			return -1;
		}
		if (got == 0)
			return 0;

		for (ssize_t i = 0; i < got; i++) {
			char c = buf[i];

			if (c == '\n') {
				if (linelen == 0)
					return 0;	/* the empty line ends the header */
				linelen = namelen = 0;
				name_done = 0;
				continue;
			}
			if (linelen++ == 0 && (c == ' ' || c == '\t'))
				name_done = 1;	/* a continuation line */
			if (name_done)
				continue;

			if (c == ':') {
				while (namelen > 0 && (name[namelen - 1] == ' ' || name[namelen - 1] == '\t'))
					namelen--;	/* RFC 5322 obsolete syntax: WSP before the colon */
				name[namelen] = '\0';
				for (size_t f = 0; f < NSPAM_FIELDS; f++)
					if (ascii_casecmp(name, spam_fields[f]) == 0)
						counts[f]++;
				name_done = 1;
			} else if (namelen + 1 < sizeof name) {
				name[namelen++] = c;
			} else {
				name_done = 1;
			}
		}
		offset += got;
	}
	return 0;
}

/*
 * Remove every incoming X-Spam-* field, the last one of each name first,
 * so that the indexes stay right whether removals are applied one after
 * another or all against the original header. When there are more than
 * FILTER_MAX_REMOVALS, filter_result_remove rejects the message, so no
 * forged field reaches the mailbox.
 */
static int
remove_spam_fields(const struct filter_message *msg, struct filter_result *result,
    char *err, size_t errsize)
{
	unsigned counts[NSPAM_FIELDS];

	if (count_spam_fields(msg, counts, err, errsize) < 0)
		return -1;

	for (size_t f = 0; f < NSPAM_FIELDS; f++) {
		for (unsigned index = counts[f]; index > 0; index--) {
			if (filter_result_remove(result, spam_fields[f], index) < 0) {
				log_warn("%s: rejecting the message: too many X-Spam-* fields to "
				    "remove (at most %d per message, %d of one name)", msg->queue_id,
				    FILTER_MAX_REMOVALS, FILTER_MAX_REMOVAL_INDEX);
				return 0;
			}
		}
	}
	return 0;
}

/*
 * Copy the rule names of X-Spam-Status ("tests=GTUBE,NO_RECEIVED,
 * NO_RELAYS") into OUT, joined by commas. SpamAssassin folds the list
 * after a comma, so a token that ends with a comma continues on the
 * next one.
 */
static void
status_symbols(const char *status, char *out, size_t outsize)
{
	const char *p = strstr(status, "tests=");
	size_t used = 0;

	out[0] = '\0';
	if (p == NULL)
		return;

	for (p += 6; *p != '\0'; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n') {
			if (used == 0 || out[used - 1] != ',')
				break;
			continue;
		}
		if (used + 1 >= outsize) {
			/* Cut at the last whole name, marked with "...". */
			while (used > 0 && out[used - 1] != ',')
				used--;
			if (used + 3 < outsize) {
				memcpy(out + used, "...", 3);
				used += 3;
			}
			break;
		}
		out[used++] = *p;
	}
	out[used] = '\0';
}

/* Add X-Spam-Flag and X-Spam-Status, and log the score and the rules. */
static void
add_fields(struct filter_result *result, const struct spamd_verdict *verdict)
{
	char symbols[SYMBOLS_LOG_MAX];

	if (verdict->spam)
		filter_result_field(result, "X-Spam-Flag: YES");

	if (verdict->status[0] != '\0')
		filter_result_field(result, "X-Spam-Status: %s", verdict->status);
	else
		filter_result_field(result, "X-Spam-Status: %s, score=%s required=%s",
		    verdict->spam ? "Yes" : "No", verdict->score, verdict->threshold);

	filter_result_log(result, "spam=%s/%s", verdict->score, verdict->threshold);
	status_symbols(verdict->status, symbols, sizeof symbols);
	if (symbols[0] != '\0')
		filter_result_log(result, "symbols=%s", symbols);
}

/* Reject, file into Junk or tag, as spam_reject_score and spam_action set. */
static void
apply_verdict(struct filter_result *result, const struct spamd_verdict *verdict)
{
	long long reject_score = config_int("spam_reject_score");
	const char *tag = config_string("spam_subject_tag");
	char reason[64];

	snprintf(reason, sizeof reason, "spam=%s/%s", verdict->score, verdict->threshold);

	if (reject_score > 0 && strtod(verdict->score, NULL) >= (double)reject_score) {
		filter_result_action(result, FILTER_REJECT, "550 5.7.1 Message rejected as spam", reason);
		return;
	}
	if (!verdict->spam)
		return;

	if (tag[0] != '\0')
		snprintf(result->subject_prefix, sizeof result->subject_prefix, "%s ", tag);
	if (strcmp(config_string("spam_action"), "junk") == 0)
		filter_result_action(result, FILTER_QUARANTINE, NULL, reason);
}

int
spamc_init(char *err, size_t errsize)
{
	const char *path = config_string("spamd_socket"), *address = config_string("spamd_address");

	if (path[0] == '\0' && address[0] == '\0') {
		snprintf(err, errsize, "spamd_socket and spamd_address are both empty; set one, "
		    "or take spamassassin out of filterd_checks");
		return -1;
	}
	return scanner_check_target("spamd", path, address, err, errsize);
}

int
spamc_check(const struct filter_message *msg, struct filter_result *result,
    char *err, size_t errsize)
{
	struct spamd_verdict *verdict;
	int rc;

	if (msg->fd < 0)
		return 0;

	if (remove_spam_fields(msg, result, err, errsize) < 0)
		return -1;
	if (result->action == FILTER_REJECT)
		return 0;
	if (msg->outbound && !config_bool("spam_scan_outbound"))
		return 0;

	verdict = xmalloc(sizeof *verdict);
	rc = spamc_query(msg, verdict, err, errsize);
	if (rc == 0) {
		add_fields(result, verdict);
		apply_verdict(result, verdict);
	}
	free(verdict);
	return rc;
}

int
spamc_skipped(const struct filter_message *msg, struct filter_result *result,
    char *err, size_t errsize)
{
	if (msg->fd < 0)
		return 0;
	return remove_spam_fields(msg, result, err, errsize);
}
