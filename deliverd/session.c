/*
 * One LMTP session (RFC 2033), in a process of its own that dropped to
 * smtpd_user before reading any input. I/O is blocking with a timeout;
 * replies are buffered and flushed whenever the input is drained, which
 * is all PIPELINING needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "deliverd.h"
#include "ipc.h"
#include "log.h"
#include "privsep.h"
#include "session.h"
#include "smtp_data.h"
#include "util.h"

#define LINE_MAX_LENGTH	4096	/* command line, CRLF included */
#define MAX_RECIPIENTS	1000
#define MAX_ERRORS	20

static void
session_reply_line(struct session *s, int code, char separator, const char *fmt, va_list ap)
{
	char line[1024];
	int n = snprintf(line, sizeof line, "%d%c", code, separator);
	size_t len;

	vsnprintf(line + n, sizeof line - (size_t)n - 2, fmt, ap);
	len = strlen(line);
	memcpy(line + len, "\r\n", 2);
	len += 2;

	if (s->out_len + len > sizeof s->out)
		session_flush(s);
	memcpy(s->out + s->out_len, line, len);
	s->out_len += len;
}

void
session_reply(struct session *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_reply_line(s, code, ' ', fmt, ap);
	va_end(ap);
}

void
session_reply_continued(struct session *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_reply_line(s, code, '-', fmt, ap);
	va_end(ap);
}

int
session_reply_code(const struct delivery_result *result)
{
	if (result->status == EX_OK)
		return 250;
	if (result_is_temporary(result->status))
		return strncmp(result->dsn, "4.2.2", 5) == 0 || strncmp(result->dsn, "4.3.1", 5) == 0 ?
		    452 : 451;
	return strncmp(result->dsn, "5.3.4", 5) == 0 || strncmp(result->dsn, "5.2.2", 5) == 0 ?
	    552 : 550;
}

long long
session_size_limit(void)
{
	if (config_param_find("message_size_limit") == NULL)
		return 0;
	return config_size("message_size_limit");
}

void
session_flush(struct session *s)
{
	if (s->out_len > 0 && write_all(s->fd, s->out, s->out_len) < 0) {
		log_info("%s: lost connection while writing a reply: %s", s->id, strerror(errno));
		_exit(0);
	}
	s->out_len = 0;
}

void
session_fill(struct session *s)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	ssize_t n;

	session_flush(s);
	if (s->in_start == s->in_end)
		s->in_start = s->in_end = 0;
	if (s->in_start > 0 && s->in_end == sizeof s->in) {
		memmove(s->in, s->in + s->in_start, s->in_end - s->in_start);
		s->in_end -= s->in_start;
		s->in_start = 0;
	}

	for (;;) {
		int ready = poll(&pfd, 1, (int)(s->timeout_seconds * 1000));

		if (ready < 0 && errno == EINTR)
			continue;
		if (ready == 0) {
			log_info("%s: timeout after %lld seconds, closing the connection", s->id,
			    s->timeout_seconds);
			session_reply(s, 421, "4.4.2 %s timeout, closing the connection", local_hostname());
			session_flush(s);
			_exit(0);
		}
		n = read(s->fd, s->in + s->in_end, sizeof s->in - s->in_end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				log_info("%s: read failed: %s", s->id, strerror(errno));
			_exit(0);
		}
		s->in_end += (size_t)n;
		return;
	}
}

/*
 * Read one command line into LINE (CRLF or LF removed). Returns its
 * length, or -1 when the line was longer than LINE_MAX_LENGTH (it is
 * then skipped up to its end).
 */
static ssize_t
session_read_line(struct session *s, char *line, size_t size)
{
	int too_long = 0;

	for (;;) {
		char *start = s->in + s->in_start;
		char *lf = memchr(start, '\n', s->in_end - s->in_start);

		if (lf != NULL) {
			size_t len = (size_t)(lf - start);

			s->in_start += len + 1;
			if (too_long || len >= size)
				return -1;
			if (len > 0 && start[len - 1] == '\r')
				len--;
			memcpy(line, start, len);
			line[len] = '\0';
			return (ssize_t)len;
		}
		if (s->in_end - s->in_start >= LINE_MAX_LENGTH) {
			too_long = 1;
			s->in_start = s->in_end;
		}
		session_fill(s);
	}
}

static void
session_new_id(struct session *s)
{
	unsigned char bytes[5];

	if (getrandom(bytes, sizeof bytes, 0) != sizeof bytes)
		memset(bytes, 0, sizeof bytes);
	snprintf(s->id, sizeof s->id, "%02X%02X%02X%02X%02X", bytes[0], bytes[1], bytes[2],
	    bytes[3], bytes[4]);
}

