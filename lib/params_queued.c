/* Parameters read by queued. Defaults for the Postfix names are Postfix's. */
#include "config.h"

#define DAY (24LL * 3600)

const struct config_param config_params_queued[] = {
	{ "lmtp_concurrency", CONFIG_INT, "16", 1, 64,
	  "maximum number of parallel LMTP connections from queued to deliverd; deliverd syncs the deliveries that arrive together under one barrier, so more connections make larger batches", NULL, NULL },
	{ "lmtp_timeout", CONFIG_TIME, "300s", 1, DAY,
	  "time queued waits for a reply (or for buffer space) on an LMTP connection, in seconds", NULL, NULL },
	{ "minimal_backoff_time", CONFIG_TIME, "300s", 1, 100 * DAY,
	  "minimum time between delivery attempts of a deferred message, in seconds", NULL, NULL },
	{ "maximal_backoff_time", CONFIG_TIME, "4000s", 1, 100 * DAY,
	  "maximum time between delivery attempts of a deferred message, in seconds", NULL, NULL },
	{ "queue_run_delay", CONFIG_TIME, "300s", 1, 100 * DAY,
	  "interval between scans for deferred messages whose next attempt is due, in seconds", NULL, NULL },
	{ "maximal_queue_lifetime", CONFIG_TIME, "5d", 0, 1000 * DAY,
	  "time a message may stay deferred before it is returned to the sender as undeliverable", NULL, NULL },
	{ "bounce_queue_lifetime", CONFIG_TIME, "5d", 0, 1000 * DAY,
	  "time a delivery status notification (null sender) may stay deferred before it is dropped", NULL, NULL },
	{ "delay_warning_time", CONFIG_TIME, "0h", 0, 1000 * DAY,
	  "time after which the sender of a still deferred message is warned once; 0 turns warnings off", NULL, NULL },
	{ "queue_spare_files", CONFIG_INT, "1000", 0, 1000000,
	  "files of removed messages kept in spare/ for new messages, so the file system allocates and frees fewer inodes; 0 removes every file",
	  NULL, NULL },
	{ "queue_sync_method", CONFIG_STRING, "syncfs", 0, 0,
	  "how a commit batch reaches the disk: syncfs (one barrier for the spool file system per batch) or fsync (each file)",
	  "syncfs fsync", NULL },
	{ "queue_connection_user_limit", CONFIG_INT, "50", 1, 1000000,
	  "maximum number of simultaneous connections to queued_socket from one local user; "
	  "root, queue_user and smtpd_user have no such limit", NULL, NULL },
	{ "queue_uncommitted_user_limit", CONFIG_INT, "20", 1, 1000000,
	  "maximum number of queue files one local user may hold open in queued at a time (created with NEW "
	  "and not yet committed or aborted); root, queue_user and smtpd_user have no such limit", NULL, NULL },
	{ "queue_uncommitted_limit", CONFIG_INT, "1000", 1, 1000000,
	  "maximum number of queue files all clients together may hold open in queued at a time; "
	  "queued lowers it to a quarter of its descriptor limit if that is smaller", NULL, NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
