/*
 * The hop count of a message: its Received: and Delivered-To: fields,
 * each added by one host or delivery it went through. A message with
 * more than hopcount_limit of them is taken to be in a mail loop.
 */
#ifndef ESTAFETA_SMTPD_HOPCOUNT_H
#define ESTAFETA_SMTPD_HOPCOUNT_H

#include <stddef.h>

struct session;

/*
 * Count the hops in the header section of the spool file of the
 * transaction on S, smtpd's own Received: field included. Returns
 * NULL when the message may be queued, or REPLY set to 554 5.4.6 for
 * too many hops (or to 451 4.3.0 when the file cannot be read).
 */
const char *hopcount_check(struct session *s, char *reply, size_t replysize);

#endif
