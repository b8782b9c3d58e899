/* The SMTP command table and the commands that need no transaction state. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "log.h"
#include "smtpd.h"
#include "util.h"

struct command {
	const char *name;
	enum session_counter counter;
	void (*handler)(struct session *s, char *args);
};

static void command_ehlo(struct session *s, char *args);
static void command_helo(struct session *s, char *args);
static void command_rset(struct session *s, char *args);
static void command_noop(struct session *s, char *args);
static void command_quit(struct session *s, char *args);
static void command_vrfy(struct session *s, char *args);
static void command_expn(struct session *s, char *args);
static void command_help(struct session *s, char *args);

static const struct command commands[] = {
	{ "EHLO", COUNT_EHLO, command_ehlo },
	{ "HELO", COUNT_HELO, command_helo },
	{ "MAIL", COUNT_MAIL, command_mail },
	{ "RCPT", COUNT_RCPT, command_rcpt },
	{ "DATA", COUNT_DATA, command_data },
	{ "BDAT", COUNT_BDAT, command_bdat },
	{ "RSET", COUNT_RSET, command_rset },
	{ "NOOP", COUNT_NOOP, command_noop },
	{ "QUIT", COUNT_QUIT, command_quit },
	{ "VRFY", COUNT_VRFY, command_vrfy },
	{ "EXPN", COUNT_EXPN, command_expn },
	{ "HELP", COUNT_HELP, command_help },
	{ "AUTH", COUNT_AUTH, command_auth },
	{ "STARTTLS", COUNT_STARTTLS, command_starttls },
	{ NULL, COUNT_UNKNOWN, NULL },
};

/* Maximum verb length that command_verb_for_log copies. The longest SMTP
 * verbs have 8 letters (STARTTLS, XFORWARD). */
#define LOGGED_VERB_MAX	10

/*
 * Count the command that just finished as successful unless it sent an
 * error reply. A command that waits for queued or authd, or for the
 * bytes of a BDAT chunk, finishes when its reply is sent.
 */
void
command_finish(struct session *s)
{
	if (s->command_counter < 0)
		return;
	if (s->errors == s->command_errors)
		s->counters[s->command_counter].ok++;
	s->command_counter = -1;
}

/*
 * Copy only a short word of letters, and never AUTH, whose arguments
 * are credentials: a base64 AUTH response sent out of turn looks like a
 * verb, and so may a password typed in the wrong place.
 * NOTE: the base64 of up to 6 bytes can be a short word of letters, so
 * a very short password could still be copied. For that reason
 * command_dispatch also hides the verb of the line right after AUTH.
 */
int
command_verb_for_log(const char *line, size_t len, char *out, size_t outsize)
{
	size_t verb_len = 0;

	out[0] = '\0';
	while (verb_len < len && line[verb_len] != ' ' && line[verb_len] != '\r' &&
	    line[verb_len] != '\n')
		verb_len++;
	if (verb_len == 0 || verb_len > LOGGED_VERB_MAX || verb_len >= outsize)
		return 0;
	for (size_t i = 0; i < verb_len; i++)
		if (!((line[i] >= 'A' && line[i] <= 'Z') || (line[i] >= 'a' && line[i] <= 'z')))
			return 0;
	if (verb_len == 4 && ascii_ncasecmp(line, "AUTH", 4) == 0)
		return 0;

	memcpy(out, line, verb_len);
	out[verb_len] = '\0';
	return 1;
}

/*
 * Log an unrecognized command line by its verb alone, or only by its
 * length when the verb may be a credential. A line after AUTH or after
 * another unrecognized line may be a late AUTH response (AUTH LOGIN
 * sends two), so it too is logged by its length only.
 */
static void
log_unrecognized_command(struct session *s, const char *line)
{
	char verb[LOGGED_VERB_MAX + 1];
	int after_auth = strcmp(s->last_command, "AUTH") == 0 ||
	    strcmp(s->last_command, "UNKNOWN") == 0;

	if (!after_auth && command_verb_for_log(line, strlen(line), verb, sizeof verb))
		log_info("%s[%s]: unrecognized command: %s", s->name, s->ip, verb);
	else
		log_info("%s[%s]: unrecognized command of %zu bytes", s->name, s->ip, strlen(line));
}

