/*
 * Unit tests for queued's pure parts: the envelope file format, the
 * delivery status notification text and the retry backoff. The queued
 * sources are compiled in here because unit-tests links only lib/.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../queued/envelope.c"
#include "../../queued/bounce_report.c"
#include "../../queued/scheduler.h"

static struct envelope *
sample_envelope(void)
{
	struct envelope *env = envelope_new("4F2A1B3C9D0E1F20", "alice@example.test");
	struct envelope_rcpt *rcpt;

	env->arrival_usec = 1733350000123456LL;
	env->size = 1234;
	env->attempts = 2;
	env->next_attempt = 1733350600;
	envelope_set_attr(env, "protocol", "ESMTP");
	envelope_set_attr(env, "client_addr", "127.0.0.1");

	rcpt = envelope_add_rcpt(env, "bob@example.test");
	envelope_rcpt_set(rcpt, RCPT_SENT, "2.0.0", "250 2.0.0 ok");
	rcpt = envelope_add_rcpt(env, "carol@example.test");
	rcpt->orcpt = xstrdup("rfc822;carol@example.test");
	envelope_rcpt_set(rcpt, RCPT_FAILED, "5.1.1", "550 5.1.1 <carol@example.test>: user unknown");
	envelope_add_rcpt(env, "dave@remote.example");
	return env;
}

START_TEST(envelope_round_trip)
{
	struct envelope *env = sample_envelope(), *parsed;
	const char *why;
	size_t len;
	char *text = envelope_format(env, &len);

	parsed = envelope_parse(text, len, &why);
	ck_assert_ptr_nonnull(parsed);
	ck_assert_str_eq(parsed->id, "4F2A1B3C9D0E1F20");
	ck_assert_int_eq(parsed->arrival_usec, 1733350000123456LL);
	ck_assert_int_eq(parsed->size, 1234);
	ck_assert_str_eq(parsed->sender, "alice@example.test");
	ck_assert_int_eq(parsed->attempts, 2);
	ck_assert_int_eq(parsed->next_attempt, 1733350600);
	ck_assert_str_eq(envelope_attr(parsed, "protocol"), "ESMTP");
	ck_assert_str_eq(envelope_attr(parsed, "client_addr"), "127.0.0.1");
	ck_assert_uint_eq(parsed->nrcpts, 3);
	ck_assert_int_eq(parsed->rcpts[0].status, RCPT_SENT);
	ck_assert_str_eq(parsed->rcpts[1].orcpt, "rfc822;carol@example.test");
	ck_assert_int_eq(parsed->rcpts[1].status, RCPT_FAILED);
	ck_assert_str_eq(parsed->rcpts[1].dsn, "5.1.1");
	ck_assert_int_eq(parsed->rcpts[2].status, RCPT_PENDING);
	ck_assert_ptr_null(parsed->rcpts[2].reason);

	free(text);
	envelope_free(env);
	envelope_free(parsed);
}
END_TEST

START_TEST(envelope_null_sender_kept)
{
	struct envelope *env = envelope_new("4F2A1B3C9D0E1F21", ""), *parsed;
	const char *why;
	size_t len;
	char *text;

	envelope_add_rcpt(env, "alice@example.test");
	text = envelope_format(env, &len);
	parsed = envelope_parse(text, len, &why);
	ck_assert_ptr_nonnull(parsed);
	ck_assert_str_eq(parsed->sender, "");
	free(text);
	envelope_free(env);
	envelope_free(parsed);
}
END_TEST

static const char *
parse_error(const char *text)
{
	const char *why = NULL;
	struct envelope *env = envelope_parse(text, strlen(text), &why);

	ck_assert_ptr_null(env);
	ck_assert_ptr_nonnull(why);
	return why;
}

START_TEST(envelope_rejects_bad_files)
{
	ck_assert_str_eq(parse_error("version=1\nid=A\nsender=\nrcpt=b@c\n"), "truncated (no end line)");
	ck_assert_str_eq(parse_error("version=2\nid=A\nsender=\nrcpt=b@c\nend=1\n"),
	    "unsupported envelope version");
	ck_assert_str_eq(parse_error("version=1\nid=A\nsender=\nend=1\n"),
	    "id, sender or recipients missing");
	ck_assert_str_eq(parse_error("version=1\nid=A\nrcpt=b@c\nend=1\n"),
	    "id, sender or recipients missing");
	ck_assert_str_eq(parse_error("version=1\nid=A\nsender=\nrcpt=b@c\nstatus=gone\nend=1\n"),
	    "invalid recipient field");
	ck_assert_str_eq(parse_error("version=1\nid=A\nsender=\nrcpt=b@c\nend=1\nx=1\n"),
	    "data after the end line");
	ck_assert_str_eq(parse_error("version=1\nid=A\nsender=\nrcpt=b@c\nend=1"),
	    "last line not terminated");
	ck_assert_str_eq(parse_error("version=1\nid=A\narrival=12.5\nsender=\nrcpt=b@c\nend=1\n"),
	    "invalid arrival");
	ck_assert_str_eq(parse_error("version=1\nno equals sign\n"), "line without key=value");
}
END_TEST

START_TEST(envelope_reason_cleaned)
{
	struct envelope *env = envelope_new("4F2A1B3C9D0E1F22", "a@b");
	struct envelope_rcpt *rcpt = envelope_add_rcpt(env, "c@d");
	char long_reason[2000];

	envelope_rcpt_set(rcpt, RCPT_DEFERRED, "4.0.0", "451 line one\r\nline two\tend");
	ck_assert_str_eq(rcpt->reason, "451 line one  line two end");

	/* Setting a recipient's own values again must not read freed memory. */
	envelope_rcpt_set(rcpt, RCPT_FAILED, rcpt->dsn, rcpt->reason);
	ck_assert_str_eq(rcpt->dsn, "4.0.0");
	ck_assert_str_eq(rcpt->reason, "451 line one  line two end");

	memset(long_reason, 'x', sizeof long_reason - 1);
	long_reason[sizeof long_reason - 1] = '\0';
	envelope_rcpt_set(rcpt, RCPT_DEFERRED, "4.0.0", long_reason);
	ck_assert_uint_eq(strlen(rcpt->reason), ENVELOPE_REASON_MAX);
	envelope_free(env);
}
END_TEST

