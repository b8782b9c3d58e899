/* Parameters read by imapd. */
#include <limits.h>

#include "config.h"

const struct config_param config_params_imapd[] = {
	{ "imapd_listen", CONFIG_LIST, "0.0.0.0:143 [::]:143", 0, 0,
	  "addresses where imapd accepts IMAP connections, as IPv4:port or [IPv6]:port",
	  NULL, config_check_listen },
	{ "imapd_imaps_listen", CONFIG_LIST, "", 0, 0,
	  "addresses where imapd accepts IMAP connections that start with TLS (IMAPS, port 993), as IPv4:port or [IPv6]:port; needs tls_cert_file; empty means none",
	  NULL, config_check_listen },
	{ "imapd_login_user", CONFIG_STRING, "", 0, 0,
	  "user that imapd's login processes (the code that reads input before authentication) run as; empty means smtpd_user", NULL, NULL },
	{ "imapd_plaintext_auth", CONFIG_STRING, "loopback", 0, 0,
	  "where LOGIN and AUTHENTICATE may send a password without TLS: never, loopback (clients on 127.0.0.0/8 and ::1) or always (like Dovecot's disable_plaintext_auth)",
	  "never loopback always", NULL },
	{ "imapd_max_connections", CONFIG_INT, "500", 1, 100000,
	  "maximum number of IMAP connections, logged in or not, that imapd serves at once", NULL, NULL },
	{ "imapd_max_line_length", CONFIG_SIZE, "64k", 1024, 16 * 1024 * 1024,
	  "maximum length in bytes of one IMAP command line, not counting literals", NULL, NULL },
	{ "imapd_max_literal_size", CONFIG_SIZE, "64k", 1024, 16 * 1024 * 1024,
	  "maximum size in bytes of a literal in a command other than APPEND", NULL, NULL },
	{ "imapd_append_limit", CONFIG_SIZE, "50m", 1024, 2LL * 1024 * 1024 * 1024 - 1,
	  "maximum size in bytes of a message added with APPEND (advertised as APPENDLIMIT)", NULL, NULL },
	{ "imapd_login_timeout", CONFIG_TIME, "60s", 1, 3600,
	  "time in seconds a client has to log in before imapd closes the connection", NULL, NULL },
	{ "imapd_idle_timeout", CONFIG_TIME, "30m", 60, 86400,
	  "time in seconds a logged-in client may stay silent (IDLE included) before imapd logs it out; RFC 3501 asks for at least 30 minutes", NULL, NULL },
	{ "imapd_auth_timeout", CONFIG_TIME, "30s", 1, 600,
	  "time in seconds imapd waits for authd to answer an authentication or login request", NULL, NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
