/* The Received: trace field smtpd puts on top of each message (RFC 5321 4.4). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "smtpd.h"
#include "util.h"

/* RFC 5322 date-time in local time, e.g. "Fri, 04 Dec 2026 10:15:02 +0100". */
static void
format_date(char *out, size_t outsize)
{
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(out, outsize, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/*
 * The with-protocol name: RFC 3848 (SMTP, ESMTP, ESMTPS on TLS, and
 * ESMTPA or ESMTPSA after AUTH) and RFC 6531 (the UTF8SMTP forms for a
 * transaction with SMTPUTF8).
 */
static const char *
protocol_name(const struct session *s)
{
	int authenticated = session_auth_user(s) != NULL;

	if (!s->esmtp)
		return "SMTP";
	if (s->tx.smtputf8) {
		if (authenticated)
			return s->tls_active ? "UTF8SMTPSA" : "UTF8SMTPA";
		return s->tls_active ? "UTF8SMTPS" : "UTF8SMTP";
	}
	if (authenticated)
		return s->tls_active ? "ESMTPSA" : "ESMTPA";
	return s->tls_active ? "ESMTPS" : "ESMTP";
}

/*
 * Return the Received: field (LF line ends, folded) for the current
 * transaction. "for <rcpt>" appears only with a single recipient, so
 * the field never lists the other recipients of a message. The client
 * name is "unknown" because smtpd makes no DNS lookups.
 */
char *
received_header(const struct session *s)
{
	char date[64], recipient[ADDR_MAX * 4 + 16] = "", tls[sizeof s->tls_description + 16] = "";
	const char *ipv6_tag = strchr(s->ip, ':') != NULL ? "IPv6:" : "";

	format_date(date, sizeof date);
	if (s->tx.nrecipients == 1)
		snprintf(recipient, sizeof recipient, "\n\tfor <%s>", s->tx.recipients[0]);
	if (s->tls_active)
		snprintf(tls, sizeof tls, "\t(using %s)\n", s->tls_description);

	return xasprintf("Received: from %s (%s [%s%s])\n"
	    "%s"
	    "\tby %s (Estafeta) with %s id %s%s;\n"
	    "\t%s\n",
	    s->helo, s->name, ipv6_tag, s->ip, tls, s->server->settings.hostname,
	    protocol_name(s), s->tx.queue_id, recipient, date);
}
