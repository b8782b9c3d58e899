/* Parameters read by queued. Defaults for the Postfix names are Postfix's. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

/* Check one dns_resolvers item: an IPv4 or IPv6 address, then
 * optionally "@" and a port. Returns 0, or -1 with ERR set. */
static int
check_resolver(const char *item, char *err, size_t errsize)
{
	char address[INET6_ADDRSTRLEN + 1];
	unsigned char bytes[16];
	const char *at = strchr(item, '@');
	size_t len = at != NULL ? (size_t)(at - item) : strlen(item);

	if (len == 0 || len >= sizeof address) {
		snprintf(err, errsize, "invalid DNS server %s: expected ADDRESS or ADDRESS@PORT", item);
		return -1;
	}
	memcpy(address, item, len);
	address[len] = '\0';
	if (inet_pton(AF_INET, address, bytes) != 1 && inet_pton(AF_INET6, address, bytes) != 1) {
		snprintf(err, errsize, "invalid DNS server %s: %s is not an IPv4 or IPv6 address", item,
		    address);
		return -1;
	}
	if (at != NULL) {
		char *end;
		long port = strtol(at + 1, &end, 10);

		if (at[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
			snprintf(err, errsize, "invalid DNS server %s: the port must be 1 to 65535", item);
			return -1;
		}
	}
	return 0;
}

/* Check every item of dns_resolvers, separated as config_list splits them. */
static int
check_resolvers(const char *value, char *err, size_t errsize)
{
	char *copy = xstrdup(value), *save = NULL;
	int rc = 0;

	for (char *item = strtok_r(copy, ", \t", &save); item != NULL && rc == 0;
	    item = strtok_r(NULL, ", \t", &save))
		rc = check_resolver(item, err, errsize);
	free(copy);
	return rc;
}

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
	{ "outbound_delivery", CONFIG_BOOL, "no", 0, 0,
	  "whether queued delivers mail for remote domains over SMTP; with no, such mail waits in the queue with that reason", NULL, NULL },
	{ "dns_resolvers", CONFIG_LIST, "", 0, 0,
	  "DNS servers that queued sends every query to, as ADDRESS or ADDRESS@PORT (IPv4 or IPv6); /etc/resolv.conf is never read, and with none set outbound delivery stays off", NULL, check_resolvers },
	{ "dns_trust_anchor_file", CONFIG_STRING, "/usr/share/dns/root.key", 0, 0,
	  "DNSSEC trust anchors (zone file format) that queued validates answers with; empty turns validation off", NULL, NULL },
	{ "outbound_address_family", CONFIG_STRING, "all", 0, 0,
	  "address families the SMTP client connects over: all (IPv6 first, then IPv4), ipv4 or ipv6", "all ipv4 ipv6", NULL },
	{ "relayhost", CONFIG_STRING, "", 0, 0,
	  "host that receives all mail for remote domains: [host]:port without an MX lookup, host:port with one; empty delivers by MX", NULL, NULL },
	{ "relayhost_password_file", CONFIG_STRING, "", 0, 0,
	  "file of \"host username:password\" lines (host as written in relayhost) for AUTH to the relayhost; must not be readable by group or others", NULL, NULL },
	{ "transport_maps", CONFIG_STRING, "", 0, 0,
	  "text file of \"domain transport\" lines that override routing per recipient domain (smtp:[host]:port, relay:host:port, error:text, defer:text), or a .cdb file with the same keys and values; read at start-up", NULL, NULL },
	{ "smtp_helo_name", CONFIG_STRING, "", 0, 0,
	  "name the SMTP client sends in EHLO and HELO; empty uses myhostname", NULL, NULL },
	{ "smtp_destination_concurrency_limit", CONFIG_INT, "20", 1, 1000,
	  "maximum number of parallel SMTP connections to one destination (recipient domain or relayhost)", NULL, NULL },
	{ "smtp_destination_recipient_limit", CONFIG_INT, "50", 1, 100000,
	  "maximum number of recipients in one SMTP transaction; a message with more recipients for one destination is sent in several transactions", NULL, NULL },
	{ "smtp_concurrency_limit", CONFIG_INT, "100", 1, 10000,
	  "maximum number of parallel outbound SMTP connections in total", NULL, NULL },
	{ "smtp_connect_timeout", CONFIG_TIME, "30s", 1, DAY,
	  "time the SMTP client waits for a TCP connection to complete, in seconds", NULL, NULL },
	{ "smtp_helo_timeout", CONFIG_TIME, "300s", 1, DAY,
	  "time the SMTP client waits for the greeting and for the EHLO, HELO and STARTTLS replies, in seconds", NULL, NULL },
	{ "smtp_mail_timeout", CONFIG_TIME, "300s", 1, DAY,
	  "time the SMTP client waits for the reply to MAIL FROM, in seconds", NULL, NULL },
	{ "smtp_rcpt_timeout", CONFIG_TIME, "300s", 1, DAY,
	  "time the SMTP client waits for the reply to RCPT TO, in seconds", NULL, NULL },
	{ "smtp_data_init_timeout", CONFIG_TIME, "120s", 1, DAY,
	  "time the SMTP client waits for the reply to DATA, in seconds", NULL, NULL },
	{ "smtp_data_xfer_timeout", CONFIG_TIME, "180s", 1, DAY,
	  "time the SMTP client waits for the server to accept more message content, in seconds", NULL, NULL },
	{ "smtp_data_done_timeout", CONFIG_TIME, "600s", 1, DAY,
	  "time the SMTP client waits for the reply to the end of the message, in seconds", NULL, NULL },
	{ "smtp_quit_timeout", CONFIG_TIME, "300s", 1, DAY,
	  "time the SMTP client waits for the reply to QUIT or RSET, in seconds", NULL, NULL },
	{ "smtp_port", CONFIG_INT, "25", 1, 65535,
	  "TCP port of the MX hosts the SMTP client connects to when the route names no port", NULL, NULL },
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
