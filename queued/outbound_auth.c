/* AUTH PLAIN and LOGIN to the relayhost with credentials from a file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "config.h"
#include "outbound_auth.h"
#include "scram.h"
#include "util.h"

static char *username;
static char *password;


/* Read "host user:password" lines and keep the one for relayhost. */
int
outbound_auth_init(char *err, size_t errsize)
{
	const char *path = config_string("relayhost_password_file");
	const char *relayhost = config_string("relayhost");
	char line[1024];
	struct stat st;
	FILE *fp;
	int lineno = 0;

	if (path[0] == '\0')
		return 0;
	fp = fopen(path, "r");
	if (fp == NULL) {
		snprintf(err, errsize, "relayhost_password_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) < 0 || (st.st_mode & 077) != 0) {
		snprintf(err, errsize, "relayhost_password_file %s is readable by group or others: chmod 600 it",
		    path);
		fclose(fp);
		return -1;
	}
	while (fgets(line, sizeof line, fp) != NULL) {
		char *host, *credentials, *colon, *save = NULL;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		host = strtok_r(line, " \t", &save);
		if (host == NULL || host[0] == '#')
			continue;
		credentials = strtok_r(NULL, " \t", &save);
		colon = credentials != NULL ? strchr(credentials, ':') : NULL;
		if (colon == NULL) {
			/* The error does not quote the line, because it may contain a password. */
			snprintf(err, errsize, "relayhost_password_file %s:%d: expected \"host user:password\"",
			    path, lineno);
			OPENSSL_cleanse(line, sizeof line);
			fclose(fp);
			return -1;
		}
		if (strcasecmp(host, relayhost) == 0) {
			*colon = '\0';
			free(username);
			free(password);
			username = xstrdup(credentials);
			password = xstrdup(colon + 1);
		}
		OPENSSL_cleanse(line, sizeof line);
	}
	fclose(fp);
	return 0;
}

int
outbound_auth_reload(char *err, size_t errsize)
{
	char *old_username = username, *old_password = password;

	username = password = NULL;
	if (outbound_auth_init(err, errsize) < 0) {
		outbound_auth_free();
		username = old_username;
		password = old_password;
		return -1;
	}
	if (old_password != NULL)
		OPENSSL_cleanse(old_password, strlen(old_password));
	free(old_username);
	free(old_password);
	return 0;
}

int
outbound_auth_wanted(void)
{
	return username != NULL;
}

static void
send_base64(struct session *session, const char *prefix, const unsigned char *data, size_t len)
{
	char *encoded = scram_base64(data, len);
	char *line = xasprintf("%s%s", prefix, encoded);

	session_send_line(session, line);
	OPENSSL_cleanse(encoded, strlen(encoded));
	OPENSSL_cleanse(line, strlen(line));
	free(encoded);
	free(line);
}

int
outbound_auth_start(struct session *session, struct outbound_auth *auth, int tls_active,
    int offers_plain, int offers_login, char *err, size_t errsize)
{
	outbound_auth_clear(auth);
	if (!tls_active) {
		snprintf(err, errsize, "not sending SASL credentials to the relayhost without TLS");
		return -1;
	}
	if (username == NULL) {
		snprintf(err, errsize, "no credentials for the relayhost in relayhost_password_file");
		return -1;
	}
	if (offers_plain) {
		size_t ulen = strlen(username), plen = strlen(password);
		unsigned char *message = xmalloc(ulen + plen + 2);

		/* RFC 4616: authzid (empty) NUL authcid NUL password. */
		message[0] = '\0';
		memcpy(message + 1, username, ulen);
		message[ulen + 1] = '\0';
		memcpy(message + ulen + 2, password, plen);
		send_base64(session, "AUTH PLAIN ", message, ulen + plen + 2);
		OPENSSL_cleanse(message, ulen + plen + 2);
		free(message);
		auth->step = OUTBOUND_AUTH_PLAIN_SENT;
		return 0;
	}
	if (offers_login) {
		/* AUTH LOGIN sends the credentials in later round trips. */
		auth->username = xstrdup(username);
		auth->password = xstrdup(password);
		session_send_line(session, "AUTH LOGIN");
		auth->step = OUTBOUND_AUTH_LOGIN_SENT;
		return 0;
	}
	snprintf(err, errsize, "the relayhost offers neither AUTH PLAIN nor AUTH LOGIN");
	return -1;
}

int
outbound_auth_reply(struct session *session, struct outbound_auth *auth, int code)
{
	if (code == 334 && auth->step == OUTBOUND_AUTH_LOGIN_SENT && auth->username != NULL) {
		send_base64(session, "", (const unsigned char *)auth->username, strlen(auth->username));
		auth->step = OUTBOUND_AUTH_USERNAME_SENT;
		return 0;
	}
	if (code == 334 && auth->step == OUTBOUND_AUTH_USERNAME_SENT && auth->password != NULL) {
		send_base64(session, "", (const unsigned char *)auth->password, strlen(auth->password));
		auth->step = OUTBOUND_AUTH_PASSWORD_SENT;
		outbound_auth_clear(auth);
		return 0;
	}

	outbound_auth_clear(auth);
	return code == 235 ? 1 : -1;
}

void
outbound_auth_clear(struct outbound_auth *auth)
{
	if (auth->username != NULL)
		OPENSSL_cleanse(auth->username, strlen(auth->username));
	if (auth->password != NULL)
		OPENSSL_cleanse(auth->password, strlen(auth->password));
	free(auth->username);
	free(auth->password);
	auth->username = auth->password = NULL;
}

void
outbound_auth_free(void)
{
	if (password != NULL)
		OPENSSL_cleanse(password, strlen(password));
	free(username);
	free(password);
	username = password = NULL;
}
