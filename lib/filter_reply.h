/*
 * Reading filterd's RESULT reply (lib/filter_proto.h): the header edits
 * it carries and the form of its SMTP reply. smtpd and queued (for local
 * submissions) both apply RESULTs, so they share these checks.
 */
#ifndef ESTAFETA_FILTER_REPLY_H
#define ESTAFETA_FILTER_REPLY_H

#include "header_edit.h"
#include "ipc.h"

/* Limits on what one RESULT may ask for. */
#define FILTER_REPLY_MAX_FIELDS		64
#define FILTER_REPLY_MAX_FIELD_LEN	(64 * 1024)
#define FILTER_REPLY_MAX_REMOVALS	32
#define FILTER_REPLY_MAX_INDEX		10000

/* Fill EDITS (empty on entry) with the fields, removals and Subject
 * prefix of the RESULT MSG. Returns NULL, or what is wrong with them.
 * The caller frees EDITS with header_edits_clear either way. */
const char *filter_reply_edits(const struct ipc_msg *msg, struct header_edits *edits);

/* Return 1 when REPLY is a full SMTP reply of class 5 (PERMANENT) or 4. */
int filter_reply_valid(const char *reply, int permanent);

#endif
