/*
 * The chain: the checks compiled into filterd, run in the order of
 * filterd_checks, each with its failure policy
 * (filterd_<name>_failure_policy).
 */
#ifndef ESTAFETA_FILTERD_CHAIN_H
#define ESTAFETA_FILTERD_CHAIN_H

#include <stddef.h>

#include "filter.h"

/* Stages a check runs at, as bits of chain_check.stages. */
#define CHAIN_MAIL	0x1
#define CHAIN_MESSAGE	0x2

/* A check compiled into filterd: one line of the table in chain.c. */
struct chain_check {
	const char *name;		/* its word in filterd_checks */
	unsigned stages;		/* CHAIN_MAIL, CHAIN_MESSAGE or both */
	filter_check_fn *fn;
	/* Content scanners read the whole message; they are skipped for
	 * messages larger than filterd_scan_size_limit. */
	int content_scanner;
	/* Called at start-up and on SIGHUP while no check runs, NULL for
	 * none. Returns 0, or -1 with ERR set, which is fatal at start-up and
	 * logged on SIGHUP. */
	int (*init)(char *err, size_t errsize);
	/* Run in place of FN when a content scanner is skipped for the
	 * message size, NULL for nothing: the SpamAssassin check still
	 * removes forged X-Spam-* fields. */
	filter_check_fn *skipped;
};

/*
 * Build the chain from filterd_checks and the failure policies, then run
 * each check's init. Returns 0, or -1 with ERR set: an unknown check
 * name, a name given twice, a check out of order (authres must be last,
 * and only authres may follow dkim_sign), or a failed init.
 */
int chain_init(char *err, size_t errsize);

/* Run each check's init again (SIGHUP) in a thread of its own, once no
 * check runs, and return at once. A reload requested while one runs
 * starts after it. */
void chain_reload(void);

/*
 * Run the checks of STAGE on MSG and fill RESULT (zeroed by the caller).
 * A check that fails gets its failure policy: accept logs the error and
 * goes on, tempfail makes the result 451 4.7.0. Thread-safe.
 */
void chain_run(enum filter_stage stage, const struct filter_message *msg,
    struct filter_result *result);

/* The number of checks in the chain. */
size_t chain_length(void);

#endif
