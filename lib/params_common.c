/* Parameters shared by several programs: names, paths, domains, users. */
#include <limits.h>

#include "config.h"

#define TIME_MAX (10LL * 365 * 86400)

const struct config_param config_params_common[] = {
	{ "myhostname", CONFIG_STRING, "", 0, 0,
	  "fully qualified name of this host, used in greetings and Received: fields; empty means the system host name",
	  NULL, config_check_hostname },
	{ "local_domains", CONFIG_LIST, "localhost", 0, 0,
	  "domains whose recipients are system users or aliases (like Postfix mydestination); $myhostname is always included", NULL, NULL },
	{ "virtual_domains", CONFIG_LIST, "", 0, 0,
	  "domains whose recipients are virtual users of virtual_passwd_file or full-address aliases", NULL, NULL },
	{ "mynetworks", CONFIG_LIST, "127.0.0.0/8 [::1]/128", 0, 0,
	  "client networks allowed to relay without authentication, as CIDR blocks",
	  NULL, config_check_networks },
	{ "recipient_delimiter", CONFIG_STRING, "+", 0, 0,
	  "character that separates user and detail in a local part (user+detail); empty disables", NULL, NULL },
	{ "alias_database", CONFIG_STRING, "/etc/aliases", 0, 0,
	  "aliases source file in /etc/aliases syntax; newaliases compiles it into the same path plus .cdb", NULL, NULL },
	{ "queue_directory", CONFIG_STRING, "/var/spool/estafeta", 0, 0,
	  "spool directory owned by queued", NULL, NULL },
	{ "queued_socket", CONFIG_STRING, "/run/estafeta/queued.sock", 0, 0,
	  "Unix socket where queued takes new messages and admin requests", NULL, NULL },
	{ "lmtp_socket", CONFIG_STRING, "/run/estafeta/lmtp.sock", 0, 0,
	  "Unix socket where deliverd speaks LMTP", NULL, NULL },
	{ "userdb_socket", CONFIG_STRING, "/run/estafeta/auth-userdb", 0, 0,
	  "Unix socket where authd answers user lookups (Dovecot auth-master protocol)", NULL, NULL },
	{ "smtpd_user", CONFIG_STRING, "_estafeta", 0, 0,
	  "user smtpd, authd and the LMTP side of deliverd run as after binding their sockets", NULL, NULL },
	{ "queue_user", CONFIG_STRING, "_estafeta-queue", 0, 0,
	  "user queued runs as; it owns queue_directory", NULL, NULL },
	{ "filter_user", CONFIG_STRING, "_estafeta-filter", 0, 0,
	  "user filterd runs as", NULL, NULL },
	{ "syslog", CONFIG_BOOL, "yes", 0, 1,
	  "log to syslog facility mail (stderr is also used when a daemon runs with -f)", NULL, NULL },
	{ "debug", CONFIG_BOOL, "no", 0, 1,
	  "log debugging detail", NULL, NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
