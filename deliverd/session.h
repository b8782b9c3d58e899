/* The LMTP session process: its state and the steps shared by its files. */
#ifndef ESTAFETA_DELIVERD_SESSION_H
#define ESTAFETA_DELIVERD_SESSION_H

#include <stddef.h>
#include <sys/types.h>

#include "addr.h"
#include "deliverd.h"
#include "smtp_data.h"

/* One accepted RCPT and what it resolved to. */
struct recipient {
	char address[ADDR_MAX * 4 + 2];
	struct target_list targets;
	struct delivery_result result;	/* combined over all destinations */
	int have_result;
};

struct session {
	int fd;			/* the LMTP client */
	int channel;		/* socketpair end leading to the master */
	char id[16];		/* logged with every line; new for each transaction */
	long long timeout_seconds;
	int errors;
	int master_lost;	/* the master died: reply, then close so the client reconnects */
	struct resolver *resolver;

	char in[64 * 1024];
	size_t in_start, in_end;
	char out[16 * 1024];
	size_t out_len;

	int lhlo_done;
	int in_transaction;
	int smtputf8;
	int quarantine;		/* MAIL had XQUARANTINE: mailboxes get the message in the Junk folder */
	char sender[ADDR_MAX * 4 + 2];
	struct recipient *rcpts;
	size_t nrcpts;

	/* The message of the BDAT chunks received so far (session_chunk.c). */
	struct chunked_message {
		int active;
		int fd;			/* temporary file, -1 if it could not be made */
		off_t size;		/* decoded octets, counted past the size limit */
		int write_error;	/* errno of the first failed write, or 0 */
		struct smtp_data_decoder decoder;
	} chunks;
};

/* Queue a reply line "CODE text" (session_reply) or "CODE-text" (more
 * lines follow); replies go out when the input is drained. */
void session_reply(struct session *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void session_reply_continued(struct session *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void session_flush(struct session *s);
void session_reset(struct session *s);

/* The reply code for a failed result: 451/452 for temporary failures,
 * 550/552 for permanent ones. */
int session_reply_code(const struct delivery_result *result);

/* message_size_limit if smtpd's parameter table has it, else 0 (none). */
long long session_size_limit(void);

/* Read more input, waiting at most deliverd_timeout. Exits the session
 * on timeout, end of file or error. */
void session_fill(struct session *s);

/* Create the unlinked temporary file for a message: in memory by
 * default, in deliverd_temp_directory when the admin names one. */
int message_temp_file(void);

/* session_chunk.c: BDAT SIZE [LAST] (RFC 3030), and the release of an
 * unfinished chunked message (at RSET and the end of a transaction). */
void session_bdat(struct session *s, const char *arg);
void session_chunks_free(struct session *s);

/* session_deliver.c: deliver the message in FD (SIZE bytes) to every
 * accepted recipient and reply once per recipient, in RCPT order. */
void session_deliver(struct session *s, int fd, off_t size);

#endif
