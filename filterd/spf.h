/* The SPF check (RFC 7208) with libspf2. */
#ifndef ESTAFETA_FILTERD_SPF_H
#define ESTAFETA_FILTERD_SPF_H

#include "filter.h"

/* Read the spf_* settings and create the libspf2 server and the DNS
 * resolver; runs at start-up and on SIGHUP. Returns 0, or -1 with ERR. */
int spf_init(char *err, size_t errsize);

/* Run spf_check_mail or spf_check_message: the MAIL stage is the one
 * without a queue ID (filter.h). This is the chain's "spf" check. */
filter_check_fn spf_check;

/*
 * Evaluate SPF at FILTER_STAGE_MAIL for the HELO identity and the MAIL
 * FROM identity (the HELO identity again for the null sender), and set
 * result->spf_result and spf_domain. Outbound mail is not checked.
 */
filter_check_fn spf_check_mail;

/* Add Received-SPF: and the spf= Authentication-Results part at
 * FILTER_STAGE_MESSAGE from msg->spf_result and spf_domain. */
filter_check_fn spf_check_message;

#endif
