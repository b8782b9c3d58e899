/* Parameters shared by several programs: names, paths, domains, users. */
#include <arpa/inet.h>
#include <limits.h>
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
	{ "tls_cert_file", CONFIG_STRING, "", 0, 0,
	  "PEM file with the server certificate followed by its intermediate certificates (a Let's Encrypt fullchain.pem); empty disables TLS in every daemon",
	  NULL, NULL },
	{ "tls_key_file", CONFIG_STRING, "", 0, 0,
	  "PEM file with the private key of tls_cert_file (a Let's Encrypt privkey.pem); empty means the key is in tls_cert_file", NULL, NULL },
	{ "tls_sni_certificates", CONFIG_LIST, "", 0, 0,
	  "further certificates chosen by the server name a client sends (SNI), each item CERT_FILE:KEY_FILE (names taken from the certificate's DNS subject alternative names) or NAME=CERT_FILE:KEY_FILE (that name only, *.domain allowed); KEY_FILE may be left out with its colon when the key is in CERT_FILE; clients sending another name or none get tls_cert_file",
	  NULL, NULL },
	{ "tls_min_protocol", CONFIG_STRING, "TLSv1.2", 0, 0,
	  "oldest TLS version the servers accept (like Dovecot ssl_min_protocol), not newer than tls_max_protocol; "
	  "TLSv1 and TLSv1.1 also need tls_ciphers to allow non-AEAD ciphers and end with @SECLEVEL=0 "
	  "(such as ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:!aNULL:@SECLEVEL=0), because OpenSSL 3.0 finds no shared cipher for them "
	  "with the default list and rejects their SHA-1 signatures at security level 1 and above; level 0 also allows short keys and weak signatures on every connection",
	  "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", NULL },
	{ "tls_max_protocol", CONFIG_STRING, "TLSv1.3", 0, 0,
	  "newest TLS version the servers accept",
	  "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", NULL },
	{ "tls_ciphers", CONFIG_STRING, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL", 0, 0,
	  "OpenSSL cipher list for TLS 1.2 and older (see ciphers(1)); the default allows only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305",
	  NULL, NULL },
	{ "tls_ciphersuites", CONFIG_STRING, "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256", 0, 0,
	  "OpenSSL TLS 1.3 cipher suites, colon-separated, in order of preference", NULL, NULL },
	{ "dns_resolvers", CONFIG_LIST, "", 0, 0,
	  "DNS servers that queued and filterd send every query to, as ADDRESS or ADDRESS@PORT (IPv4 or IPv6); /etc/resolv.conf is never read, and with none set outbound delivery stays off and every DNS lookup of filterd's SPF, DKIM and DMARC checks fails as a temporary error", NULL, check_resolvers },
	{ "dns_trust_anchor_file", CONFIG_STRING, "/usr/share/dns/root.key", 0, 0,
	  "DNSSEC trust anchors (zone file format) that queued and filterd validate answers with; empty turns validation off", NULL, NULL },
	{ "syslog", CONFIG_BOOL, "yes", 0, 1,
	  "log to syslog facility mail (stderr is also used when a daemon runs with -f)", NULL, NULL },
	{ "debug", CONFIG_BOOL, "no", 0, 1,
	  "log debugging detail", NULL, NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
