/*
 * Blocking client I/O for one IMAP connection: command reading with
 * literals (RFC 3501 {n}, RFC 7888 {n+}) and buffered replies. Both the
 * login process and the mail process use it.
 */
#ifndef ESTAFETA_IMAPD_IO_H
#define ESTAFETA_IMAPD_IO_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#define IMAP_IO_BUFFER	16384

/*
 * A transport in place of plain read(2) and write(2) on the socket: TLS
 * in the login process. READ and WRITE return like read(2) and write(2);
 * PENDING returns the bytes the transport has decoded but not yet
 * returned, which poll(2) on the socket cannot see.
 */
struct imap_io_transport {
	ssize_t (*read)(void *ctx, void *buf, size_t len);
	ssize_t (*write)(void *ctx, const void *buf, size_t len);
	size_t (*pending)(void *ctx);
	void *ctx;
};

struct imap_io {
	int fd;
	const struct imap_io_transport *transport;	/* NULL: the socket itself */
	char in[IMAP_IO_BUFFER];
	size_t inpos, inlen;
	char *out;
	size_t outlen, outcap;
	int timeout_ms;		/* for each read; -1 waits forever */
	int failed;		/* a write failed: the client is gone */
};

/* Limits for imap_io_read_command. */
struct imap_limits {
	size_t max_line;	/* one line, literals excluded */
	size_t max_literal;	/* all literals of a command but APPEND */
	size_t max_append;	/* all literals of an APPEND */
};

enum imap_read_status {
	IMAP_READ_OK,
	IMAP_READ_EOF,
	IMAP_READ_TIMEOUT,
	IMAP_READ_TOO_LONG,	/* line over max_line; the rest of it was skipped */
	IMAP_READ_LITERAL_TOO_BIG,	/* a synchronizing literal over its limit: never sent */
	IMAP_READ_LITERAL_SKIPPED,	/* a non-synchronizing one, read and thrown away */
	IMAP_READ_LITERAL_CLOSE,	/* a non-synchronizing one too big even to skip */
	IMAP_READ_BAD_LITERAL,	/* {n} with an invalid number */
};

/* A command as read: its lines joined with CRLF, each literal's bytes
 * inline after its "{n}\r\n", no final CRLF. */
struct imap_command_text {
	char *data;
	size_t len;
	size_t cap;
	char tag[64];		/* the first word, for replies to a rejected command */
	int is_append;
};

void imap_io_init(struct imap_io *io, int fd, int timeout_ms);
void imap_io_free(struct imap_io *io);

/* Bytes already read from the client but not consumed. */
size_t imap_io_buffered(const struct imap_io *io);

/*
 * Read one command into TEXT. Synchronizing literals within their
 * limit get a "+ OK" continuation (flushed first). On an error status
 * TEXT->tag contains the tag when one was read.
 */
enum imap_read_status imap_io_read_command(struct imap_io *io, const struct imap_limits *limits,
    struct imap_command_text *text);
/*
 * Send the standard reply for a command that imap_io_read_command did
 * not return (status other than IMAP_READ_OK). Returns 1 when the
 * session must end (EOF, timeout, or a literal too big to skip).
 */
int imap_io_reject(struct imap_io *io, enum imap_read_status status,
    const struct imap_command_text *text);
void imap_command_text_free(struct imap_command_text *text);

/* Read one line (no CRLF) of at most MAX bytes into a new string, for
 * AUTHENTICATE responses and IDLE's DONE. NULL on EOF, timeout or a too
 * long line, with the cause in *STATUS. */
char *imap_io_read_line(struct imap_io *io, size_t max, enum imap_read_status *status);

/* Wait until input is available, at most TIMEOUT_MS. 1 ready, 0 timeout, -1 EOF/error. */
int imap_io_wait(struct imap_io *io, int timeout_ms);

void imap_io_write(struct imap_io *io, const void *data, size_t len);
void imap_io_puts(struct imap_io *io, const char *text);
void imap_io_printf(struct imap_io *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Write a string as an IMAP quoted string when it can be one, else as a literal. */
void imap_io_astring(struct imap_io *io, const char *text, size_t len);
/* NIL for NULL, else like imap_io_astring but never an atom. */
void imap_io_nstring(struct imap_io *io, const char *text, size_t len);
int imap_io_flush(struct imap_io *io);

/* Drop the unconsumed input: what a client sent after STARTTLS in the
 * same packet must not run once TLS is up. Returns the bytes dropped. */
size_t imap_io_discard_input(struct imap_io *io);

/* Take the unconsumed input out of IO (for the login handoff). */
size_t imap_io_take_input(struct imap_io *io, char *out, size_t outsize);
/* Put INPUT in front of anything unread (input pipelined before a handoff). */
void imap_io_push_input(struct imap_io *io, const char *input, size_t len);

#endif
