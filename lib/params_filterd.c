/*
 * Parameters read by filterd and by smtpd's filterd client. Each check
 * adds its own settings (timeouts, servers, keys) to this table.
 */
#include <limits.h>

#include "config.h"

const struct config_param config_params_filterd[] = {
	{ "filterd_socket", CONFIG_STRING, "/run/estafeta/filterd.sock", 0, 0,
	  "Unix socket where filterd takes requests from smtpd", NULL, NULL },
	{ "filterd_socket_mode", CONFIG_STRING, "0660", 0, 0,
	  "octal permissions of filterd_socket; with 0660 only its owner and filterd_socket_group can connect",
	  NULL, config_check_octal_mode },
	{ "filterd_socket_group", CONFIG_STRING, "", 0, 0,
	  "group that owns filterd_socket; empty means the primary group of smtpd_user", NULL, NULL },
	{ "filterd_max_connections", CONFIG_INT, "100", 1, 10000,
	  "maximum number of smtpd connections served at once, one worker thread each; later connections get a tempfail reply and are closed", NULL, NULL },
	{ "filterd_timeout", CONFIG_TIME, "600s", 1, 24 * 3600,
	  "time filterd waits for the next request on an idle connection before it closes it, in seconds", NULL, NULL },
	{ "filterd_checks", CONFIG_LIST, "spf dkim_verify dmarc spamassassin clamav dkim_sign authres", 0, 0,
	  "checks filterd runs, in this order; a name that is not compiled in is a configuration error", NULL, NULL },
	{ "filterd_scan_size_limit", CONFIG_SIZE, "10m", 1, LLONG_MAX,
	  "messages larger than this many bytes skip the content scanners (spamassassin, clamav) and get an X-Estafeta-Filter: field saying so", NULL, NULL },
	{ "filterd_spf_failure_policy", CONFIG_STRING, "accept", 0, 0,
	  "what happens when the SPF check cannot run (DNS timeout): accept logs and goes on, tempfail replies 451 4.7.0", "accept tempfail", NULL },
	{ "filterd_dkim_verify_failure_policy", CONFIG_STRING, "accept", 0, 0,
	  "what happens when DKIM verification cannot run: accept logs and goes on, tempfail replies 451 4.7.0", "accept tempfail", NULL },
	{ "filterd_dmarc_failure_policy", CONFIG_STRING, "accept", 0, 0,
	  "what happens when the DMARC check cannot run: accept logs and goes on, tempfail replies 451 4.7.0", "accept tempfail", NULL },
	{ "filterd_spamassassin_failure_policy", CONFIG_STRING, "accept", 0, 0,
	  "what happens when spamd cannot be asked (down, timed out): accept logs and goes on, tempfail replies 451 4.7.0", "accept tempfail", NULL },
	{ "filterd_clamav_failure_policy", CONFIG_STRING, "tempfail", 0, 0,
	  "what happens when clamd cannot be asked (down, timed out): tempfail replies 451 4.7.0 so no unscanned message gets through, accept logs and goes on", "accept tempfail", NULL },
	{ "filterd_dkim_sign_failure_policy", CONFIG_STRING, "accept", 0, 0,
	  "what happens when DKIM signing fails: accept sends the message unsigned and logs it, tempfail replies 451 4.7.0", "accept tempfail", NULL },
	{ "filterd_authres_failure_policy", CONFIG_STRING, "accept", 0, 0,
	  "what happens when the Authentication-Results field cannot be built: accept logs and goes on, tempfail replies 451 4.7.0", "accept tempfail", NULL },
	{ "smtpd_filter", CONFIG_BOOL, "no", 0, 1,
	  "whether smtpd asks filterd (at filterd_socket) about each transaction at MAIL FROM and at the end of the data", NULL, NULL },
	{ "smtpd_filter_timeout", CONFIG_TIME, "120s", 1, 3600,
	  "time smtpd waits for a filterd reply before it applies smtpd_filter_failure_policy, in seconds", NULL, NULL },
	{ "smtpd_filter_failure_policy", CONFIG_STRING, "tempfail", 0, 0,
	  "what smtpd does when filterd is down or does not reply in time: tempfail replies 451 4.7.0, accept logs and goes on without filtering", "accept tempfail", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
