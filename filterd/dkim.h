/*
 * DKIM (RFC 6376) in filterd: verification of inbound mail, signing of
 * outbound mail, the signing keys, and the spool reader both use.
 * libopendkim does the cryptography; key records come through dns.h.
 */
#ifndef ESTAFETA_FILTERD_DKIM_H
#define ESTAFETA_FILTERD_DKIM_H

#include <stddef.h>
#include <sys/types.h>

#include <opendkim/dkim.h>

#include "filter.h"
#include "header.h"

/* The result of one signature, as RFC 8601 section 2.7.1 names them. */
#define DKIM_MAX_RESULTS 8

struct dkim_signature_result {
	char result[16];	/* pass, fail, neutral, temperror, permerror, policy */
	char domain[256];	/* d= */
	char selector[64];	/* s= */
	char b_prefix[64];	/* the start of b= that identifies the signature */
};

/* The DKIM results of the message the calling thread is checking; the
 * DMARC check reads them after dkim_verify_check ran. */
struct dkim_results {
	char queue_id[64];	/* the message these results belong to */
	size_t count;
	struct dkim_signature_result signatures[DKIM_MAX_RESULTS];
};

/* dkim_keys.c: the library handle, the signing keys and key records. */

/* The chain's init functions, run at start-up and on SIGHUP while no
 * check runs. Both create the libopendkim handle once, and dkim_sign_init
 * also reads dkim_signing_table and its keys again. On error they return
 * -1 with ERR set, and the keys read before stay in use. */
int dkim_verify_init(char *err, size_t errsize);
int dkim_sign_init(char *err, size_t errsize);

void dkim_keys_stop(void);

/* The shared libopendkim handle, NULL before the first init. */
DKIM_LIB *dkim_library(void);

/* A signing key looked up by domain: copies of the table entry. */
struct dkim_signing_key {
	char domain[256];
	char selector[64];
	char *pem;		/* the private key file, PEM text; free it */
	int ed25519;		/* 1 for ed25519-sha256, 0 for rsa-sha256 */
};

/* Find the key for DOMAIN (case-insensitive). Returns 0 with KEY filled,
 * or -1 when the table has none. */
int dkim_signing_key_find(const char *domain, struct dkim_signing_key *key);

/* dkim_verify.c: the key lookup libopendkim calls for each signature
 * (a DKIM_CBSTAT, with the key record text in BUF). */
DKIM_CBSTAT dkim_key_record_lookup(DKIM *dkim, DKIM_SIGINFO *sig, unsigned char *buf,
    size_t buflen);

/* Outcome of a TXT lookup. */
enum txt_status {
	TXT_FOUND,
	TXT_SEVERAL,	/* more than one record matched; BUF has the first */
	TXT_NONE,	/* NXDOMAIN or no TXT record */
	TXT_TEMPFAIL,	/* timeout, SERVFAIL, no resolver */
};

/* Look up the TXT records of NAME and copy the first one that starts
 * with PREFIX (case-insensitive; "" matches every record) into BUF. */
enum txt_status txt_lookup(const char *name, const char *prefix, char *buf, size_t size,
    char *err, size_t errsize);

/* dkim_message.c: the spool file as header fields and body. */

struct spool_header {
	char *text;		/* the header section, LF line ends, NUL-terminated */
	size_t len;		/* bytes of header fields, blank line excluded */
	off_t body_offset;	/* where the body starts in the file */
};

/* Read the header section of the spool file FD (SIZE bytes). Returns 0,
 * or -1 with ERR set. */
int spool_header_read(int fd, off_t size, struct spool_header *header, char *err,
    size_t errsize);
void spool_header_free(struct spool_header *header);

/* Split HEADER into OUT's fields (free with header_list_free), reading
 * on past lines that are not fields up to the empty line, as smtpd's
 * header editor does. Fields point into HEADER's text. Returns 0. */
int spool_header_fields(const struct spool_header *header, struct header_list *out);

/* Pass the body from OFFSET to SIZE to FEED in CRLF form. Returns the
 * first non-zero value FEED returns, -1 on a read error, else 0. */
int spool_body_feed(int fd, off_t offset, off_t size,
    int (*feed)(void *context, const unsigned char *data, size_t len), void *context);

/* A copy of the header field at START (LEN bytes, final line end
 * included or not) with CRLF line ends and no final line end. */
char *dkim_field_crlf(const char *start, size_t len);

/* dkim_verify.c and dkim_sign.c: the checks. */
filter_check_fn dkim_verify_check;
filter_check_fn dkim_sign_check;

/* The calling thread's results for the current message. */
const struct dkim_results *dkim_thread_results(void);

#endif
