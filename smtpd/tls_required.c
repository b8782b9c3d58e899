/*
 * The TLS-Required header field (RFC 8689): "TLS-Required: No" requests
 * that relays deliver even when a TLS policy (MTA-STS, DANE) would stop
 * them. smtpd keeps the field in the message and looks for it in the
 * header section as the content streams in, so that queued can record
 * it in the envelope for outbound delivery. REQUIRETLS in MAIL FROM
 * overrides it.
 */
#include <string.h>

#include "smtpd.h"
#include "util.h"

#define FIELD_NAME "TLS-Required:"

/* Return whether LINE (without its line end) is "TLS-Required: No" in any
 * letter case, with optional white space around the value. */
static int
line_is_tls_required_no(const char *line, size_t len)
{
	size_t name_len = strlen(FIELD_NAME);
	const char *value, *end = line + len;

	if (len < name_len || ascii_ncasecmp(line, FIELD_NAME, name_len) != 0)
		return 0;
	value = line + name_len;
	while (value < end && (*value == ' ' || *value == '\t'))
		value++;
	while (end > value && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	return end - value == 2 && ascii_ncasecmp(value, "No", 2) == 0;
}

/* Check one complete header line. An empty line ends the header section. */
static void
scan_line(struct transaction *tx)
{
	struct tls_required_scan *scan = &tx->tls_required_scan;
	size_t len = scan->len;

	if (len > 0 && scan->line[len - 1] == '\r')
		len--;
	if (len == 0)
		scan->done = 1;
	else if (!scan->overflow && line_is_tls_required_no(scan->line, len))
		tx->tls_required_no = 1;
	scan->len = 0;
	scan->overflow = 0;
}

/*
 * Feed LEN bytes of message content. Only lines that fit in the scan
 * buffer are checked, which is enough for the short field.
 * NOTE: a value folded onto a continuation line is not recognized.
 */
void
tls_required_scan(struct session *s, const char *data, size_t len)
{
	struct tls_required_scan *scan = &s->tx.tls_required_scan;

	for (size_t i = 0; i < len && !scan->done; i++) {
		if (data[i] == '\n') {
			scan_line(&s->tx);
			continue;
		}
		if (scan->len < sizeof scan->line)
			scan->line[scan->len++] = data[i];
		else
			scan->overflow = 1;
	}
}
