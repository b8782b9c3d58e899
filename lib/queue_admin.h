/*
 * Blocking client for queued's admin requests (LIST, SHOW, FLUSH,
 * DELETE; see queue_proto.h), and the mailq listing in Postfix's format.
 * Used by sendmail (mailq, -q) and by `estafeta queue`.
 */
#ifndef ESTAFETA_QUEUE_ADMIN_H
#define ESTAFETA_QUEUE_ADMIN_H

#include <stddef.h>
#include <stdio.h>

#include "queue_proto.h"

/* Results besides 0 (done). */
#define QUEUE_ADMIN_UNAVAILABLE	(-1)	/* queued is not running or did not reply */
#define QUEUE_ADMIN_REFUSED	(-2)	/* queued replied ERROR; its reason is in ERR */

struct queue_rcpt {
	char *address;
	char *status;		/* pending, deferred, sent or bounced */
	char *reason;		/* "" when there is none */
};

struct queue_entry {
	char id[QUEUE_ID_MAX];
	long long arrival;	/* Unix seconds */
	long long size;		/* bytes */
	char *sender;		/* "" for the null sender */
	char queue[16];		/* active or deferred */
	long long next_attempt;
	long long attempts;
	struct queue_rcpt *rcpts;
	size_t nrcpts;
};

/* Every queued message, in queued's order. */
int queue_admin_list(const char *socket_path, struct queue_entry **entries, size_t *count,
    char *err, size_t errsize);
void queue_entries_free(struct queue_entry *entries, size_t count);
void queue_entry_clear(struct queue_entry *entry);

/* The envelope of ID in ENTRY and a readable descriptor of its data in *DATA_FD. */
int queue_admin_show(const char *socket_path, const char *id, struct queue_entry *entry,
    int *data_fd, char *err, size_t errsize);

/* Ask for an immediate delivery attempt of ID, or of every message (ID NULL). */
int queue_admin_flush(const char *socket_path, const char *id, long long *count, char *err,
    size_t errsize);

int queue_admin_delete(const char *socket_path, const char *id, char *err, size_t errsize);

/*
 * Print ENTRIES as Postfix's mailq does with long queue ids. A heading
 * comes first, then one block per message: id ('*' appended when active),
 * size, arrival time and sender, then each recipient not yet delivered
 * with the reason of a deferral in parentheses above it. The last line is
 * "-- N Kbytes in M Requests." or "Mail queue is empty".
 */
void queue_list_print(FILE *out, const struct queue_entry *entries, size_t count);

#endif
