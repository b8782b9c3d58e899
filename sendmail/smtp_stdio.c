/*
 * sendmail -bs: an SMTP session on standard input and output for local
 * programs that prefer SMTP to the command line. Messages take the same
 * path as sendmail's own (submit_local). Lines may end in CRLF or LF, and
 * replies end in CRLF. The client is the invoking user, who could submit
 * the same message with plain sendmail, so no relay control applies.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "addr.h"
#include "config.h"
#include "sendmail.h"
#include "util.h"

#define SMTP_LINE_MAX	4096	/* longest command line accepted, CRLF excluded */
#define SMTP_RCPT_MAX	1000	/* recipients per message */

struct session {
	FILE *in;
	FILE *out;
	const struct local_user *user;
	char helo[256];		/* "" until HELO or EHLO */
	int esmtp;
	int have_sender;
	char sender[ADDR_MAX * 4 + 2];
	const char *body_type;
	struct address_list rcpts;
};

static void
reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(s->out, fmt, ap);
	va_end(ap);
	fputs("\r\n", s->out);
	fflush(s->out);
}

static void
transaction_reset(struct session *s)
{
	s->have_sender = 0;
	s->sender[0] = '\0';
	s->body_type = NULL;
	address_list_free(&s->rcpts);
}

/* Read one line without its line end into *LINE. Returns its length, or -1 at EOF. */
static ssize_t
read_line(struct session *s, char **line, size_t *cap)
{
	ssize_t n = getline(line, cap, s->in);

	if (n <= 0)
		return -1;
	if ((*line)[n - 1] == '\n')
		(*line)[--n] = '\0';
	if (n > 0 && (*line)[n - 1] == '\r')
		(*line)[--n] = '\0';
	return n;
}

