/*
 * Envelope files: the sender, recipients and per-recipient delivery
 * state of one queued message, stored next to its data file.
 *
 * The format is text, one "key=value" per line like the IPC frames:
 *
 *   version=1
 *   id=4F2A1B3C9D0E1F20
 *   arrival=1733350000.123456
 *   size=1234
 *   sender=alice@example.test          (empty for the null sender)
 *   attempts=0
 *   next_attempt=0
 *   seq=0                              (updates of this envelope so far)
 *   data_crc=1C291CA3                  (CRC-32 of the data file, written
 *                                      by the commit)
 *   data_synced=1                      (instead, for a large file: it was
 *                                      synced before this was written)
 *   body=8BITMIME, smtputf8=yes, client_addr=..., ...   (optional)
 *   ret=FULL|HDRS, envid=TEXT, requiretls=1, tls_required=no (optional:
 *                                      DSN and REQUIRETLS parameters)
 *   quarantine=1                       (optional: local recipients get the
 *                                      message in their Junk folder)
 *   rcpt=bob@example.test              (then the keys of that recipient:)
 *   orcpt=rfc822;bob@example.test      (optional)
 *   notify=SUCCESS,FAILURE             (optional: the DSN NOTIFY parameter)
 *   success_reported=1                 (optional: delivered DSN queued, declined,
 *                                      or left to the next hop)
 *   relayed=1                          (optional: relayed over SMTP to a server
 *                                      without DSN)
 *   status=pending|deferred|sent|failed|bounced
 *   dsn=4.4.1                          (optional)
 *   reason=TEXT                        (optional)
 *   remote_mta=HOST[ADDRESS]           (optional: the SMTP server that sent
 *   reply_command=RCPT TO              the reply in reason, and the command
 *                                      it replied to)
 *   crc=5A3E09B1                       (CRC-32 of every line above)
 *   end=1
 *
 * The final "end" line marks a complete file, and the crc line shows
 * that no part of it was lost: a commit is acknowledged once a complete
 * envelope is on disk in tmp/, before it is renamed (commit.h). Keys
 * this version does not know are kept and written back unchanged.
 */
#ifndef ESTAFETA_QUEUED_ENVELOPE_H
#define ESTAFETA_QUEUED_ENVELOPE_H

#include <stddef.h>

#include "queue_proto.h"

#define ENVELOPE_VERSION 1
#define ENVELOPE_REASON_MAX 500

enum rcpt_status {
	RCPT_PENDING,	/* not yet tried */
	RCPT_DEFERRED,	/* tried, temporary failure */
	RCPT_SENT,	/* delivered: done */
	RCPT_FAILED,	/* permanent failure, notification not yet queued */
	RCPT_BOUNCED,	/* permanent failure, notification queued or not needed: done */
};

struct envelope_rcpt {
	char *address;
	char *orcpt;		/* NULL when absent */
	char *notify;		/* DSN NOTIFY value ("NEVER", "SUCCESS,DELAY"), NULL when absent */
	int success_reported;	/* a success DSN was queued, declined and logged, or left
				 * to a next hop that offers DSN */
	int relayed;		/* accepted by an SMTP server without DSN */
	enum rcpt_status status;
	char *dsn;		/* enhanced status code of the last attempt, or NULL */
	char *reason;		/* last reply or error, or NULL */
	char *remote_mta;	/* "host[address]" of the SMTP server that sent the reply
				 * in reason, or NULL */
	char *reply_command;	/* the command it replied to ("RCPT TO"), or NULL */
};

/* The start of the reason of a recipient that expired in the queue,
 * before the reason of its last attempt. */
#define ENVELOPE_EXPIRED_PREFIX "message delivery time exceeded, last error: "

struct envelope_attr {
	char *key;
	char *value;
};

struct envelope {
	char id[QUEUE_ID_MAX];
	long long arrival_usec;	/* Unix time in microseconds */
	long long size;
	char *sender;		/* "" for the null sender */
	int attempts;
	long long next_attempt;	/* Unix seconds, 0 for "now" */
	long long seq;		/* envelope updates written: of two copies
				 * of one envelope, the higher is newer */
	int have_data_crc;	/* data_crc is known */
	unsigned long data_crc;	/* CRC-32 of the data file's SIZE bytes */
	int data_synced;	/* the data file was synced before the envelope
				 * was first written (large files have no CRC) */
	int checksummed;	/* parsed from a file whose crc line matched */

