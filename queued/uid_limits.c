/* Per-uid and global limits on queued_socket clients (see uid_limits.h). */
#include <stdlib.h>
#include <sys/queue.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "queued.h"
#include "uid_limits.h"
#include "util.h"

struct uid_usage {
	uid_t uid;
	size_t connections;
	size_t files;
	LIST_ENTRY(uid_usage) entry;
};

static LIST_HEAD(, uid_usage) usages = LIST_HEAD_INITIALIZER(usages);

static struct {
	long long connections_per_uid;
	long long files_per_uid;
	long long files;
} limit;

static long long total_files;

void
uid_limits_init(long long descriptor_limit)
{
	/* Each uncommitted file takes up to two descriptors (queued's own
	 * and the copy for a NEW-OK not yet sent), and files may use at
	 * most half of the descriptors: connections need the rest. */
	long long files_fit = descriptor_limit / 4;

	limit.connections_per_uid = config_int("queue_connection_user_limit");
	limit.files_per_uid = config_int("queue_uncommitted_user_limit");
	limit.files = config_int("queue_uncommitted_limit");
	if (limit.files > files_fit) {
		log_warn("queue_uncommitted_limit lowered from %lld to %lld to fit the descriptor limit of %lld",
		    limit.files, files_fit, descriptor_limit);
		limit.files = files_fit;
	}
}

int
uid_limits_exempt(uid_t uid)
{
	return uid == 0 || uid == queued_settings.queue_uid ||
	    uid == queued_settings.smtpd_uid || uid == getuid();
}

static struct uid_usage *
find_usage(uid_t uid)
{
	struct uid_usage *usage;

	LIST_FOREACH(usage, &usages, entry)
		if (usage->uid == uid)
			return usage;
	usage = xcalloc(1, sizeof *usage);
	usage->uid = uid;
	LIST_INSERT_HEAD(&usages, usage, entry);
	return usage;
}

static void
free_if_unused(struct uid_usage *usage)
{
	if (usage->connections > 0 || usage->files > 0)
		return;
	LIST_REMOVE(usage, entry);
	free(usage);
}

struct uid_usage *
uid_usage_connect(uid_t uid)
{
	struct uid_usage *usage = find_usage(uid);

	if (!uid_limits_exempt(uid) && (long long)usage->connections >= limit.connections_per_uid) {
		free_if_unused(usage);
		return NULL;
	}
	usage->connections++;
	return usage;
}

void
uid_usage_disconnect(struct uid_usage *usage)
{
	usage->connections--;
	free_if_unused(usage);
}

const char *
uid_usage_take_file(struct uid_usage *usage)
{
	if (!uid_limits_exempt(usage->uid) && (long long)usage->files >= limit.files_per_uid)
		return "too many uncommitted queue files for this user (queue_uncommitted_user_limit)";
	if (total_files >= limit.files)
		return "too many uncommitted queue files in queued (queue_uncommitted_limit)";
	usage->files++;
	total_files++;
	return NULL;
}

void
uid_usage_release_file(struct uid_usage *usage)
{
	usage->files--;
	total_files--;
	free_if_unused(usage);
}