START_TEST(backoff_doubles_to_maximum)
{
	ck_assert_int_eq(scheduler_backoff(1, 300, 4000), 300);
	ck_assert_int_eq(scheduler_backoff(2, 300, 4000), 600);
	ck_assert_int_eq(scheduler_backoff(3, 300, 4000), 1200);
	ck_assert_int_eq(scheduler_backoff(4, 300, 4000), 2400);
	ck_assert_int_eq(scheduler_backoff(5, 300, 4000), 4000);
	ck_assert_int_eq(scheduler_backoff(1000000, 300, 4000), 4000);
	ck_assert_int_eq(scheduler_backoff(0, 300, 4000), 300);
}
END_TEST

START_TEST(diagnostic_code_types)
{
	char *code = bounce_diagnostic_code("550 5.1.1 <x@y>: user unknown");

	ck_assert_str_eq(code, "smtp; 550 5.1.1 <x@y>: user unknown");
	free(code);

	code = bounce_diagnostic_code("message delivery time exceeded");
	ck_assert_str_eq(code, "X-Estafeta; message delivery time exceeded");
	free(code);
}
END_TEST

START_TEST(diagnostic_code_no_injection)
{
	char long_reply[1000];
	char *code = bounce_diagnostic_code("550 bad\r\nX-Injected: yes\n\xc3\xa9");

	ck_assert_ptr_null(strchr(code, '\r'));
	ck_assert_ptr_null(strchr(code, '\n'));
	ck_assert_str_eq(code, "smtp; 550 bad  X-Injected: yes ??");
	free(code);

	memset(long_reply, 'a', sizeof long_reply - 1);
	long_reply[sizeof long_reply - 1] = '\0';
	memcpy(long_reply, "550 ", 4);
	code = bounce_diagnostic_code(long_reply);
	ck_assert_uint_eq(strlen(code), strlen("smtp; ") + BOUNCE_DIAGNOSTIC_MAX);
	free(code);
}
END_TEST

