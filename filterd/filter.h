/*
 * filterd's checks and what they share. smtpd queries filterd twice per
 * transaction: at MAIL FROM (the SPF stage, envelope only) and at the end
 * of the data (the message stage, with a descriptor of the spool file).
 * Each check reads a struct filter_message and adds to a struct
 * filter_result: header fields to insert, authentication results for
 * Authentication-Results, and a verdict when it wants one.
 */
#ifndef ESTAFETA_FILTERD_FILTER_H
#define ESTAFETA_FILTERD_FILTER_H

#include <stddef.h>
#include <sys/types.h>

enum filter_stage {
	FILTER_STAGE_MAIL,	/* after MAIL FROM: no message yet */
	FILTER_STAGE_MESSAGE,	/* after the end of the data */
};

/* The envelope and the client, as smtpd received them. */
struct filter_message {
	const char *queue_id;		/* "" at the MAIL stage */
	const char *client_address;	/* IPv4 or IPv6 text, no brackets */
	const char *client_name;	/* verified reverse name, or "unknown" */
	const char *helo;		/* HELO/EHLO argument */
	const char *sender;		/* reverse-path without brackets, "" for <> */
	char *const *recipients;	/* NULL-terminated; empty at the MAIL stage */
	const char *auth_user;		/* SASL login name, "" when not authenticated */
	int mynetworks;			/* 1 when the client is in mynetworks */
	int forward;			/* 1 for deliverd's forward of mail that arrived here */
	int outbound;			/* 1 for authenticated or mynetworks mail: sign, do not verify */

	/* The MESSAGE stage only: the spool file, LF line ends, starting with
	 * smtpd's own Received: field. Read it with pread; never write. */
	int fd;
	off_t size;

	/* The SPF result that the MAIL stage returned, passed back by smtpd
	 * at the MESSAGE stage ("" when SPF was not checked). */
	const char *spf_result;		/* none, neutral, pass, fail, softfail, temperror, permerror */
	const char *spf_domain;		/* the domain checked (MAIL FROM domain, or HELO for <>) */
};

enum filter_action {
	FILTER_ACCEPT,
	FILTER_QUARANTINE,	/* accept, deliver into the recipient's Junk folder */
	FILTER_DISCARD,		/* reply 250, deliver nothing */
	FILTER_TEMPFAIL,	/* 4xx */
	FILTER_REJECT,		/* 5xx */
};

#define FILTER_MAX_FIELDS 32
/* The maximum number of removals in one result: smtpd takes at most 32
 * per reply (MAX_REMOVALS in smtpd/filter.c). A message that needs more is
 * rejected, so that no forged field stays (see filter_result_remove). */
#define FILTER_MAX_REMOVALS 32
/* The largest removal index smtpd takes (smtpd/filter.c). A field past
 * it cannot be removed either, so filter_result_remove rejects. */
#define FILTER_MAX_REMOVAL_INDEX 10000
#define FILTER_REMOVAL_NAME_MAX 64
#define FILTER_REPLY_MAX 512

/* The result of one stage, built up check by check. */
struct filter_result {
	/* The strongest action wins: REJECT > TEMPFAIL > DISCARD > QUARANTINE > ACCEPT.
	 * Set through filter_result_action(). */
	enum filter_action action;
	char reply[FILTER_REPLY_MAX];	/* full SMTP reply for REJECT and TEMPFAIL */
	char reason[256];		/* for the log line: "spf=fail", "virus=Eicar-Signature" */

	/* Header fields to insert at the top of the message, in this order,
	 * each "Name: value" with LF between folded lines and no final LF. */
	char *fields[FILTER_MAX_FIELDS];
	size_t nfields;

	/* Existing header fields to remove: the Nth (1-based) field named
	 * NAME. An array on the heap, grown by filter_result_remove. */
	struct filter_removal {
		char name[FILTER_REMOVAL_NAME_MAX];
		unsigned index;
	} *removals;
	size_t nremovals;

	/* Text to put at the start of the Subject: value ("" for none). */
	char subject_prefix[64];

	/* Results for Authentication-Results (RFC 8601), one method=result
	 * with its properties each, such as "spf=pass smtp.mailfrom=example.org". */
	char *authres[FILTER_MAX_FIELDS];
	size_t nauthres;

	/* Set by the SPF check at the MAIL stage, returned to smtpd. */
	char spf_result[16];
	char spf_domain[256];

	/* Log fields that each check adds ("spam=5.2/5.0", "dkim=pass"). */
	char log[512];
};

/* A check: returns 0 when it ran (its outcome is in RESULT), or -1 with
 * ERR set when it could not run (a server down, a timeout). The chain then
 * applies the check's failure policy. */
typedef int filter_check_fn(const struct filter_message *msg, struct filter_result *result,
    char *err, size_t errsize);

/* Raise RESULT's action to ACTION, never lowering it. REPLY is the 4xx/5xx
 * reply text. */
void filter_result_action(struct filter_result *result, enum filter_action action,
    const char *reply, const char *reason);

/* Append a header field (printf format) to RESULT. Returns -1 when RESULT
 * is full. */
int filter_result_field(struct filter_result *result, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append one Authentication-Results method result (printf format). */
int filter_result_authres(struct filter_result *result, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append "key=value" to RESULT's log fields (printf format). */
void filter_result_log(struct filter_result *result, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Remove the INDEXth (1-based) field called NAME. Past
 * FILTER_MAX_REMOVALS, or for an INDEX above FILTER_MAX_REMOVAL_INDEX,
 * it adds nothing, raises RESULT to a 550 5.7.1 reject and returns -1.
 * A field that cannot be removed may be a forged one, so the message
 * must not be delivered with it.
 */
int filter_result_remove(struct filter_result *result, const char *name, unsigned index);

void filter_result_free(struct filter_result *result);

#endif
