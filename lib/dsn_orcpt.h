/*
 * The DSN ORCPT parameter (RFC 3461 section 4.2) as queued stores it:
 * "addr-type;address" with the xtext of the address decoded, as smtpd
 * writes it to the queue.
 */
#ifndef ESTAFETA_DSN_ORCPT_H
#define ESTAFETA_DSN_ORCPT_H

#define DSN_ORCPT_STORED_MAX	500	/* octets of the stored form */

/*
 * Return 1 when ORCPT is "addr-type;address" with an atom as addr-type
 * ("rfc822", "utf-8") and 1 to DSN_ORCPT_STORED_MAX octets of printable
 * ASCII in all, or 0 otherwise. An address of type utf-8 stays in the
 * ASCII form of RFC 6533 section 3 ("\x{HEX}" for each non-ASCII
 * character), since smtpd accepts ORCPT only as xtext.
 */
int dsn_orcpt_valid(const char *orcpt);

#endif