START_TEST(bounce_report_structure)
{
	struct envelope *env = sample_envelope();
	const char *headers = "From: <alice@example.test>\nSubject: hello\n";
	size_t len;
	int eightbit = -1;
	struct bounce_report report = {
		.env = env, .kind = BOUNCE_FAILED, .headers = headers,
		.headers_len = strlen(headers), .myhostname = "mail.example.test",
		.bounce_id = "4F2A1B3C9D0E1F99", .now = 1733350000,
	};
	char *text = bounce_build(&report, &len, &eightbit);

	ck_assert_uint_eq(strlen(text), len);
	ck_assert_int_eq(eightbit, 0);
	ck_assert_ptr_nonnull(strstr(text, "From: MAILER-DAEMON@mail.example.test"));
	ck_assert_ptr_nonnull(strstr(text, "To: <alice@example.test>\n"));
	ck_assert_ptr_nonnull(strstr(text, "Content-Type: multipart/report; report-type=delivery-status;"));
	ck_assert_ptr_nonnull(strstr(text, "\nReporting-MTA: dns; mail.example.test\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nArrival-Date: "));
	ck_assert_ptr_nonnull(strstr(text, "\nFinal-Recipient: rfc822; carol@example.test\n"
	    "Original-Recipient: rfc822; carol@example.test\n"
	    "Action: failed\nStatus: 5.1.1\n"
	    "Diagnostic-Code: smtp; 550 5.1.1 <carol@example.test>: user unknown\n"));
	ck_assert_ptr_nonnull(strstr(text, "Content-Type: text/rfc822-headers\n\n"
	    "From: <alice@example.test>\nSubject: hello\n"));
	ck_assert_ptr_nonnull(strstr(text, "--4F2A1B3C9D0E1F99.1733350000/mail.example.test--\n"));
	/* Only failed recipients are reported. */
	ck_assert_ptr_null(strstr(text, "Final-Recipient: rfc822; bob@example.test"));
	ck_assert_ptr_null(strstr(text, "Final-Recipient: rfc822; dave@remote.example"));
	ck_assert_ptr_null(strchr(text, '\r'));
	ck_assert_ptr_null(strstr(text, "Will-Retry-Until"));

	free(text);
	envelope_free(env);
}
END_TEST

START_TEST(delay_report_lists_deferred)
{
	struct envelope *env = sample_envelope();
	struct bounce_report report = {
		.env = env, .kind = BOUNCE_DELAYED, .retry_until = 1733782000, .headers = "",
		.myhostname = "mail.example.test", .bounce_id = "4F2A1B3C9D0E1F97", .now = 1733360000,
	};
	size_t len;
	int eightbit;
	char *text;

	envelope_rcpt_set(&env->rcpts[2], RCPT_DEFERRED, "4.3.5", "outbound delivery is not enabled");
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "Subject: Delayed Mail (still being retried)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nFinal-Recipient: rfc822; dave@remote.example\n"
	    "Action: delayed\nStatus: 4.3.5\n"
	    "Diagnostic-Code: X-Estafeta; outbound delivery is not enabled\n"
	    "Will-Retry-Until: "));
	/* Failed and delivered recipients are not part of a delay report. */
	ck_assert_ptr_null(strstr(text, "carol@example.test"));
	ck_assert_ptr_null(strstr(text, "Final-Recipient: rfc822; bob@example.test"));
	free(text);
	envelope_free(env);
}
END_TEST

