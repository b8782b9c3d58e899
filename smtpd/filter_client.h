/* smtpd's side of filterd (filter.c): the verdict of one request. */
#ifndef ESTAFETA_SMTPD_FILTER_CLIENT_H
#define ESTAFETA_SMTPD_FILTER_CLIENT_H

#include "header_edit.h"

enum filter_verdict_action {
	VERDICT_ACCEPT,
	VERDICT_QUARANTINE,	/* accept, deliver into the Junk folder */
	VERDICT_DISCARD,	/* reply 250, deliver nothing */
	VERDICT_TEMPFAIL,
	VERDICT_REJECT,
};

struct filter_verdict {
	enum filter_verdict_action action;
	/* filterd was down, busy, too slow or sent an invalid reply, and
	 * smtpd_filter_failure_policy is accept: go on unfiltered. */
	int unfiltered;
	char reply[512];	/* full SMTP reply for TEMPFAIL and REJECT */
	char reason[256];	/* for the log line, "" when filterd gave none */
	struct header_edits edits;
};

#endif
