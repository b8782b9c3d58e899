/* Parameters read by deliverd. Defaults for the Postfix names are Postfix 3.7's. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config.h"

/* A Maildir++ folder name: letters, digits, '-', '_' and spaces, with '.'
 * only between hierarchy levels, so the name is the same on disk and in
 * IMAP (no modified UTF-7, no LIST wildcards) and stays inside the Maildir. */
static int
check_quarantine_folder(const char *value, char *err, size_t errsize)
{
	size_t len = strlen(value);

	if (len == 0)
		return 0;
	if (len > 200 || strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789-_ .") != len || value[0] == '.' || value[len - 1] == '.' ||
	    strstr(value, "..") != NULL || strcasecmp(value, "INBOX") == 0) {
		snprintf(err, errsize, "expected a folder name such as Junk or Spam.Quarantine "
		    "(letters, digits, '-', '_', spaces, '.' between levels; not INBOX)");
		return -1;
	}
	return 0;
}

const struct config_param config_params_deliverd[] = {
	{ "mail_location", CONFIG_STRING, "maildir:~/Maildir", 0, 0,
	  "mailbox of users whose userdb entry has no mail field, in Dovecot syntax: maildir:~/Maildir or mbox:~/mail:INBOX=/var/mail/%u", NULL, NULL },
	{ "mail_spool_directory", CONFIG_STRING, "/var/mail", 0, 0,
	  "directory of mbox inboxes (one file per user, named after the user) for mbox locations without INBOX=", NULL, NULL },
	{ "default_privs", CONFIG_STRING, "nobody", 0, 0,
	  "user that |command and /file targets of the aliases file run as", NULL, NULL },
	{ "command_time_limit", CONFIG_TIME, "1000s", 1, 7 * 24 * 3600,
	  "time a |command target may run before it is killed and the delivery fails, in seconds", NULL, NULL },
	{ "deliverd_max_processes", CONFIG_INT, "20", 1, 10000,
	  "maximum number of deliveries running at once; more requests wait for a free slot", NULL, NULL },
	{ "deliverd_user_processes", CONFIG_INT, "2", 1, 1000,
	  "maximum long-lived mailbox delivery processes for one mailbox owner (one uid, or one system user); each serves many deliveries", NULL, NULL },
	{ "maildir_sync_method", CONFIG_STRING, "syncfs", 0, 0,
	  "how Maildir deliveries reach the disk: syncfs (one barrier for the file system per batch of 32 or more deliveries made together, fsync for smaller batches) or fsync (each file and each new/ folder)",
	  "syncfs fsync", NULL },
	{ "deliverd_userdb_cache_time", CONFIG_TIME, "30s", 0, 3600,
	  "how long an LMTP session or a mailbox worker keeps the result of a recipient lookup in authd's userdb (the entry, or not found) before it asks again, in seconds; a user added, removed or moved is seen by delivery after at most this time; 0 asks every time", NULL, NULL },
	{ "deliverd_max_sessions", CONFIG_INT, "100", 1, 10000,
	  "maximum number of LMTP connections served at once; later connections wait in the listen backlog", NULL, NULL },
	{ "deliverd_timeout", CONFIG_TIME, "300s", 1, 24 * 3600,
	  "time deliverd waits for the next LMTP command or more DATA before it closes the connection, in seconds", NULL, NULL },
	{ "deliverd_temp_directory", CONFIG_STRING, "", 0, 0,
	  "directory for the unlinked temporary file that holds a message while it is delivered; empty keeps the message in memory (memfd_create), which spares the file system an inode per message", NULL, NULL },
	{ "deliverd_recursion_limit", CONFIG_INT, "20", 1, 1000,
	  "maximum depth of nested aliases and :include: files before expansion fails with 5.4.6", NULL, NULL },
	{ "deliverd_expansion_limit", CONFIG_INT, "1000", 1, 100000,
	  "maximum number of destinations one recipient may expand to through aliases", NULL, NULL },
	{ "deliverd_quarantine_folder", CONFIG_STRING, "Junk", 0, 0,
	  "Maildir++ folder that receives messages queued with the quarantine flag (filterd's quarantine verdict), created and subscribed when missing; empty delivers them to the inbox and stops advertising XQUARANTINE in the LHLO reply",
	  NULL, check_quarantine_folder },
	{ "lmtp_socket_mode", CONFIG_STRING, "0660", 0, 0,
	  "octal permissions of lmtp_socket; any user who can connect can deliver mail to local users, bypassing queued",
	  NULL, config_check_octal_mode },
	{ "lmtp_socket_group", CONFIG_STRING, "", 0, 0,
	  "group that owns lmtp_socket, the group of its LMTP clients (add Postfix's user to it to use lmtp:unix:); empty means the group of queue_user", NULL, NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