START_TEST(bounce_report_invalid_status)
{
	struct envelope *env = envelope_new("4F2A1B3C9D0E1F23", "alice@example.test");
	struct envelope_rcpt *rcpt = envelope_add_rcpt(env, "b\xc3\xa9@example.test");
	size_t len;
	int eightbit;
	char *text;

	struct bounce_report report = {
		.env = env, .kind = BOUNCE_FAILED, .headers = "",
		.myhostname = "mail.example.test", .bounce_id = "4F2A1B3C9D0E1F98",
	};

	envelope_rcpt_set(rcpt, RCPT_FAILED, "2.0.0", "odd");
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "Status: 5.0.0\n"));
	ck_assert_ptr_nonnull(strstr(text, "Final-Recipient: utf-8; b\xc3\xa9@example.test\n"));
	ck_assert_int_eq(eightbit, 1);
	free(text);
	envelope_free(env);
}
END_TEST

START_TEST(envelope_dsn_fields_round_trip)
{
	struct envelope *env = sample_envelope(), *parsed;
	const char *why;
	size_t len;
	char *text;

	envelope_set_attr(env, "ret", "HDRS");
	envelope_set_attr(env, "envid", "QQ+1");
	env->rcpts[0].notify = xstrdup("SUCCESS,FAILURE");
	env->rcpts[0].success_reported = 1;
	env->rcpts[1].notify = xstrdup("NEVER");
	text = envelope_format(env, &len);
	ck_assert_ptr_nonnull(strstr(text, "rcpt=bob@example.test\nnotify=SUCCESS,FAILURE\n"
	    "success_reported=1\nstatus=sent\n"));

	parsed = envelope_parse(text, len, &why);
	ck_assert_ptr_nonnull(parsed);
	ck_assert_str_eq(envelope_attr(parsed, "ret"), "HDRS");
	ck_assert_str_eq(envelope_attr(parsed, "envid"), "QQ+1");
	ck_assert_str_eq(parsed->rcpts[0].notify, "SUCCESS,FAILURE");
	ck_assert_int_eq(parsed->rcpts[0].success_reported, 1);
	ck_assert_str_eq(parsed->rcpts[1].notify, "NEVER");
	ck_assert_int_eq(parsed->rcpts[1].success_reported, 0);
	ck_assert_ptr_null(parsed->rcpts[2].notify);

	free(text);
	envelope_free(env);
	envelope_free(parsed);
}
END_TEST

/* A file written before the DSN fields existed reads with the defaults:
 * failures and delays reported, success not. */
START_TEST(envelope_old_file_dsn_defaults)
{
	static const char old[] = "version=1\nid=4F2A1B3C9D0E1F22\narrival=1733350000.000001\n"
	    "size=10\nsender=alice@example.test\nattempts=0\nnext_attempt=0\n"
	    "rcpt=bob@example.test\norcpt=rfc822;bob@example.test\nstatus=pending\nend=1\n";
	const char *why;
	struct envelope *env = envelope_parse(old, sizeof old - 1, &why);

	ck_assert_ptr_nonnull(env);
	ck_assert_ptr_null(env->rcpts[0].notify);
	ck_assert_int_eq(envelope_rcpt_wants(&env->rcpts[0], DSN_NOTIFY_FAILURE), 1);
	ck_assert_int_eq(envelope_rcpt_wants(&env->rcpts[0], DSN_NOTIFY_DELAY), 1);
	ck_assert_int_eq(envelope_rcpt_wants(&env->rcpts[0], DSN_NOTIFY_SUCCESS), 0);
	envelope_free(env);
}
END_TEST

