/* estafeta queue list | show ID | flush [ID] | delete ID|ALL */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "estafeta.h"
#include "queue_admin.h"
#include "util.h"

static const char *
socket_path(void)
{
	return config_string("queued_socket");
}

/* The exit code for a failed request: queued down, permission denied, or refused. */
static int
failure_exit(int rc, const char *err)
{
	if (rc == QUEUE_ADMIN_UNAVAILABLE)
		return EX_UNAVAILABLE;
	if (strstr(err, "permission denied") != NULL)
		return EX_NOPERM;
	return 1;
}

static int
queue_list(void)
{
	struct queue_entry *entries = NULL;
	size_t count = 0;
	char err[512];
	int rc = queue_admin_list(socket_path(), &entries, &count, err, sizeof err);

	if (rc < 0) {
		print_error("cannot list the queue: %s", err);
		return failure_exit(rc, err);
	}
	queue_list_print(stdout, entries, count);
	queue_entries_free(entries, count);
	return EX_OK;
}

static void
print_time(const char *label, long long seconds)
{
	time_t when = (time_t)seconds;
	char text[64];
	struct tm tm;

	localtime_r(&when, &tm);
	strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S %z", &tm);
	printf("%s: %s\n", label, text);
}

static void
print_envelope(const struct queue_entry *entry)
{
	printf("*** ENVELOPE %s ***\n", entry->id);
	print_time("arrival_time", entry->arrival);
	printf("message_size: %lld\n", entry->size);
	printf("sender: %s\n", *entry->sender != '\0' ? entry->sender : "<>");
	printf("queue: %s\n", entry->queue);
	printf("attempts: %lld\n", entry->attempts);
	if (entry->next_attempt > 0)
		print_time("next_attempt", entry->next_attempt);
	for (size_t i = 0; i < entry->nrcpts; i++) {
		const struct queue_rcpt *rcpt = &entry->rcpts[i];

		printf("recipient: %s status=%s%s%s%s\n", rcpt->address, rcpt->status,
		    *rcpt->reason != '\0' ? " (" : "", rcpt->reason,
		    *rcpt->reason != '\0' ? ")" : "");
	}
}

static int
copy_data(int fd)
{
	char buf[65536];
	ssize_t n;

	fflush(stdout);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
			return -1;
	return n < 0 ? -1 : 0;
}

static int
queue_show(const char *id)
{
	struct queue_entry entry;
	char err[512];
	int fd, rc = queue_admin_show(socket_path(), id, &entry, &fd, err, sizeof err);

	if (rc < 0) {
		print_error("cannot show %s: %s", id, err);
		return failure_exit(rc, err);
	}
	print_envelope(&entry);
	printf("*** MESSAGE %s ***\n", entry.id);
	rc = copy_data(fd);
	close(fd);
	queue_entry_clear(&entry);
	if (rc < 0) {
		print_error("cannot read the message data of %s", id);
		return EX_IOERR;
	}
	return EX_OK;
}

static int
queue_flush(const char *id)
{
	long long count = 0;
	char err[512];
	int rc = queue_admin_flush(socket_path(), id, &count, err, sizeof err);

	if (rc < 0) {
		print_error("cannot flush %s: %s", id != NULL ? id : "the queue", err);
		return failure_exit(rc, err);
	}
	printf("delivery requested for %lld message%s\n", count, count == 1 ? "" : "s");
	return EX_OK;
}

static int
delete_one(const char *id, char *err, size_t errsize)
{
	int rc = queue_admin_delete(socket_path(), id, err, errsize);

	if (rc == 0)
		printf("%s: deleted\n", id);
	return rc;
}

/* ALL deletes what LIST returns at that moment; later arrivals stay. */
static int
queue_delete(const char *id)
{
	struct queue_entry *entries = NULL;
	size_t count = 0, deleted = 0;
	char err[512];
	int rc;

	if (strcmp(id, "ALL") != 0) {
		rc = delete_one(id, err, sizeof err);
		if (rc < 0) {
			print_error("cannot delete %s: %s", id, err);
			return failure_exit(rc, err);
		}
		return EX_OK;
	}

	rc = queue_admin_list(socket_path(), &entries, &count, err, sizeof err);
	if (rc < 0) {
		print_error("cannot list the queue: %s", err);
		return failure_exit(rc, err);
	}
	for (size_t i = 0; i < count; i++) {
		rc = delete_one(entries[i].id, err, sizeof err);
		if (rc == QUEUE_ADMIN_UNAVAILABLE || (rc < 0 && strstr(err, "permission denied"))) {
			print_error("cannot delete %s: %s", entries[i].id, err);
			queue_entries_free(entries, count);
			return failure_exit(rc, err);
		}
		if (rc == 0)
			deleted++;
	}
	queue_entries_free(entries, count);
	printf("deleted %zu message%s\n", deleted, deleted == 1 ? "" : "s");
	return EX_OK;
}

int
queue_command(int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return queue_list();
	if (argc == 2 && strcmp(argv[0], "show") == 0)
		return queue_show(argv[1]);
	if ((argc == 1 || argc == 2) && strcmp(argv[0], "flush") == 0)
		return queue_flush(argc == 2 ? argv[1] : NULL);
	if (argc == 2 && strcmp(argv[0], "delete") == 0)
		return queue_delete(argv[1]);
	print_error("usage: estafeta queue list | show ID | flush [ID] | delete ID|ALL");
	return EX_USAGE;
}
