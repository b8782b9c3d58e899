/* Parameters read by smtpd. */
#include "config.h"

#define KIB 1024LL
#define GIB (1024LL * 1024 * 1024)
#define HOUR 3600LL

const struct config_param config_params_smtpd[] = {
	{ "smtpd_listen", CONFIG_LIST, "0.0.0.0:25 [::]:25", 0, 0,
	  "addresses smtpd listens on, as IPv4:port or [IPv6]:port" },
	{ "message_size_limit", CONFIG_SIZE, "10240000", 1, 4 * GIB,
	  "largest message smtpd accepts, in bytes as stored (CRLF counted as one byte), advertised with EHLO SIZE" },
	{ "smtpd_recipient_limit", CONFIG_INT, "1000", 1, 1000000,
	  "most recipients in one transaction; later RCPT commands get 452 4.5.3" },
	{ "smtpd_client_connection_limit", CONFIG_INT, "50", 0, 1000000,
	  "most simultaneous connections from one client address; 0 means no limit" },
	{ "smtpd_max_connections", CONFIG_INT, "500", 1, 1000000,
	  "most simultaneous SMTP connections in total; each takes up to three file descriptors" },
	{ "smtpd_timeout", CONFIG_TIME, "300s", 1, 24 * HOUR,
	  "how long smtpd waits for a command or for the client to read a reply, in seconds" },
	{ "smtpd_data_timeout", CONFIG_TIME, "300s", 1, 24 * HOUR,
	  "how long smtpd waits for more message content during DATA or BDAT, in seconds" },
	{ "smtpd_queue_timeout", CONFIG_TIME, "120s", 1, 24 * HOUR,
	  "how long smtpd waits for queued to create or commit a message before replying 451, in seconds" },
	{ "smtpd_userdb_timeout", CONFIG_TIME, "5s", 1, 300,
	  "how long one recipient lookup in authd's userdb may take before RCPT gets 451 4.3.0, in seconds; other sessions go on meanwhile" },
	{ "smtpd_hard_error_limit", CONFIG_INT, "20", 1, 100000,
	  "error replies in one session after which smtpd replies 421 and disconnects" },
	{ "smtpd_line_length_limit", CONFIG_SIZE, "4096", 512, 1024 * KIB,
	  "longest command line in bytes (CRLF included); longer ones get 500 5.5.6 and are discarded" },
	{ "smtpd_data_line_length_limit", CONFIG_SIZE, "64k", 1000, 16 * 1024 * KIB,
	  "longest line of message content in bytes (line end excluded); a message with a longer line is rejected with 554 5.6.0" },
	{ "smtpd_bare_lf", CONFIG_STRING, "reject", 0, 0,
	  "what to do with a message whose DATA has a LF without CR: reject (550 5.5.2) or normalize (take it as a line end); the end of data is always CRLF.CRLF" },
	{ NULL, 0, NULL, 0, 0, NULL },
};
