/*
 * The SpamAssassin check: a spamd client (SPAMC/1.5, the protocol of
 * spamc(1)) that sends the message with the HEADERS command and turns
 * spamd's score into X-Spam-* fields, a Subject tag, the Junk folder or a
 * rejection, as spam_action and spam_reject_score set.
 */
#ifndef ESTAFETA_FILTERD_SPAMC_H
#define ESTAFETA_FILTERD_SPAMC_H

#include <stddef.h>

#include "filter.h"

/* spamd's verdict on one message, its texts as spamd sent them. */
struct spamd_verdict {
	int spam;			/* "Spam: True" */
	char score[16];			/* "1000.0" */
	char threshold[16];		/* spamd's required score, "5.0" */
	/* The value of spamd's X-Spam-Status field with LF between folded
	 * lines, or "" when spamd did not add one. */
	char status[2048];
};

/*
 * Run the check at the MESSAGE stage (it does nothing without a spool
 * file). Incoming X-Spam-Status, X-Spam-Flag and X-Spam-Level fields are
 * always removed, scanned or not. Returns -1 with ERR set when spamd
 * could not be asked or replied with an error or something malformed.
 */
int spamc_check(const struct filter_message *msg, struct filter_result *result,
    char *err, size_t errsize);

/* Remove the incoming X-Spam-* fields of MSG without asking spamd: the
 * chain runs this instead of spamc_check when the message is larger
 * than filterd_scan_size_limit. */
int spamc_skipped(const struct filter_message *msg, struct filter_result *result,
    char *err, size_t errsize);

/* Check at start-up and on SIGHUP that spamd_socket or spamd_address is
 * set. 0, or -1 with ERR. */
int spamc_init(char *err, size_t errsize);

/* Send MSG to spamd and read its verdict. Returns 0, or -1 with ERR set. */
int spamc_query(const struct filter_message *msg, struct spamd_verdict *verdict,
    char *err, size_t errsize);

/* Parse the value of spamd's "Spam:" reply header ("True ; 15.0 / 5.0")
 * into VERDICT. Returns 0, or -1 when it is malformed. */
int spamc_parse_spam_header(const char *value, struct spamd_verdict *verdict);

#endif
