/* Parameters read by authd. */
#include <limits.h>

#include "config.h"

const struct config_param config_params_authd[] = {
	{ "virtual_passwd_file", CONFIG_STRING, "/etc/estafeta/passwd-file", 0, 0,
	  "Dovecot-style passwd-file of virtual users (user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields); reread when it changes", NULL, NULL },
	{ "virtual_mail_user", CONFIG_STRING, "_estafeta-vmail", 0, 0,
	  "system user whose uid and gid virtual users get when their passwd-file entry leaves uid and gid empty", NULL, NULL },
	{ "first_valid_uid", CONFIG_INT, "1000", 1, INT_MAX,
	  "lowest uid of a system user that receives mail; lower uids (root, system accounts) are not found", NULL, NULL },
	{ "last_valid_uid", CONFIG_INT, "59999", 0, INT_MAX,
	  "highest uid of a system user that receives mail (59999 is LAST_UID of Debian's adduser); 0 means no limit", NULL, NULL },
	{ "userdb_socket_mode", CONFIG_STRING, "0660", 0, 0,
	  "octal permissions of userdb_socket; with 0660 only its owner (root) and userdb_socket_group can connect",
	  NULL, config_check_octal_mode },
	{ "userdb_socket_group", CONFIG_STRING, "", 0, 0,
	  "group that owns userdb_socket; empty means the primary group of smtpd_user", NULL, NULL },
	{ "auth_socket", CONFIG_STRING, "", 0, 0,
	  "Unix socket where authd checks passwords with the Dovecot authentication protocol (Postfix smtpd_sasl_type = dovecot); empty means auth-client in the directory of userdb_socket", NULL, NULL },
	{ "auth_socket_mode", CONFIG_STRING, "0660", 0, 0,
	  "octal permissions of auth_socket; with 0660 only its owner (root) and auth_socket_group can connect",
	  NULL, config_check_octal_mode },
	{ "auth_socket_group", CONFIG_STRING, "", 0, 0,
	  "group that owns auth_socket; empty means the primary group of smtpd_user", NULL, NULL },
	{ "auth_failure_delay", CONFIG_TIME, "2s", 0, 60,
	  "time in seconds before authd reports a failed authentication, to slow down password guessing", NULL, NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