START_TEST(envelope_notify_values)
{
	static const char *const good[] = { "NEVER", "SUCCESS", "FAILURE,DELAY", "DELAY,SUCCESS,FAILURE" };
	static const char *const bad[] = { "", "never", "NEVER,SUCCESS", "SUCCESS,SUCCESS", "SUCCESS,",
	    ",DELAY", "FAILURE,,DELAY", "SOMETIMES" };
	struct envelope_rcpt rcpt = { .notify = (char *)"DELAY,SUCCESS" };

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_msg(envelope_notify_valid(good[i]), "%s", good[i]);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(!envelope_notify_valid(bad[i]), "%s", bad[i]);
	ck_assert_int_eq(envelope_rcpt_wants(&rcpt, DSN_NOTIFY_SUCCESS), 1);
	ck_assert_int_eq(envelope_rcpt_wants(&rcpt, DSN_NOTIFY_DELAY), 1);
	ck_assert_int_eq(envelope_rcpt_wants(&rcpt, DSN_NOTIFY_FAILURE), 0);
}
END_TEST

START_TEST(envelope_bad_notify_rejected)
{
	static const char bad[] = "version=1\nid=4F2A1B3C9D0E1F24\narrival=1\nsize=1\n"
	    "sender=a@example.test\nattempts=0\nnext_attempt=0\n"
	    "rcpt=b@example.test\nnotify=NEVER,DELAY\nstatus=pending\nend=1\n";
	const char *why;

	ck_assert_ptr_null(envelope_parse(bad, sizeof bad - 1, &why));
	ck_assert_str_eq(why, "invalid recipient field");
}
END_TEST

START_TEST(envelope_quarantine_round_trip)
{
	struct envelope *env = sample_envelope(), *parsed;
	const char *why;
	size_t len;
	char *text;

	ck_assert_int_eq(envelope_quarantined(env), 0);
	envelope_set_attr(env, "quarantine", "1");
	ck_assert_int_eq(envelope_quarantined(env), 1);

	text = envelope_format(env, &len);
	ck_assert_ptr_nonnull(strstr(text, "\nquarantine=1\n"));
	parsed = envelope_parse(text, len, &why);
	ck_assert_ptr_nonnull(parsed);
	ck_assert_int_eq(envelope_quarantined(parsed), 1);
	ck_assert_uint_eq(parsed->nrcpts, 3);
	free(text);
	envelope_free(env);
	envelope_free(parsed);
}
END_TEST

/* A file written before the quarantine flag existed reads as not quarantined. */
START_TEST(envelope_old_file_not_quarantined)
{
	static const char old[] = "version=1\nid=4F2A1B3C9D0E1F25\narrival=1733350000.000001\n"
	    "size=10\nsender=alice@example.test\nattempts=0\nnext_attempt=0\n"
	    "body=8BITMIME\nrcpt=bob@example.test\nstatus=pending\nend=1\n";
	const char *why;
	struct envelope *env = envelope_parse(old, sizeof old - 1, &why);

	ck_assert_ptr_nonnull(env);
	ck_assert_int_eq(envelope_quarantined(env), 0);
	envelope_free(env);
}
END_TEST

/* Only the value 1 sets the flag; a file with another value still reads. */
START_TEST(envelope_quarantine_other_value)
{
	static const char odd[] = "version=1\nid=4F2A1B3C9D0E1F26\narrival=1\nsize=1\n"
	    "sender=a@example.test\nattempts=0\nnext_attempt=0\nquarantine=yes\n"
	    "rcpt=b@example.test\nstatus=pending\nend=1\n";
	const char *why;
	struct envelope *env = envelope_parse(odd, sizeof odd - 1, &why);

	ck_assert_ptr_nonnull(env);
	ck_assert_int_eq(envelope_quarantined(env), 0);
	envelope_free(env);
}
END_TEST