void
session_reset(struct session *s)
{
	for (size_t i = 0; i < s->nrcpts; i++)
		target_list_free(&s->rcpts[i].targets);
	s->nrcpts = 0;
	s->in_transaction = 0;
	s->quarantine = 0;
	s->sender[0] = '\0';
	session_chunks_free(s);
}

/* Whether LINE starts with the command word WORD followed by a space
 * or the end of the line. */
static int
command_is(const char *line, const char *word)
{
	size_t len = strlen(word);

	return ascii_ncasecmp(line, word, len) == 0 && (line[len] == '\0' || line[len] == ' ');
}

/*
 * Whether MAIL accepts XQUARANTINE, a private parameter that queued
 * sends for messages with filterd's quarantine verdict. LHLO advertises
 * it only while deliverd_quarantine_folder is set, and queued sends it
 * only when advertised, so other LMTP clients and servers never see it.
 */
static int
quarantine_enabled(void)
{
	return config_string("deliverd_quarantine_folder")[0] != '\0';
}

static void
handle_lhlo(struct session *s, const char *arg)
{
	long long limit = session_size_limit();

	if (*arg == '\0') {
		session_reply(s, 501, "5.5.4 Syntax: LHLO hostname");
		return;
	}
	session_reset(s);
	s->lhlo_done = 1;
	session_reply_continued(s, 250, "%s", local_hostname());
	session_reply_continued(s, 250, "PIPELINING");
	session_reply_continued(s, 250, "ENHANCEDSTATUSCODES");
	session_reply_continued(s, 250, "8BITMIME");
	session_reply_continued(s, 250, "SMTPUTF8");
	session_reply_continued(s, 250, "CHUNKING");
	if (quarantine_enabled())
		session_reply_continued(s, 250, "XQUARANTINE");
	if (limit > 0)
		session_reply(s, 250, "SIZE %lld", limit);
	else
		session_reply(s, 250, "SIZE");
}

/* Parse the ESMTP parameters of MAIL FROM. Returns 0 or -1 (replied). */
static int
mail_parameters(struct session *s, char *params)
{
	long long limit = session_size_limit();
	char *param;

	while ((param = strsep(&params, " ")) != NULL) {
		if (*param == '\0')
			continue;
		if (ascii_ncasecmp(param, "SIZE=", 5) == 0) {
			char *end;
			long long size = strtoll(param + 5, &end, 10);

			if (*end != '\0' || size < 0) {
				session_reply(s, 501, "5.5.4 Invalid SIZE parameter");
				return -1;
			}
			if (limit > 0 && size > limit) {
				session_reply(s, 552, "5.3.4 Message size exceeds the limit of %lld bytes", limit);
				return -1;
			}
		} else if (ascii_ncasecmp(param, "BODY=", 5) == 0) {
			if (ascii_casecmp(param + 5, "7BIT") != 0 &&
			    ascii_casecmp(param + 5, "8BITMIME") != 0) {
				session_reply(s, 501, "5.5.4 Unsupported BODY type (7BIT or 8BITMIME)");
				return -1;
			}
		} else if (ascii_casecmp(param, "SMTPUTF8") == 0) {
			s->smtputf8 = 1;
		} else if (ascii_ncasecmp(param, "AUTH=", 5) == 0) {
			continue;	/* RFC 4954 5: a server may ignore it */
		} else if (ascii_casecmp(param, "XQUARANTINE") == 0 && quarantine_enabled()) {
			s->quarantine = 1;
		} else if (ascii_ncasecmp(param, "XQUARANTINE=", 12) == 0 && quarantine_enabled()) {
			session_reply(s, 501, "5.5.4 Invalid XQUARANTINE parameter: it takes no value");
			return -1;
		} else {
			char printable[128];

			log_sanitize(printable, sizeof printable, param, strlen(param));
			session_reply(s, 555, "5.5.4 Unsupported parameter %s", printable);
			return -1;
		}
	}
	return 0;
}

/* Parse "KEYWORD:<path> params" after the command word. Returns the
 * parameters (possibly empty) or NULL after a syntax error reply. */
static char *
parse_path_argument(struct session *s, char *arg, const char *keyword, int flags,
    struct mailaddr *addr)
{
	size_t len = strlen(keyword);
	const char *why = NULL, *end;

	if (ascii_ncasecmp(arg, keyword, len) != 0) {
		session_reply(s, 501, "5.5.4 Syntax: %s<address>", keyword);
		return NULL;
	}
	arg += len;
	while (*arg == ' ')
		arg++;
	if (addr_parse_path(arg, flags, addr, &end, &why) < 0) {
		session_reply(s, 501, "5.1.%d Invalid address: %s", strcmp(keyword, "FROM:") == 0 ? 7 : 3,
		    why);
		return NULL;
	}
	if (*end != '\0' && *end != ' ') {
		session_reply(s, 501, "5.5.4 Invalid text after the address");
		return NULL;
	}
	return (char *)end;
}

