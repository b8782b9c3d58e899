/*
 * BDAT (RFC 3030) in an LMTP session: the message arrives as counted
 * chunks, without dot-stuffing, and the reply to the LAST chunk is one
 * line per recipient, as after DATA (RFC 2033 section 4.2). queued
 * sends a small message in one write with MAIL, RCPT and "BDAT n LAST",
 * which saves the round trip of DATA's 354 reply.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "session.h"
#include "smtp_data.h"
#include "util.h"

/* Read and drop SIZE octets of a chunk that cannot be taken. */
static void
chunk_skip(struct session *s, unsigned long long size)
{
	while (size > 0) {
		size_t take;

		if (s->in_start == s->in_end)
			session_fill(s);
		take = s->in_end - s->in_start;
		if (take > size)
			take = (size_t)size;
		s->in_start += take;
		size -= take;
	}
}

static void
chunk_write(struct session *s, const char *buf, size_t len)
{
	struct chunked_message *m = &s->chunks;
	long long limit = session_size_limit();

	m->size += (off_t)len;
	if (limit > 0 && m->size > limit)
		return;
	if (m->write_error == 0 && write_all(m->fd, buf, len) < 0)
		m->write_error = errno;
}

/* Read SIZE octets into the message, turning CRLF into LF. */
static void
chunk_read(struct session *s, unsigned long long size)
{
	struct chunked_message *m = &s->chunks;
	char *out = xmalloc(sizeof s->in + 1);

	while (size > 0) {
		size_t take, outlen = 0, used;

		if (s->in_start == s->in_end)
			session_fill(s);
		take = s->in_end - s->in_start;
		if (take > size)
			take = (size_t)size;
		used = smtp_data_decode(&m->decoder, s->in + s->in_start, take, out, &outlen);
		chunk_write(s, out, outlen);
		s->in_start += used;
		size -= used;
	}
	free(out);
}

static void
chunk_begin(struct session *s)
{
	struct chunked_message *m = &s->chunks;

	m->active = 1;
	m->size = 0;
	m->fd = message_temp_file();
	m->write_error = m->fd < 0 ? errno : 0;
	smtp_data_init(&m->decoder, SMTP_DATA_CHUNK, (size_t)-1);
}

/* Deliver the message after LAST, or fail every recipient; then end the
 * transaction. */
static void
chunk_finish(struct session *s)
{
	struct chunked_message *m = &s->chunks;
	struct delivery_result failure;
	long long limit = session_size_limit();
	char cr[1];

	chunk_write(s, cr, smtp_data_finish(&m->decoder, cr));

	if (limit > 0 && m->size > limit) {
		result_set(&failure, EX_UNAVAILABLE, "5.3.4",
		    "Message size exceeds the limit of %lld bytes", limit);
	} else if (m->write_error != 0) {
		log_error("%s: cannot store the message in %s: %s", s->id,
		    config_string("deliverd_temp_directory")[0] != '\0' ?
		    config_string("deliverd_temp_directory") : "memory", strerror(m->write_error));
		result_set(&failure, EX_TEMPFAIL, "4.3.0", "Cannot store the message, try again later");
	} else {
		session_deliver(s, m->fd, m->size);
		session_reset(s);
		return;
	}

	for (size_t i = 0; i < s->nrcpts; i++)
		session_reply(s, session_reply_code(&failure), "%s <%s> %s", failure.dsn,
		    s->rcpts[i].address, failure.text);
	session_reset(s);
}

void
session_bdat(struct session *s, const char *arg)
{
	unsigned long long size;
	const char *reject = NULL;
	int last;

	/* Without a valid size the chunk cannot be skipped: its octets
	 * are read as command lines, as smtpd does. */
	if (smtp_bdat_parse(arg, &size, &last) < 0) {
		session_reply(s, 501, "5.5.4 Syntax: BDAT size [LAST]");
		s->errors++;
		return;
	}

	if (!s->in_transaction)
		reject = "5.5.1 Send MAIL first";
	else if (s->nrcpts == 0)
		reject = "5.5.1 No valid recipients";
	if (reject != NULL) {
		chunk_skip(s, size);
		session_reply(s, 503, "%s", reject);
		return;
	}

	if (!s->chunks.active)
		chunk_begin(s);
	chunk_read(s, size);
	if (!last) {
		session_reply(s, 250, "2.0.0 %llu octets received", size);
		return;
	}
	chunk_finish(s);
}

void
session_chunks_free(struct session *s)
{
	if (s->chunks.active && s->chunks.fd >= 0)
		close(s->chunks.fd);
	s->chunks.active = 0;
	s->chunks.fd = -1;
}