START_TEST(failure_report_dsn_fields)
{
	struct envelope *env = sample_envelope();
	struct bounce_report report = {
		.env = env, .kind = BOUNCE_FAILED, .headers = "Subject: x\n", .headers_len = 11,
		.myhostname = "mail.example.test", .bounce_id = "4F2A1B3C9D0E1F96", .now = 1733350000,
	};
	size_t len;
	int eightbit;
	char *text;

	envelope_set_attr(env, "envid", "QQ+1");
	envelope_rcpt_set(&env->rcpts[2], RCPT_FAILED, "5.1.1", "550 5.1.1 unknown");
	env->rcpts[2].notify = xstrdup("SUCCESS");
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "Content-Type: message/delivery-status\n\n"
	    "Original-Envelope-Id: QQ+1\nReporting-MTA: dns; mail.example.test\n"));
	ck_assert_ptr_nonnull(strstr(text, "Final-Recipient: rfc822; carol@example.test\n"));
	/* dave requested success notifications only. */
	ck_assert_ptr_null(strstr(text, "dave@remote.example"));
	free(text);

	report.full = 1;
	report.headers = "Subject: x\n\nbody\n";
	report.headers_len = strlen(report.headers);
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "Content-Description: Undelivered Message\n"
	    "Content-Type: message/rfc822\n\nSubject: x\n\nbody\n"));
	ck_assert_ptr_null(strstr(text, "text/rfc822-headers"));
	free(text);
	envelope_free(env);
}
END_TEST

START_TEST(success_report_structure)
{
	struct envelope *env = sample_envelope();
	struct bounce_report report = {
		.env = env, .kind = BOUNCE_DELIVERED, .headers = "",
		.myhostname = "mail.example.test", .bounce_id = "4F2A1B3C9D0E1F95", .now = 1733350000,
	};
	size_t len;
	int eightbit;
	char *text;

	env->rcpts[0].notify = xstrdup("SUCCESS");
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "Subject: Successful Mail Delivery Report\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nFinal-Recipient: rfc822; bob@example.test\n"
	    "Action: delivered\nStatus: 2.0.0\nDiagnostic-Code: smtp; 250 2.0.0 ok\n"));
	ck_assert_ptr_nonnull(strstr(text, "Content-Description: Delivered Message Headers\n"));
	ck_assert_ptr_null(strstr(text, "carol@example.test"));
	free(text);

	/* A recipient that deliverd forwarded is reported as expanded, once. */
	envelope_rcpt_set(&env->rcpts[0], RCPT_SENT, "2.0.0", "250 2.0.0 forwarded as 4F2A1B3C9D0E1F90");
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "Action: expanded\n"));
	free(text);
	envelope_rcpt_set(&env->rcpts[0], RCPT_SENT, "2.0.0",
	    "250 2.0.0 <bob@example.test> delivered to several destinations");
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "Action: expanded\n"));
	free(text);
	env->rcpts[0].success_reported = 1;
	ck_assert_int_eq(bounce_reports_rcpt(&report, &env->rcpts[0]), 0);
	envelope_free(env);
}
END_TEST

START_TEST(envelope_relayed_round_trip)
{
	struct envelope *env = sample_envelope(), *parsed;
	const char *why;
	size_t len;
	char *text;

	envelope_rcpt_relayed(&env->rcpts[0], 0);
	ck_assert_int_eq(env->rcpts[0].relayed, 1);
	ck_assert_int_eq(env->rcpts[0].success_reported, 0);
	text = envelope_format(env, &len);
	ck_assert_ptr_nonnull(strstr(text, "rcpt=bob@example.test\nrelayed=1\nstatus=sent\n"));

	parsed = envelope_parse(text, len, &why);
	ck_assert_ptr_nonnull(parsed);
	ck_assert_int_eq(parsed->rcpts[0].relayed, 1);
	ck_assert_int_eq(parsed->rcpts[1].relayed, 0);

	free(text);
	envelope_free(env);
	envelope_free(parsed);
}
END_TEST

