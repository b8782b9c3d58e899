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
	{ "smtp_tls_security_level", CONFIG_STRING, "dane", 0, 0,
	  "default TLS level of the SMTP client: none (never STARTTLS), may (STARTTLS when offered, no certificate check), encrypt (TLS required), "
	  "dane (like may, but TLS with a certificate matching the TLSA records where the MX host has DNSSEC-validated ones, RFC 7672) "
	  "or verify (TLS with a CA-verified certificate for the MX host name)", "none may encrypt dane verify", NULL },
	{ "smtp_tls_policy_maps", CONFIG_STRING, "", 0, 0,
	  "text file of per-destination TLS levels, Postfix's format: \"DOMAIN LEVEL [match=NAME:NAME]\" lines, where DOMAIN "
	  "is a recipient domain, .DOMAIN its subdomains, [HOST] a relayhost or transport host; empty means none", NULL, NULL },
	{ "smtp_tls_mta_sts", CONFIG_BOOL, "yes", 0, 1,
	  "whether the SMTP client applies MTA-STS policies (RFC 8461) of recipient domains that have no DANE TLSA records", NULL, NULL },
	{ "smtp_tls_mta_sts_timeout", CONFIG_TIME, "60s", 1, 600,
	  "time allowed for fetching one MTA-STS policy over HTTPS, connection included, in seconds", NULL, NULL },
	{ "smtp_tls_CAfile", CONFIG_STRING, "", 0, 0,
	  "PEM file of CA certificates that the SMTP client and the MTA-STS policy fetch trust; empty uses the system store (/etc/ssl/certs)", NULL, NULL },
	{ "smtp_tls_min_protocol", CONFIG_STRING, "TLSv1.2", 0, 0,
	  "oldest TLS version the SMTP client accepts", "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", NULL },
	{ "smtp_tls_max_protocol", CONFIG_STRING, "TLSv1.3", 0, 0,
	  "newest TLS version the SMTP client offers", "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", NULL },
	{ "smtp_tls_ciphers", CONFIG_STRING, "DEFAULT", 0, 0,
	  "OpenSSL cipher list of the SMTP client for TLS 1.2 and older (see ciphers(1)); TLS 1.3 uses OpenSSL's default suites", NULL, NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
