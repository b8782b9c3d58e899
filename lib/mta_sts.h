/*
 * MTA-STS (RFC 8461): the _mta-sts TXT record, the policy file served at
 * https://mta-sts.DOMAIN/.well-known/mta-sts.txt, and the match of an MX
 * host against the policy's mx patterns. Parsing only: the lookup, the
 * HTTPS fetch and the cache are queued's.
 */
#ifndef ESTAFETA_MTA_STS_H
#define ESTAFETA_MTA_STS_H

#include <stddef.h>

/* Maximum length of a policy id (RFC 8461 section 3.1), plus the NUL. */
#define MTA_STS_ID_SIZE		33

/* Size limit on a fetched policy file: the 64 KB that section 3.3 suggests. */
#define MTA_STS_POLICY_MAX	65536

/* Largest max_age in seconds that section 3.2 allows (about one year). */
#define MTA_STS_MAX_AGE_MAX	31557600L

enum mta_sts_mode {
	MTA_STS_MODE_NONE,
	MTA_STS_MODE_TESTING,
	MTA_STS_MODE_ENFORCE,
};

struct mta_sts_policy {
	enum mta_sts_mode mode;
	long max_age;		/* seconds */
	char **mx;		/* lower case, "*.example.org" for a wildcard */
	size_t mx_count;
};

/*
 * Parse one TXT record of _mta-sts.DOMAIN. Returns 1 and the id in ID
 * for a valid "v=STSv1; id=..." record, 0 for a record that does not
 * start with v=STSv1 (not an MTA-STS record), -1 with ERR set for an
 * MTA-STS record with a syntax error.
 */
int mta_sts_txt_parse(const char *txt, size_t length, char id[MTA_STS_ID_SIZE],
    char *err, size_t errsize);

/*
 * Parse the policy file TEXT (LENGTH bytes, lines ending in CRLF or LF).
 * Unknown fields are ignored; for a field given twice the first counts,
 * except mx, which may repeat. Returns 0, or -1 with ERR set (the line
 * and what is wrong) and POLICY empty.
 */
int mta_sts_policy_parse(const char *text, size_t length, struct mta_sts_policy *policy,
    char *err, size_t errsize);

void mta_sts_policy_free(struct mta_sts_policy *policy);

/* Whether the MX host name HOST matches one of POLICY's mx patterns. A
 * "*." pattern covers exactly one more label (section 4.1). */
int mta_sts_mx_match(const struct mta_sts_policy *policy, const char *host);

const char *mta_sts_mode_name(enum mta_sts_mode mode);

#endif