START_TEST(relayed_to_dsn_server_not_reported)
{
	struct envelope *env = sample_envelope();
	struct bounce_report report = {
		.env = env, .kind = BOUNCE_DELIVERED, .headers = "",
		.myhostname = "mail.example.test", .bounce_id = "4F2A1B3C9D0E1F96", .now = 1733350000,
	};

	env->rcpts[0].notify = xstrdup("SUCCESS");
	envelope_rcpt_relayed(&env->rcpts[0], 1);
	ck_assert_int_eq(env->rcpts[0].success_reported, 1);
	ck_assert_int_eq(env->rcpts[0].relayed, 0);
	ck_assert_int_eq(bounce_reports_rcpt(&report, &env->rcpts[0]), 0);
	envelope_free(env);
}
END_TEST

START_TEST(success_report_relayed_action)
{
	struct envelope *env = sample_envelope();
	struct bounce_report report = {
		.env = env, .kind = BOUNCE_DELIVERED, .headers = "",
		.myhostname = "mail.example.test", .bounce_id = "4F2A1B3C9D0E1F97", .now = 1733350000,
	};
	size_t len;
	int eightbit;
	char *text;

	env->rcpts[0].notify = xstrdup("SUCCESS");
	envelope_rcpt_relayed(&env->rcpts[0], 0);
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "\nFinal-Recipient: rfc822; bob@example.test\n"
	    "Action: relayed\nStatus: 2.0.0\n"));
	ck_assert_ptr_nonnull(strstr(text, "(Action: relayed)"));
	ck_assert_ptr_null(strstr(text, "Action: delivered\n"));
	free(text);
	envelope_free(env);
}
END_TEST

START_TEST(envelope_remote_mta_round_trip)
{
	struct envelope *env = sample_envelope(), *parsed;
	const char *why;
	size_t len;
	char *text;

	envelope_rcpt_set_remote(&env->rcpts[1], "mx1.remote.example[192.0.2.1]", "RCPT TO");
	text = envelope_format(env, &len);
	ck_assert_ptr_nonnull(strstr(text, "remote_mta=mx1.remote.example[192.0.2.1]\n"
	    "reply_command=RCPT TO\n"));

	parsed = envelope_parse(text, len, &why);
	ck_assert_ptr_nonnull(parsed);
	ck_assert_str_eq(parsed->rcpts[1].remote_mta, "mx1.remote.example[192.0.2.1]");
	ck_assert_str_eq(parsed->rcpts[1].reply_command, "RCPT TO");
	ck_assert_ptr_null(parsed->rcpts[0].remote_mta);

	/* A new outcome clears the server of the old one. */
	envelope_rcpt_set(&parsed->rcpts[1], RCPT_DEFERRED, "4.4.1", "connection refused");
	ck_assert_ptr_null(parsed->rcpts[1].remote_mta);
	ck_assert_ptr_null(parsed->rcpts[1].reply_command);

	free(text);
	envelope_free(env);
	envelope_free(parsed);
}
END_TEST

START_TEST(failure_report_remote_mta)
{
	struct envelope *env = sample_envelope();
	struct bounce_report report = {
		.env = env, .kind = BOUNCE_FAILED, .headers = "",
		.myhostname = "mail.example.test", .bounce_id = "4F2A1B3C9D0E1F98", .now = 1733350000,
	};
	size_t len;
	int eightbit;
	char *text;

	envelope_rcpt_set_remote(&env->rcpts[1], "mx1.remote.example[192.0.2.1]", "RCPT TO");
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "\n<carol@example.test>: host mx1.remote.example[192.0.2.1] "
	    "said: 550 5.1.1 <carol@example.test>: user unknown (in reply to RCPT TO command)\n"));
	ck_assert_ptr_nonnull(strstr(text, "Action: failed\nStatus: 5.1.1\n"
	    "Remote-MTA: dns; mx1.remote.example\n"
	    "Diagnostic-Code: smtp; 550 5.1.1 <carol@example.test>: user unknown\n"));
	free(text);
	envelope_free(env);
}
END_TEST

