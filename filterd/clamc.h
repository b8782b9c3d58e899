/*
 * The ClamAV check: a clamd client that sends the spool file with
 * INSTREAM (or passes its descriptor with FILDES) and rejects or discards
 * the message when clamd finds a virus, as virus_action sets.
 */
#ifndef ESTAFETA_FILTERD_CLAMC_H
#define ESTAFETA_FILTERD_CLAMC_H

#include <stddef.h>

#include "filter.h"

/* Run the check at the MESSAGE stage (it does nothing without a spool
 * file). Returns -1 with ERR set when clamd could not be asked or replied
 * with an error (such as "INSTREAM size limit exceeded. ERROR"). */
int clamc_check(const struct filter_message *msg, struct filter_result *result,
    char *err, size_t errsize);

/* Check at start-up and on SIGHUP that clamd_socket or clamd_address is
 * set, and that clamd_use_fildes has a Unix socket. 0, or -1 with ERR. */
int clamc_init(char *err, size_t errsize);

/*
 * Parse clamd's reply to one scan, without its final NUL: "stream: OK"
 * returns 0 with VIRUS "", "stream: NAME FOUND" returns 0 with the
 * signature name in VIRUS, and anything else (an ERROR reply included)
 * returns -1.
 */
int clamc_parse_reply(const char *reply, char *virus, size_t virussize);

#endif