/* Run one command line. */
void
command_dispatch(struct session *s, char *line)
{
	const struct command *cmd;
	size_t name_len = strcspn(line, " ");
	char *args = line + name_len;

	/* After a 334 challenge the line is the AUTH response, not a command. */
	if (s->auth.awaiting_response) {
		auth_response(s, line);
		return;
	}

	while (*args == ' ')
		args++;
	for (cmd = commands; cmd->name != NULL; cmd++)
		if (name_len == strlen(cmd->name) && ascii_ncasecmp(line, cmd->name, name_len) == 0)
			break;

	s->command_counter = (int)cmd->counter;
	s->command_errors = s->errors;
	s->counters[cmd->counter].total++;

	if (cmd->name == NULL) {
		log_unrecognized_command(s, line);
		s->last_command = "UNKNOWN";
		session_reply(s, "500 5.5.2 Error: command not recognized");
	} else {
		s->last_command = cmd->name;
		cmd->handler(s, args);
	}

	if (s->state != SESSION_WAITING && s->state != SESSION_CHUNK)
		command_finish(s);
}

/* Forget the transaction; an unfinished spool file is aborted. */
void
transaction_reset(struct session *s)
{
	struct transaction *tx = &s->tx;

	if (tx->queue_id[0] != '\0' && s->queue_request != QUEUE_COMMIT)
		queue_client_abort(s);
	if (tx->spool_fd >= 0)
		close(tx->spool_fd);
	if (tx->spool_buffer != NULL)
		evbuffer_free(tx->spool_buffer);
	for (size_t i = 0; i < tx->nrecipients; i++)
		free(tx->recipients[i]);
	free(tx->recipients);
	submission_header_reset(s);
	free(tx->rcpt_params);

	memset(tx, 0, sizeof *tx);
	tx->spool_fd = -1;
}

/* A HELO/EHLO name goes into Received: fields, so it must be printable ASCII. */
static int
helo_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > SMTPD_HELO_MAX)
		return 0;
	for (const char *p = name; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return 0;
	return 1;
}

static int
greeting_accept(struct session *s, char *args, const char *command)
{
	if (!helo_name_valid(args)) {
		session_reply(s, "501 5.5.4 Syntax: %s hostname", command);
		return 0;
	}
	transaction_reset(s);
	strlcpy_x(s->helo, args, sizeof s->helo);
	return 1;
}

/*
 * The LIMITS keyword (RFC 9422): RCPTMAX from smtpd_recipient_limit and
 * MAILMAX from smtpd_session_transaction_limit, which is left out when
 * there is no limit.
 */
static void
format_limits(const struct smtpd_settings *settings, char *out, size_t size)
{
	int len = snprintf(out, size, "LIMITS RCPTMAX=%lld", settings->recipient_limit);

	if (settings->transaction_limit > 0 && len > 0 && (size_t)len < size)
		snprintf(out + len, size - (size_t)len, " MAILMAX=%lld", settings->transaction_limit);
}

static void
command_ehlo(struct session *s, char *args)
{
	const struct smtpd_settings *settings = &s->server->settings;
	char limits[96], auth[512];

	if (!greeting_accept(s, args, "EHLO"))
		return;
	s->esmtp = 1;
	format_limits(settings, limits, sizeof limits);
	auth_ehlo_keyword(s, auth, sizeof auth);
	session_reply(s,
	    "250-%s\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE %lld\r\n"
	    "250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "%s"
	    "250-SMTPUTF8\r\n"
	    "250-DSN\r\n"
	    "%s"
	    "250-%s\r\n"
	    "%s"
	    "250 CHUNKING",
	    settings->hostname, settings->message_size_limit,
	    tls_offered(s) ? "250-STARTTLS\r\n" : "",
	    session_tls_active(s) ? "250-REQUIRETLS\r\n" : "", limits, auth);
}

static void
command_helo(struct session *s, char *args)
{
	if (!greeting_accept(s, args, "HELO"))
		return;
	s->esmtp = 0;
	session_reply(s, "250 %s", s->server->settings.hostname);
}

static void
command_rset(struct session *s, char *args)
{
	if (*args != '\0') {
		session_reply(s, "501 5.5.4 Syntax: RSET");
		return;
	}
	transaction_reset(s);
	session_reply(s, "250 2.0.0 Ok");
}

static void
command_noop(struct session *s, char *args)
{
	session_reply(s, "250 2.0.0 Ok");
}

static void
command_quit(struct session *s, char *args)
{
	s->quit = 1;
	session_reply(s, "221 2.0.0 Bye");
	session_close(s);
}

static void
command_vrfy(struct session *s, char *args)
{
	if (*args == '\0') {
		session_reply(s, "501 5.5.4 Syntax: VRFY address");
		return;
	}
	/* RFC 5321 3.5.3: 252 when the server will not verify but will try delivery. */
	session_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
}

static void
command_expn(struct session *s, char *args)
{
	session_reply(s, "502 5.5.1 Error: EXPN not supported");
}

static void
command_help(struct session *s, char *args)
{
	session_reply(s, "214 2.0.0 Commands: EHLO HELO AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
}