START_TEST(expired_report_smtp_diagnostic)
{
	struct envelope *env = sample_envelope();
	struct bounce_report report = {
		.env = env, .kind = BOUNCE_FAILED, .headers = "",
		.myhostname = "mail.example.test", .bounce_id = "4F2A1B3C9D0E1F94", .now = 1733350000,
	};
	struct envelope_rcpt *rcpt = &env->rcpts[2];
	size_t len;
	int eightbit;
	char *text;

	envelope_rcpt_set(rcpt, RCPT_DEFERRED, "4.2.0", "450 4.2.0 mailbox busy");
	envelope_rcpt_set_remote(rcpt, "mx1.remote.example[192.0.2.1]", "end of DATA");
	envelope_rcpt_expire(rcpt);
	ck_assert_int_eq(rcpt->status, RCPT_FAILED);
	ck_assert_str_eq(rcpt->dsn, "4.2.0");
	ck_assert_str_eq(rcpt->reason, ENVELOPE_EXPIRED_PREFIX "450 4.2.0 mailbox busy");
	ck_assert_str_eq(rcpt->remote_mta, "mx1.remote.example[192.0.2.1]");

	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "\n<dave@remote.example>: " ENVELOPE_EXPIRED_PREFIX
	    "host mx1.remote.example[192.0.2.1] said: 450 4.2.0 mailbox busy "
	    "(in reply to end of DATA command)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nFinal-Recipient: rfc822; dave@remote.example\n"
	    "Action: failed\nStatus: 4.2.0\nRemote-MTA: dns; mx1.remote.example\n"
	    "Diagnostic-Code: smtp; 450 4.2.0 mailbox busy\n"));
	free(text);

	/* Without an SMTP reply the diagnostic keeps the whole text. */
	envelope_rcpt_set(rcpt, RCPT_DEFERRED, "4.4.1", "connection refused");
	envelope_rcpt_expire(rcpt);
	text = bounce_build(&report, &len, &eightbit);
	ck_assert_ptr_nonnull(strstr(text, "Status: 4.4.1\nDiagnostic-Code: X-Estafeta; "
	    ENVELOPE_EXPIRED_PREFIX "connection refused\n"));
	free(text);
	envelope_free(env);
}
END_TEST

Suite *
queue_envelope_suite(void)
{
	Suite *suite = suite_create("queue_envelope");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, envelope_round_trip);
	tcase_add_test(tc, envelope_null_sender_kept);
	tcase_add_test(tc, envelope_rejects_bad_files);
	tcase_add_test(tc, envelope_reason_cleaned);
	tcase_add_test(tc, backoff_doubles_to_maximum);
	tcase_add_test(tc, diagnostic_code_types);
	tcase_add_test(tc, diagnostic_code_no_injection);
	tcase_add_test(tc, bounce_report_structure);
	tcase_add_test(tc, bounce_report_invalid_status);
	tcase_add_test(tc, delay_report_lists_deferred);
	tcase_add_test(tc, envelope_dsn_fields_round_trip);
	tcase_add_test(tc, envelope_old_file_dsn_defaults);
	tcase_add_test(tc, envelope_notify_values);
	tcase_add_test(tc, envelope_bad_notify_rejected);
	tcase_add_test(tc, envelope_quarantine_round_trip);
	tcase_add_test(tc, envelope_old_file_not_quarantined);
	tcase_add_test(tc, envelope_quarantine_other_value);
	tcase_add_test(tc, failure_report_dsn_fields);
	tcase_add_test(tc, success_report_structure);
	tcase_add_test(tc, envelope_relayed_round_trip);
	tcase_add_test(tc, relayed_to_dsn_server_not_reported);
	tcase_add_test(tc, success_report_relayed_action);
	tcase_add_test(tc, envelope_remote_mta_round_trip);
	tcase_add_test(tc, failure_report_remote_mta);
	tcase_add_test(tc, expired_report_smtp_diagnostic);
	suite_add_tcase(suite, tc);
	return suite;
}
