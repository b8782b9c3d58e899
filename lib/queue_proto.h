/*
 * The queued protocol: messages on queued_socket (see ipc.h for framing).
 *
 * Submission (smtpd, sendmail, deliverd forwarding, bounces):
 *   -> NEW                    (no fields)
 *   <- NEW-OK    id=QUEUEID   with the open data file attached (write-only)
 *   <- NEW-FAIL  reason=TEXT
 *   The client writes the message (header with its own trace fields
 *   first, LF line ends, no dot-stuffing) into the descriptor, closes
 *   it, then:
 *   -> COMMIT id=QUEUEID sender=ADDR rcpt=ADDR... [orcpt=...] size=BYTES
 *             [client_addr=IP] [client_name=NAME] [helo=NAME]
 *             [protocol=ESMTP|SMTP|LOCAL] [body=7BIT|8BITMIME|BINARYMIME]
 *             [smtputf8=yes] [submitter=LOCALUSER] [sasl_user=NAME]
 *   <- COMMIT-OK   id=QUEUEID    only after file and directory fsync
 *   <- COMMIT-FAIL id=QUEUEID reason=TEXT    (the client replies 451)
 *   -> ABORT id=QUEUEID           (data removed; no reply)
 *   A client that disconnects with uncommitted ids has them removed.
 *
 * Admin (estafeta queue, mailq); FLUSH and DELETE need root, the queue
 * user or the invoking user of `make run` (peer credentials decide):
 *   -> LIST                 <- ENTRY id= arrival= size= sender= rcpt=... status= reason= next_attempt=  ... then END
 *   -> SHOW id=QUEUEID      <- SHOW-OK with the envelope fields, plus the data file attached; or ERROR reason=
 *   -> FLUSH [id=QUEUEID]   <- OK count=N
 *   -> DELETE id=QUEUEID    <- OK | ERROR reason=
 */
#ifndef ESTAFETA_QUEUE_PROTO_H
#define ESTAFETA_QUEUE_PROTO_H

#define QUEUE_ID_MAX 32

#endif