static void
cmd_helo(struct session *s, const char *arg, int esmtp)
{
	if (*arg == '\0') {
		reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	strlcpy_x(s->helo, arg, sizeof s->helo);
	s->esmtp = esmtp;
	transaction_reset(s);
	if (!esmtp) {
		reply(s, "250 %s", my_hostname());
		return;
	}
	fprintf(s->out, "250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n", my_hostname());
	reply(s, "250 ENHANCEDSTATUSCODES");
}

/*
 * Parse "<path>" at TEXT into OUT (normalized, @myhostname added to a
 * bare local part). Returns 0, 1 for "<>", or -1 with *WHY set.
 */
static int
parse_path(const char *text, char *out, size_t outsize, const char **end, const char **why)
{
	struct mailaddr addr;
	const char *close = strchr(text, '>');
	char *qualified = NULL;
	int rc;

	*why = "invalid address";
	if (*text != '<' || close == NULL)
		return -1;
	if (close == text + 1) {
		*end = close + 1;
		*out = '\0';
		return 1;
	}
	if (memchr(text, '@', (size_t)(close - text)) == NULL) {
		qualified = xasprintf("%.*s@%s>", (int)(close - text), text, my_hostname());
		text = qualified;
	}
	rc = addr_parse_path(text, ADDR_ALLOW_UTF8, &addr, end, why);
	if (qualified != NULL)
		*end = close + 1;	/* in the original text */
	free(qualified);
	if (rc < 0)
		return -1;
	addr_format(&addr, out, outsize);
	return 0;
}

/* MAIL FROM parameters: BODY= and SIZE= are used or checked, the others ignored. */
static int
mail_parameters(struct session *s, char *params)
{
	char *save = NULL;

	for (char *p = strtok_r(params, " ", &save); p != NULL; p = strtok_r(NULL, " ", &save)) {
		if (ascii_ncasecmp(p, "BODY=", 5) == 0) {
			if (ascii_casecmp(p + 5, "7BIT") == 0)
				s->body_type = "7BIT";
			else if (ascii_casecmp(p + 5, "8BITMIME") == 0)
				s->body_type = "8BITMIME";
			else
				return -1;
		} else if (ascii_ncasecmp(p, "SIZE=", 5) == 0 || ascii_casecmp(p, "SMTPUTF8") == 0 ||
		    ascii_ncasecmp(p, "RET=", 4) == 0 || ascii_ncasecmp(p, "ENVID=", 6) == 0 ||
		    ascii_ncasecmp(p, "AUTH=", 5) == 0) {
			continue;
		} else {
			return -1;
		}
	}
	return 0;
}

static void
cmd_mail(struct session *s, const char *arg)
{
	const char *end = NULL, *why;
	char *params;

	if (s->have_sender) {
		reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (ascii_ncasecmp(arg, "FROM:", 5) != 0) {
		reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	arg += 5;
	while (*arg == ' ')
		arg++;
	if (parse_path(arg, s->sender, sizeof s->sender, &end, &why) < 0) {
		reply(s, "501 5.1.7 Bad sender address syntax: %s", why);
		return;
	}
	params = xstrdup(end);
	if (mail_parameters(s, params) < 0) {
		free(params);
		s->body_type = NULL;
		reply(s, "555 5.5.4 Unsupported MAIL FROM parameter");
		return;
	}
	free(params);
	s->have_sender = 1;
	reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct session *s, const char *arg)
{
	char address[ADDR_MAX * 4 + 2];
	const char *end, *why;

	if (!s->have_sender) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (ascii_ncasecmp(arg, "TO:", 3) != 0) {
		reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	arg += 3;
	while (*arg == ' ')
		arg++;
	if (parse_path(arg, address, sizeof address, &end, &why) != 0) {
		reply(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (s->rcpts.count >= SMTP_RCPT_MAX) {
		reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	address_list_add(&s->rcpts, address);
	reply(s, "250 2.1.5 Ok");
}

/* Read the message up to the line with a single dot, undoing dot-stuffing. */
static int
read_data(struct session *s, struct message *msg, long long max_size, int *too_large)
{
	size_t cap = 0, linecap = 0;
	char *line = NULL;
	ssize_t n;

	memset(msg, 0, sizeof *msg);
	*too_large = 0;
	while ((n = read_line(s, &line, &linecap)) >= 0) {
		const char *text = line;

		if (n == 1 && line[0] == '.') {
			free(line);
			return 0;
		}
		if (line[0] == '.') {
			text++;
			n--;
		}
		if (*too_large || (max_size > 0 && (long long)(msg->len + (size_t)n + 1) > max_size)) {
			*too_large = 1;
			continue;
		}
		if (msg->len + (size_t)n + 2 > cap) {
			while (msg->len + (size_t)n + 2 > cap)
				cap = cap == 0 ? 65536 : cap * 2;
			msg->data = xrealloc(msg->data, cap);
		}
		memcpy(msg->data + msg->len, text, (size_t)n);
		msg->len += (size_t)n;
		msg->data[msg->len++] = '\n';
		msg->data[msg->len] = '\0';
	}
	free(line);
	return -1;
}

/* DATA: returns -1 when the input ended inside the message. */
static int
cmd_data(struct session *s)
{
	struct local_submission sub = { 0 };
	struct message msg;
	char queue_id[QUEUE_ID_MAX];
	long long max_size = config_param_find("message_size_limit") != NULL ?
	    config_size("message_size_limit") : 0;
	int too_large, rc;

	if (s->rcpts.count == 0) {
		reply(s, s->have_sender ? "554 5.5.1 Error: no valid recipients" :
		    "503 5.5.1 Error: need RCPT command");
		return 0;
	}
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
	if (read_data(s, &msg, max_size, &too_large) < 0) {
		message_free(&msg);
		return -1;
	}
	if (msg.data == NULL) {
		msg.data = xstrdup("");
		msg.len = 0;
	}
	if (too_large) {
		reply(s, "552 5.3.4 Error: message file too big");
		message_free(&msg);
		transaction_reset(s);
		return 0;
	}

	sub.sender = s->sender;
	sub.rcpts = &s->rcpts;
	sub.body_type = s->body_type;
	sub.protocol = s->esmtp ? "ESMTP" : "SMTP";
	sub.helo = s->helo[0] != '\0' ? s->helo : NULL;
	sub.user = s->user;
	rc = submit_local(&sub, &msg, queue_id);
	message_free(&msg);
	if (rc == EX_OK)
		reply(s, "250 2.0.0 Ok: queued as %s", queue_id);
	else if (rc == EX_UNAVAILABLE)
		reply(s, "554 5.7.1 Error: message rejected by the mail filter");
	else
		reply(s, "451 4.3.0 Error: queue file write error");
	transaction_reset(s);
	return 0;
}

/* One command line. Returns 1 after QUIT, -1 at end of input, else 0. */
static int
dispatch(struct session *s, char *line)
{
	char *arg = line + strcspn(line, " ");

	if (*arg == ' ')
		*arg++ = '\0';

	if (ascii_casecmp(line, "HELO") == 0)
		cmd_helo(s, arg, 0);
	else if (ascii_casecmp(line, "EHLO") == 0)
		cmd_helo(s, arg, 1);
	else if (ascii_casecmp(line, "MAIL") == 0)
		cmd_mail(s, arg);
	else if (ascii_casecmp(line, "RCPT") == 0)
		cmd_rcpt(s, arg);
	else if (ascii_casecmp(line, "DATA") == 0)
		return cmd_data(s);
	else if (ascii_casecmp(line, "RSET") == 0) {
		transaction_reset(s);
		reply(s, "250 2.0.0 Ok");
	} else if (ascii_casecmp(line, "NOOP") == 0)
		reply(s, "250 2.0.0 Ok");
	else if (ascii_casecmp(line, "VRFY") == 0)
		reply(s, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
	else if (ascii_casecmp(line, "HELP") == 0)
		reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT");
	else if (ascii_casecmp(line, "QUIT") == 0) {
		reply(s, "221 2.0.0 Bye");
		return 1;
	} else
		reply(s, "502 5.5.2 Error: command not recognized");
	return 0;
}

int
smtp_stdio_run(FILE *in, FILE *out, const struct local_user *user)
{
	struct session s = { .in = in, .out = out, .user = user };
	size_t cap = 0;
	char *line = NULL;
	ssize_t n;
	int rc = 0;

	reply(&s, "220 %s ESMTP Estafeta", my_hostname());
	while (rc == 0 && (n = read_line(&s, &line, &cap)) >= 0) {
		if ((size_t)n != strlen(line))
			reply(&s, "500 5.5.2 Error: NUL byte in command");
		else if (n > SMTP_LINE_MAX)
			reply(&s, "500 5.5.2 Error: line too long");
		else
			rc = dispatch(&s, line);
	}
	free(line);
	transaction_reset(&s);
	return EX_OK;
}
