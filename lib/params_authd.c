/* Parameters read by authd. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

/* Each item of the passdb list, separated by commas or blanks, must name a passdb. */
static int
check_passdb(const char *value, char *err, size_t errsize)
{
	const char *separators = ", \t";
	const char *item = value + strspn(value, separators);

	while (*item != '\0') {
		size_t len = strcspn(item, separators);

		if (!(len == 11 && strncmp(item, "passwd-file", len) == 0) &&
		    !(len == 3 && strncmp(item, "pam", len) == 0)) {
			snprintf(err, errsize, "unknown passdb \"%.*s\": expected passwd-file or pam",
			    (int)len, item);
			return -1;
		}
		item += len;
		item += strspn(item, separators);
	}
	return 0;
}

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
	  "time in seconds before authd reports a failed authentication, to slow down password guessing; each further failure from the same client address doubles it, up to auth_failure_delay_max; 0 turns delays off", NULL, NULL },
	{ "auth_failure_delay_max", CONFIG_TIME, "30s", 0, 3600,
	  "longest delay in seconds before authd reports a failed authentication from a client address that keeps failing", NULL, NULL },
	{ "auth_failure_reset_time", CONFIG_TIME, "10m", 1, 86400,
	  "time in seconds without a failed authentication after which a client address's delay returns to auth_failure_delay", NULL, NULL },
	{ "passdb", CONFIG_LIST, "passwd-file pam", 0, 0,
	  "password databases that authd tries in order: passwd-file (virtual users of virtual_passwd_file) and pam (system users, through the PAM service pam_service); the first that has the user decides",
	  NULL, check_passdb },
	{ "scram_iterations", CONFIG_INT, "4096", 4096, 1000000,
	  "PBKDF2 iteration count of SCRAM-SHA-256 for users whose passwd-file entry is a {PLAIN} password (a {SCRAM-SHA-256} entry keeps its own count); RFC 7677 asks for at least 4096, and authd computes the keys in its event loop, so a large count delays other logins", NULL, NULL },
	{ "auth_handoff_lifetime", CONFIG_TIME, "30s", 1, 3600,
	  "time in seconds that a successful imapd login waits for the master's REQUEST that hands the user over; an unclaimed login is forgotten after it", NULL, NULL },
	{ "pam_service", CONFIG_STRING, "estafeta", 0, 0,
	  "PAM service name of the pam passdb, the file in /etc/pam.d that configures it", NULL, NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};