	/* Optional message attributes from COMMIT (body, smtputf8,
	 * client_addr, helo, protocol, ...), kept in order. */
	struct envelope_attr *attrs;
	size_t nattrs;

	struct envelope_rcpt *rcpts;
	size_t nrcpts;

	/* Whether the message's files are in deferred/ and deferred-data/
	 * rather than queue/ and data/ (spool.h). Kept in memory only, never
	 * written: recovery sets it from the directory it read the envelope
	 * from, and commit_update when it moves the message. */
	int in_deferred;
};

struct envelope *envelope_new(const char *id, const char *sender);
void envelope_free(struct envelope *env);

struct envelope_rcpt *envelope_add_rcpt(struct envelope *env, const char *address);

/* The attribute KEY, or NULL. */
const char *envelope_attr(const struct envelope *env, const char *key);
/* Set (replace or add) attribute KEY. */
void envelope_set_attr(struct envelope *env, const char *key, const char *value);

/* Whether ENV has the quarantine flag (filterd's quarantine verdict).
 * Envelopes written before the flag existed have none. */
int envelope_quarantined(const struct envelope *env);

/* Store DSN and REASON on RCPT with STATUS, and clear the remote MTA
 * of an earlier reason. REASON is cleaned of control characters and cut
 * at ENVELOPE_REASON_MAX bytes. */
void envelope_rcpt_set(struct envelope_rcpt *rcpt, enum rcpt_status status,
    const char *dsn, const char *reason);

/* Store that the reason of RCPT is the reply of the SMTP server
 * REMOTE_MTA ("host[address]") to COMMAND ("MAIL FROM", "RCPT TO",
 * "DATA" or "end of DATA"), for the Remote-MTA field of a DSN. */
void envelope_rcpt_set_remote(struct envelope_rcpt *rcpt, const char *remote_mta,
    const char *command);

/* Fail a deferred RCPT at the end of the queue lifetime. Its reason
 * becomes ENVELOPE_EXPIRED_PREFIX and the last reason, and its remote
 * MTA stays. */
void envelope_rcpt_expire(struct envelope_rcpt *rcpt);

/*
 * Record that an SMTP server accepted RCPT. A server that offers DSN
 * (SERVER_DSN set) got the NOTIFY parameter with RCPT, so it or a later
 * hop reports success, and this host sends no success DSN. Without DSN
 * at the server, this host's success DSN gives the action "relayed"
 * (RFC 3464 section 2.3.3), as in smtp_rcpt_done() of Postfix's smtp(8).
 */
void envelope_rcpt_relayed(struct envelope_rcpt *rcpt, int server_dsn);

/* Number of recipients in STATUS. */
size_t envelope_count(const struct envelope *env, enum rcpt_status status);

/* CRC-32 of LEN bytes at DATA continuing CRC (0 to start). */
unsigned long envelope_crc(unsigned long crc, const void *data, size_t len);

/* Serialize into a new buffer, with its crc line. Returns its length in
 * *LEN. */
char *envelope_format(const struct envelope *env, size_t *len);

/* Parse TEXT (LEN bytes). NULL with a reason in *WHY if invalid. */
struct envelope *envelope_parse(const char *text, size_t len, const char **why);

const char *envelope_status_name(enum rcpt_status status);

/* DSN NOTIFY keywords (RFC 3461). */
enum dsn_notify {
	DSN_NOTIFY_SUCCESS,
	DSN_NOTIFY_FAILURE,
	DSN_NOTIFY_DELAY,
};

/*
 * Return whether RCPT requested a notification of KIND. Without NOTIFY
 * the sender gets failures and delays but no success, a default that
 * RFC 3461 leaves to the MTA.
 */
int envelope_rcpt_wants(const struct envelope_rcpt *rcpt, enum dsn_notify kind);

/* Return 1 if TEXT is a valid NOTIFY value (NEVER, or SUCCESS, FAILURE and
 * DELAY in any order, each at most once, upper case), and 0 otherwise. */
int envelope_notify_valid(const char *text);

/*
 * Copy untrusted TEXT into a new string that is safe for an envelope
 * value, a log line or a DSN field: CR, LF and other control characters
 * (C1 controls and bidirectional formatting characters too) become
 * spaces, valid UTF-8 is kept only when KEEP_UTF8 is set, any other byte
 * above 0x7f becomes "?", and the input is cut at MAX bytes.
 */
char *envelope_clean_text(const char *text, size_t max, int keep_utf8);

#endif