static void
handle_mail(struct session *s, char *arg)
{
	struct mailaddr sender;
	char *params;

	if (!s->lhlo_done) {
		session_reply(s, 503, "5.5.1 Send LHLO first");
		return;
	}
	if (s->in_transaction) {
		session_reply(s, 503, "5.5.1 Nested MAIL command");
		return;
	}
	s->smtputf8 = 0;
	s->quarantine = 0;
	params = parse_path_argument(s, arg, "FROM:", ADDR_ALLOW_EMPTY | ADDR_ALLOW_UTF8, &sender);
	if (params == NULL || mail_parameters(s, params) < 0)
		return;

	addr_format(&sender, s->sender, sizeof s->sender);
	session_new_id(s);
	s->in_transaction = 1;
	session_reply(s, 250, "2.1.0 Sender OK");
}

static void
handle_rcpt(struct session *s, char *arg)
{
	struct recipient *rcpt;
	struct delivery_result failure;
	struct mailaddr addr;
	char *params;

	if (!s->in_transaction) {
		session_reply(s, 503, "5.5.1 Send MAIL first");
		return;
	}
	params = parse_path_argument(s, arg, "TO:", ADDR_ALLOW_UTF8 | ADDR_ALLOW_NO_DOMAIN, &addr);
	if (params == NULL)
		return;
	while (*params == ' ')
		params++;
	if (*params != '\0' && ascii_ncasecmp(params, "ORCPT=", 6) != 0) {
		session_reply(s, 555, "5.5.4 Unsupported RCPT parameter");
		return;
	}
	if (s->nrcpts >= MAX_RECIPIENTS) {
		session_reply(s, 452, "4.5.3 Too many recipients");
		return;
	}

	rcpt = &s->rcpts[s->nrcpts];
	memset(rcpt, 0, sizeof *rcpt);
	addr_format(&addr, rcpt->address, sizeof rcpt->address);
	if (addr.domain[0] == '\0')
		snprintf(rcpt->address + strlen(rcpt->address),
		    sizeof rcpt->address - strlen(rcpt->address), "@%s", local_hostname());

	resolver_refresh(s->resolver);
	if (!resolve_recipient(s->resolver, &addr, &rcpt->targets, &failure)) {
		target_list_free(&rcpt->targets);
		log_info("%s: reject: RCPT to=<%s>: %s %s", s->id, rcpt->address, failure.dsn,
		    failure.text);
		session_reply(s, session_reply_code(&failure), "%s %s", failure.dsn, failure.text);
		return;
	}
	s->nrcpts++;
	session_reply(s, 250, "2.1.5 <%s> OK", rcpt->address);
}

