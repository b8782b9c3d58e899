/*
 * The queued protocol: messages on queued_socket (see ipc.h for framing).
 *
 * Submission (smtpd, sendmail, deliverd forwarding, bounces):
 *   -> NEW                    (no fields)
 *   <- NEW-OK    id=QUEUEID   with the open data file attached (write-only)
 *   <- NEW-FAIL  reason=TEXT
 *   The client writes the message (header with its own trace fields
 *   first, LF line ends, no dot-stuffing) into the descriptor, closes
 *   it, then (for any uid but root and smtpd's, queued commits a copy
 *   made at COMMIT, so later writes through the descriptor reach
 *   nothing):
 *   -> COMMIT id=QUEUEID sender=ADDR rcpt=ADDR... [orcpt=...] [notify=...]
 *             size=BYTES
 *             [client_addr=IP] [client_name=NAME] [helo=NAME]
 *             [protocol=ESMTP|SMTP|LOCAL] [body=7BIT|8BITMIME|BINARYMIME]
 *             [smtputf8=yes] [submitter=LOCALUSER] [sasl_user=NAME]
 *             [ret=FULL|HDRS] [envid=TEXT] [requiretls=1] [tls_required=no]
 *             [quarantine=1] [forward=1]
 *   <- COMMIT-OK   id=QUEUEID    only after file and directory fsync
 *   <- COMMIT-FAIL id=QUEUEID reason=TEXT    (the client replies 451)
 *   -> ABORT id=QUEUEID           (data removed; no reply)
 *   -> READER id=QUEUEID          (an uncommitted id of this client)
 *   <- READER-OK   id=QUEUEID    with a new read-only descriptor of the
 *                                data file attached, for smtpd to pass
 *                                to filterd
 *   <- READER-FAIL id=QUEUEID reason=TEXT
 *   A client that disconnects with uncommitted ids has them removed.
 *
 *   sender is empty for the null reverse-path <>. Each orcpt and
 *   notify, when present, follows the rcpt it belongs to: the DSN ORCPT
 *   parameter xtext-decoded ("rfc822;addr") and NOTIFY ("NEVER", or
 *   SUCCESS, FAILURE and DELAY joined by commas, upper case). ret and
 *   envid (decoded, printable ASCII, at most 100 characters) are the
 *   DSN parameters of MAIL, requiretls=1 its REQUIRETLS parameter, and
 *   tls_required=no a "TLS-Required: No" header field (RFC 8689). An
 *   invalid value of any of them fails the commit. quarantine=1 is
 *   filterd's quarantine verdict: local recipients get the message in
 *   their Junk folder, remote ones get it as usual. Only root and
 *   smtpd's uid may set it. forward=1 marks mail that deliverd forwards
 *   for a user's ~/.forward over a connection it made as root: filterd
 *   then keeps the Authentication-Results fields that it added on
 *   arrival. From anyone else it is ignored. size must equal the
 *   bytes written, or the commit fails. queued records the client's uid
 *   from the socket credentials.
 *
 * Admin (estafeta queue, mailq). LIST is open to every local user, like
 * mailq; SHOW, FLUSH and DELETE need the peer uid to be root, the
 * queue_user, or queued's own uid (the invoking user of `make run`):
 *   -> LIST                 <- ENTRY ... (one per message), then END
 *   -> SHOW id=QUEUEID      <- SHOW-OK with the envelope fields, plus the data file attached; or ERROR reason=
 *   -> FLUSH [id=QUEUEID]   <- OK count=N
 *   -> DELETE id=QUEUEID    <- OK | ERROR reason=
 *   A request that is not allowed gets ERROR reason=permission denied.
 *
 * ENTRY (and SHOW-OK) fields, in this order:
 *   id=QUEUEID arrival=UNIX_SECONDS size=BYTES sender=ADDR
 *   queue=active|deferred     active: being delivered or waiting for a
 *                             delivery slot; deferred: waiting for next_attempt
 *   next_attempt=UNIX_SECONDS (0 while active)
 *   attempts=N
 *   then for each recipient, in envelope order:
 *   rcpt=ADDR status=pending|deferred|sent|bounced reason=TEXT
 *   The n-th status and reason belong to the n-th rcpt; reason is empty
 *   for pending recipients and contains the last reply or error otherwise.
 */
#ifndef ESTAFETA_QUEUE_PROTO_H
#define ESTAFETA_QUEUE_PROTO_H

#define QUEUE_ID_MAX 32

#endif