int
message_temp_file(void)
{
	const char *dir = config_string("deliverd_temp_directory");
	char path[4096];
	int fd;

	if (dir[0] == '\0')
		return memfd_create("deliverd-message", MFD_CLOEXEC);

	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd;

	snprintf(path, sizeof path, "%s/deliverd.XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/*
 * Read the message after 354 into a temporary file: dot-stuffing
 * removed, CRLF turned into LF. Returns the descriptor, or -1 after
 * reading to the end of the data, with FAILURE set (too big, disk error).
 */
static int
read_message(struct session *s, off_t *size, struct delivery_result *failure)
{
	struct smtp_data_decoder decoder;
	long long limit = session_size_limit();
	char *chunk = xmalloc(sizeof s->in + 1);
	int fd = message_temp_file(), write_error = fd < 0 ? errno : 0;

	*size = 0;
	smtp_data_init(&decoder, SMTP_DATA_DOT, (size_t)-1);
	while (!decoder.done) {
		size_t outlen = 0, used;

		if (s->in_start == s->in_end)
			session_fill(s);
		used = smtp_data_decode(&decoder, s->in + s->in_start, s->in_end - s->in_start,
		    chunk, &outlen);
		s->in_start += used;

		*size += (off_t)outlen;
		if (limit > 0 && *size > limit)
			continue;
		if (write_error == 0 && write_all(fd, chunk, outlen) < 0)
			write_error = errno;
	}
	free(chunk);

	if (limit > 0 && *size > limit) {
		result_set(failure, EX_UNAVAILABLE, "5.3.4", "Message size exceeds the limit of %lld bytes",
		    limit);
	} else if (write_error != 0) {
		log_error("%s: cannot store the message in %s: %s", s->id,
		    config_string("deliverd_temp_directory")[0] != '\0' ?
		    config_string("deliverd_temp_directory") : "memory", strerror(write_error));
		result_set(failure, EX_TEMPFAIL, "4.3.0", "Cannot store the message, try again later");
	} else {
		return fd;
	}
	if (fd >= 0)
		close(fd);
	return -1;
}

static void
handle_data(struct session *s, const char *arg)
{
	struct delivery_result failure;
	off_t size;
	int fd;

	if (*arg != '\0') {
		session_reply(s, 501, "5.5.4 Syntax: DATA");
		return;
	}
	if (!s->in_transaction) {
		session_reply(s, 503, "5.5.1 Send MAIL first");
		return;
	}
	if (s->nrcpts == 0) {
		session_reply(s, 503, "5.5.1 No valid recipients");
		return;
	}
	if (s->chunks.active) {
		session_reply(s, 503, "5.5.1 DATA after BDAT in the same transaction");
		return;
	}
	session_reply(s, 354, "Send the message, end with <CRLF>.<CRLF>");

	fd = read_message(s, &size, &failure);
	if (fd < 0) {
		for (size_t i = 0; i < s->nrcpts; i++)
			session_reply(s, session_reply_code(&failure), "%s <%s> %s", failure.dsn,
			    s->rcpts[i].address, failure.text);
	} else {
		session_deliver(s, fd, size);
		close(fd);
	}
	session_reset(s);
}

/* Returns 0 to go on, -1 after QUIT or too many errors. */
static int
session_command(struct session *s, char *line)
{
	char *arg = line;

	while (*arg != '\0' && *arg != ' ')
		arg++;
	if (*arg == ' ')
		arg++;

	if (command_is(line, "LHLO")) {
		handle_lhlo(s, arg);
	} else if (command_is(line, "MAIL")) {
		handle_mail(s, arg);
	} else if (command_is(line, "RCPT")) {
		handle_rcpt(s, arg);
	} else if (command_is(line, "DATA")) {
		handle_data(s, arg);
	} else if (command_is(line, "BDAT")) {
		session_bdat(s, arg);
	} else if (command_is(line, "RSET")) {
		session_reset(s);
		session_reply(s, 250, "2.0.0 OK");
	} else if (command_is(line, "NOOP")) {
		session_reply(s, 250, "2.0.0 OK");
	} else if (command_is(line, "QUIT")) {
		session_reply(s, 221, "2.0.0 %s closing connection", local_hostname());
		return -1;
	} else if (command_is(line, "VRFY")) {
		session_reply(s, 252, "2.5.2 Cannot VRFY a user, but will accept the message");
	} else if (command_is(line, "HELO") || command_is(line, "EHLO")) {
		session_reply(s, 500, "5.5.1 This is an LMTP server: use LHLO");
		s->errors++;
	} else {
		session_reply(s, 500, "5.5.2 Command not recognized");
		s->errors++;
	}

	/* An orphan of a crashed master would fail every later delivery
	 * on this connection; closing it makes the client reconnect to the
	 * restarted deliverd. */
	if (s->master_lost) {
		session_reply(s, 421, "4.3.0 %s delivery service restarting, closing the connection",
		    local_hostname());
		return -1;
	}
	if (s->errors >= MAX_ERRORS) {
		session_reply(s, 421, "4.7.0 %s too many errors, closing the connection",
		    local_hostname());
		return -1;
	}
	return 0;
}

void
session_run(int client_fd, int channel, uid_t peer_uid)
{
	struct session *s = xcalloc(1, sizeof *s);
	char line[LINE_MAX_LENGTH];
	int refuse_uid0 = privsep_is_root();

	signal(SIGPIPE, SIG_IGN);
	privsep_drop(config_string("smtpd_user"), NULL);

	s->fd = client_fd;
	s->channel = channel;
	s->timeout_seconds = config_time("deliverd_timeout");
	s->resolver = resolver_new(refuse_uid0);
	s->rcpts = xcalloc(MAX_RECIPIENTS, sizeof *s->rcpts);
	s->chunks.fd = -1;
	session_new_id(s);
	log_debug("%s: LMTP connection from uid %u", s->id, (unsigned)peer_uid);

	session_reply(s, 220, "%s LMTP Estafeta ready", local_hostname());
	for (;;) {
		ssize_t len = session_read_line(s, line, sizeof line);

		if (len < 0) {
			session_reply(s, 500, "5.5.6 Line too long");
			if (++s->errors >= MAX_ERRORS)
				break;
			continue;
		}
		if (session_command(s, line) < 0)
			break;
	}
	session_flush(s);
	resolver_free(s->resolver);
	_exit(0);
}
