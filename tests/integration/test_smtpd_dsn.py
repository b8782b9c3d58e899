"""DSN (RFC 3461), REQUIRETLS (RFC 8689) and LIMITS (RFC 9422): the
EHLO keywords, the MAIL and RCPT parameters with their error replies,
the envelope fields queued stores, and the notifications queued sends
or leaves out because of them."""

import email
import email.policy
import os
import re
import time

import pytest

from conftest import TLS_SERVER_NAME, VIRTUAL_USERS, tls_client_context
from test_queue_ipc import QueueClient, message

FAST_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "1s",
              "queue_run_delay": "1s"}


def session(host):
    conn = host.raw()
    code, text = conn.cmd("EHLO client.example.test")
    assert code == 250
    return conn, text


def assert_reply(reply, code, enhanced):
    assert reply[0] == code, reply
    assert reply[1].startswith(enhanced + " "), reply


def send_raw(host, mail, rcpts, data):
    """Send one message with raw MAIL and RCPT lines and return the queue id."""
    conn, _ = session(host)
    assert conn.cmd(mail)[0] == 250
    for rcpt in rcpts:
        assert conn.cmd(rcpt)[0] == 250
    assert conn.cmd("DATA")[0] == 354
    conn.send(data.replace(b"\n", b"\r\n") + b".\r\n")
    code, text = conn.reply()
    assert code == 250, text
    conn.cmd("QUIT")
    conn.close()
    return re.search(r"queued as ([0-9A-F]+)", text).group(1)


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def reports_in(host, address):
    return [parse(raw) for raw in host.messages(address) if b"multipart/report" in raw]


def delivery_status(report):
    """Parse a DSN into its per-message and per-recipient field groups, as dicts."""
    parts = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(parts) == 1
    return [{k.lower(): str(v) for k, v in block.items()} for block in parts[0].get_payload()]


def envelope_lines(host, queue_id):
    """The lines of QUEUE_ID's envelope, once its deferral has moved it
    to deferred/."""
    path = host.dir / "spool" / "deferred" / queue_id
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text().splitlines()


def assert_no_mail_after(host, address, pattern):
    """Wait for the log line PATTERN, then give queued a moment to queue
    anything more, and check that ADDRESS received nothing."""
    assert host.wait_for_log(pattern, timeout=15)
    time.sleep(1.5)
    assert host.messages(address) == []


# EHLO keywords and LIMITS


def test_ehlo_keywords_plaintext(shared_mailhost):
    conn, text = session(shared_mailhost)
    keywords = text.split("\n")
    assert "DSN" in keywords
    assert "LIMITS RCPTMAX=1000" in keywords
    assert "REQUIRETLS" not in keywords
    conn.close()


def test_limits_follow_settings(make_mailhost):
    host = make_mailhost(smtpd_recipient_limit=3)
    conn, text = session(host)
    assert "LIMITS RCPTMAX=3" in text.split("\n")
    conn.close()


def test_rcptmax_enforced(make_mailhost):
    host = make_mailhost(smtpd_recipient_limit=2)
    conn, _ = session(host)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert conn.cmd("RCPT TO:<bob@example.test>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<alice@example.test>"), 452, "4.5.3")
    conn.close()


def test_mailmax_enforced(make_mailhost):
    host = make_mailhost(smtpd_session_transaction_limit=2)
    conn, text = session(host)
    assert "LIMITS RCPTMAX=1000 MAILMAX=2" in text.split("\n")
    for _ in range(2):
        assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
        assert conn.cmd("RSET")[0] == 250
    assert_reply(conn.cmd("MAIL FROM:<sender@example.net>"), 421, "4.7.0")
    assert conn.closed_by_server()
    assert host.wait_for_log(r"transaction limit of 2 reached; closing")


def test_failed_mail_not_counted(make_mailhost):
    host = make_mailhost(smtpd_session_transaction_limit=1)
    conn, _ = session(host)
    assert conn.cmd("MAIL FROM:<sender@example.net> RET=BAD")[0] == 501
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    conn.close()


# MAIL and RCPT parameters


@pytest.mark.parametrize("params", [
    "RET=FULL", "RET=HDRS", "ret=hdrs", "ENVID=abc", "ENVID=QQ+2B1+3D2",
    "RET=FULL ENVID=x SIZE=100 BODY=8BITMIME", "ENVID=" + "e" * 100,
])
def test_dsn_mail_parameters_accepted(shared_mailhost, params):
    conn, _ = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net> " + params)[0] == 250
    conn.close()


@pytest.mark.parametrize("params", [
    "RET=", "RET", "RET=BODY", "RET=FULL RET=HDRS",
    "ENVID=", "ENVID", "ENVID=a+2", "ENVID=a+zz", "ENVID=a+2b", "ENVID=a+0A",
    "ENVID=a+7F", "ENVID=a=b", "ENVID=" + "e" * 101, "ENVID=a ENVID=b",
    "SIZE=10 SIZE=10",
])
def test_bad_mail_parameter(shared_mailhost, params):
    conn, _ = session(shared_mailhost)
    assert_reply(conn.cmd("MAIL FROM:<sender@example.net> " + params), 501, "5.5.4")
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    conn.close()


@pytest.mark.parametrize("params", [
    "NOTIFY=NEVER", "NOTIFY=SUCCESS", "NOTIFY=FAILURE,DELAY", "notify=delay,success,failure",
    "ORCPT=rfc822;demo@example.test", "ORCPT=rfc822;Demo+2Bx@example.test",
    "NOTIFY=SUCCESS ORCPT=rfc822;demo+40example.test",
])
def test_dsn_rcpt_parameters_accepted(shared_mailhost, params):
    conn, _ = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<demo@example.test> " + params)[0] == 250
    conn.close()


@pytest.mark.parametrize("params", [
    "NOTIFY=", "NOTIFY", "NOTIFY=SOMETIMES", "NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS,SUCCESS",
    "NOTIFY=SUCCESS,", "NOTIFY=,DELAY", "NOTIFY=SUCCESS,,DELAY", "NOTIFY=NEVER NOTIFY=NEVER",
    "ORCPT=", "ORCPT", "ORCPT=demo@example.test", "ORCPT=rfc822;", "ORCPT=;demo@example.test",
    "ORCPT=rf<c;demo@example.test", "ORCPT=rfc822;demo+2", "ORCPT=rfc822;de=mo",
    "ORCPT=rfc822;a+0D+0Ab", "ORCPT=rfc822;" + "d" * 500,
    "ORCPT=rfc822;a@b ORCPT=rfc822;a@b",
])
def test_bad_rcpt_parameter(shared_mailhost, params):
    conn, _ = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<demo@example.test> " + params), 501, "5.5.4")
    assert conn.cmd("RCPT TO:<demo@example.test>")[0] == 250
    conn.close()


def test_bad_parameter_logged(mailhost):
    conn, _ = session(mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<demo@example.test> NOTIFY=NEVER,DELAY")[0] == 501
    conn.close()
    assert mailhost.wait_for_log(
        r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 501 5\.5\.4 Invalid NOTIFY parameter")


def test_smtplib_dsn_options(mailhost):
    """smtplib passes DSN options as the client library of an MUA would."""
    with mailhost.smtp() as client:
        client.ehlo()
        assert client.has_extn("dsn")
        refused = client.sendmail(
            "sender@example.net", ["demo@example.test"],
            message("smtplib dsn", sender="sender@example.net",
                    to="demo@example.test").replace(b"\n", b"\r\n"),
            mail_options=["RET=HDRS", "ENVID=smtplib-1"],
            rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;demo@example.test"])
    assert refused == {}
    assert len(mailhost.wait_for_messages("demo@example.test", 1)) == 1


# REQUIRETLS


def test_requiretls_needs_tls(shared_mailhost):
    conn, _ = session(shared_mailhost)
    assert_reply(conn.cmd("MAIL FROM:<sender@example.net> REQUIRETLS"), 530, "5.7.10")
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    conn.close()
    assert shared_mailhost.wait_for_log(r"reject: MAIL from unknown\[127\.0\.0\.1\]: 530 5\.7\.10 ")


def starttls_client(host):
    """smtplib on port 25 after STARTTLS, trusting the test CA."""
    client = host.smtp()
    client._host = TLS_SERVER_NAME  # SNI name and certificate check
    client.starttls(context=tls_client_context())
    client.ehlo()
    return client


def test_requiretls_over_tls_recorded(make_mailhost):
    host = make_mailhost(tls=True)
    host.stop("deliverd")
    with starttls_client(host) as client:
        assert client.has_extn("requiretls")
        code, _ = client.mail("alice@example.test", ["REQUIRETLS"])
        assert code == 250
        assert client.rcpt("bob@example.test")[0] == 250
        data = b"From: <alice@example.test>\r\nTLS-Required: No\r\n\r\ntls only\r\n"
        code, text = client.data(data)
        assert code == 250
    queue_id = re.search(r"queued as ([0-9A-F]+)", text.decode()).group(1)
    assert host.wait_for_log(queue_id + r": to=<bob@example.test>.*status=deferred")
    lines = envelope_lines(host, queue_id)
    assert "requiretls=1" in lines
    # REQUIRETLS overrides the header field.
    assert "tls_required=no" not in lines


def test_requiretls_with_value_rejected(make_mailhost):
    host = make_mailhost(tls=True)
    with starttls_client(host) as client:
        code, text = client.mail("alice@example.test", ["REQUIRETLS=YES"])
    assert code == 501
    assert text.startswith(b"5.5.4 ")


@pytest.mark.parametrize("field", [
    "TLS-Required: No", "tls-required:no", "TLS-Required:   NO  ",
])
def test_tls_required_no_recorded(mailhost, field):
    mailhost.stop("deliverd")
    data = ("From: <alice@example.test>\n%s\nSubject: relaxed\n\nbody\n" % field).encode()
    queue_id = send_raw(mailhost, "MAIL FROM:<alice@example.test>",
                        ["RCPT TO:<bob@example.test>"], data)
    assert mailhost.wait_for_log(queue_id + r": to=<bob@example.test>.*status=deferred")
    assert "tls_required=no" in envelope_lines(mailhost, queue_id)


@pytest.mark.parametrize("data", [
    b"From: <alice@example.test>\nTLS-Required: Yes\n\nbody\n",
    b"From: <alice@example.test>\n\nTLS-Required: No\n",
    b"From: <alice@example.test>\nX-TLS-Required: No\n\nbody\n",
])
def test_tls_required_other_ignored(mailhost, data):
    mailhost.stop("deliverd")
    queue_id = send_raw(mailhost, "MAIL FROM:<alice@example.test>",
                        ["RCPT TO:<bob@example.test>"], data)
    assert mailhost.wait_for_log(queue_id + r": to=<bob@example.test>.*status=deferred")
    assert not any(line.startswith("tls_required=")
                   for line in envelope_lines(mailhost, queue_id))


def test_tls_required_kept_in_message(mailhost):
    data = b"From: <alice@example.test>\nTLS-Required: No\nSubject: kept\n\nbody\n"
    send_raw(mailhost, "MAIL FROM:<alice@example.test>", ["RCPT TO:<bob@example.test>"], data)
    delivered = mailhost.wait_for_messages("bob@example.test", 1)
    assert b"\nTLS-Required: No\n" in delivered[0]


# The envelope queued stores


def test_envelope_records_dsn_fields(mailhost):
    mailhost.stop("deliverd")
    queue_id = send_raw(
        mailhost, "MAIL FROM:<alice@example.test> RET=HDRS ENVID=QQ+2B1",
        ["RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+40example.test",
         "RCPT TO:<demo@example.test>"],
        message("recorded"))
    assert mailhost.wait_for_log(queue_id + r": to=<bob@example.test>.*status=deferred")
    lines = envelope_lines(mailhost, queue_id)
    assert "ret=HDRS" in lines
    assert "envid=QQ+1" in lines
    bob = lines.index("rcpt=bob@example.test")
    demo = lines.index("rcpt=demo@example.test")
    assert "orcpt=rfc822;Bob@example.test" in lines[bob:demo]
    assert "notify=SUCCESS,FAILURE" in lines[bob:demo]
    assert not any(line.startswith(("notify=", "orcpt=")) for line in lines[demo:])


@pytest.mark.parametrize("field,value", [
    ("ret", "SOME"), ("envid", ""), ("envid", "e" * 101), ("requiretls", "yes"),
    ("notify", "NEVER,SUCCESS"), ("notify", "success"), ("tls_required", "yes"),
])
def test_commit_bad_dsn_field(shared_mailhost, field, value):
    client = QueueClient(shared_mailhost.settings["queued_socket"])
    msg_type, reply, _ = client.submit(
        "alice@example.test", ["bob@example.test"], message("bad " + field),
        extra=[(field, value)])
    client.close()
    assert msg_type == "COMMIT-FAIL"
    assert dict(reply)["reason"].startswith("invalid " + field)


# Failure and delay notifications


def test_notify_never_sends_no_bounce(make_mailhost):
    host = make_mailhost(maximal_queue_lifetime="1s", **FAST_RETRY)
    queue_id = send_raw(host, "MAIL FROM:<alice@example.test>",
                        ["RCPT TO:<someone@remote.example> NOTIFY=NEVER"], message("never"))
    assert_no_mail_after(
        host, "alice@example.test",
        queue_id + r": to=<someone@remote.example>, notify=NEVER: no notification to the "
        r"sender: no failure notification requested")
    assert host.wait_for_log(queue_id + r": removed")


def test_failure_dsn_carries_envid_orcpt(make_mailhost):
    host = make_mailhost(maximal_queue_lifetime="1s", **FAST_RETRY)
    queue_id = send_raw(
        host, "MAIL FROM:<alice@example.test> RET=HDRS ENVID=QQ+2B1",
        ["RCPT TO:<someone@remote.example> NOTIFY=FAILURE ORCPT=rfc822;Someone+40remote.example"],
        message("headers only", body="the secret body line\n"))
    assert host.wait_for_log(queue_id + r": sender non-delivery notification: ", timeout=15)
    assert len(host.wait_for_messages("alice@example.test", 1)) == 1
    reports = reports_in(host, "alice@example.test")
    assert len(reports) == 1
    report = reports[0]
    assert report.get_content_type() == "multipart/report"

    groups = delivery_status(report)
    assert groups[0]["original-envelope-id"] == "QQ+1"
    assert groups[1]["original-recipient"] == "rfc822; Someone@remote.example"
    assert groups[1]["final-recipient"] == "rfc822; someone@remote.example"
    assert groups[1]["action"] == "failed"

    types = [part.get_content_type() for part in report.walk()]
    assert "text/rfc822-headers" in types
    assert "message/rfc822" not in types
    assert b"the secret body line" not in host.messages("alice@example.test")[0]


def test_ret_full_returns_message(make_mailhost):
    host = make_mailhost(maximal_queue_lifetime="1s", **FAST_RETRY)
    send_raw(host, "MAIL FROM:<alice@example.test> RET=FULL",
             ["RCPT TO:<someone@remote.example>"],
             message("whole message", body="the returned body line\n"))
    assert len(host.wait_for_messages("alice@example.test", 1, timeout=20)) == 1
    report = reports_in(host, "alice@example.test")[0]
    returned = [part for part in report.walk() if part.get_content_type() == "message/rfc822"]
    assert len(returned) == 1
    original = returned[0].get_payload()[0]
    assert original["Subject"] == "whole message"
    assert "the returned body line" in original.get_content()
    assert "original-envelope-id" not in delivery_status(report)[0]


def test_delay_warning_needs_delay(make_mailhost):
    host = make_mailhost(delay_warning_time="1s", **FAST_RETRY)
    send_raw(host, "MAIL FROM:<alice@example.test>",
             ["RCPT TO:<someone@remote.example> NOTIFY=FAILURE"], message("no warning"))
    queue_id = host.wait_for_log(
        r"([0-9A-F]+): to=<someone@remote.example>.*status=deferred").group(1)
    # Wait for three attempts past delay_warning_time.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(re.findall(
            queue_id + r": to=<someone@remote.example>", host.log())) < 4:
        time.sleep(0.2)
    assert len(re.findall(queue_id + r": to=<someone@remote.example>", host.log())) >= 4
    assert "sender delay notification" not in host.log()
    assert host.messages("alice@example.test") == []


def test_delay_warning_with_delay(make_mailhost):
    host = make_mailhost(delay_warning_time="1s", **FAST_RETRY)
    send_raw(host, "MAIL FROM:<alice@example.test> ENVID=slow-1",
             ["RCPT TO:<someone@remote.example> NOTIFY=DELAY"], message("warned"))
    assert len(host.wait_for_messages("alice@example.test", 1, timeout=20)) == 1
    report = reports_in(host, "alice@example.test")[0]
    groups = delivery_status(report)
    assert groups[0]["original-envelope-id"] == "slow-1"
    assert groups[1]["action"] == "delayed"


# Success notifications


def test_success_ignored_unauthenticated(mailhost):
    queue_id = send_raw(mailhost, "MAIL FROM:<alice@example.test>",
                        ["RCPT TO:<bob@example.test> NOTIFY=SUCCESS"], message("no receipt"))
    assert len(mailhost.wait_for_messages("bob@example.test", 1)) == 1
    assert_no_mail_after(
        mailhost, "alice@example.test",
        queue_id + r": to=<bob@example.test>, notify=SUCCESS: no notification to the sender: "
        r"sender not authenticated")
    assert mailhost.wait_for_log(queue_id + r": removed")


def test_success_dsn_local_submission(mailhost):
    client = QueueClient(mailhost.settings["queued_socket"])
    msg_type, _, queue_id = client.submit(
        "alice@example.test", ["bob@example.test"], message("receipt please"),
        extra=[("notify", "SUCCESS"), ("orcpt", "rfc822;Bob@example.test"),
               ("envid", "local-7"), ("ret", "FULL")])
    client.close()
    assert msg_type == "COMMIT-OK"
    assert len(mailhost.wait_for_messages("bob@example.test", 1)) == 1
    assert len(mailhost.wait_for_messages("alice@example.test", 1)) == 1
    assert mailhost.wait_for_log(queue_id + r": sender delivery status notification: ")

    report = reports_in(mailhost, "alice@example.test")[0]
    assert report["Subject"] == "Successful Mail Delivery Report"
    groups = delivery_status(report)
    assert groups[0]["original-envelope-id"] == "local-7"
    assert groups[1]["final-recipient"] == "rfc822; bob@example.test"
    assert groups[1]["original-recipient"] == "rfc822; Bob@example.test"
    assert groups[1]["action"] == "delivered"
    assert groups[1]["status"] == "2.0.0"
    # RET applies to failure reports only: a success report has the header.
    types = [part.get_content_type() for part in report.walk()]
    assert "text/rfc822-headers" in types
    assert "message/rfc822" not in types


def commit(host, fields, data):
    """Send COMMIT with FIELDS in the given order (id and size are added)."""
    client = QueueClient(host.settings["queued_socket"])
    try:
        queue_id, fd = client.new()
        os.write(fd, data)
        os.close(fd)
        msg_type, _, _ = client.request(
            "COMMIT", [("id", queue_id)] + fields + [("size", str(len(data)))])
    finally:
        client.close()
    assert msg_type == "COMMIT-OK"
    return queue_id


def test_success_dsn_sent_once(make_mailhost):
    """A success report for one recipient is not repeated at the later
    attempts for another, deferred recipient."""
    host = make_mailhost(**FAST_RETRY)
    queue_id = commit(host, [
        ("sender", "alice@example.test"), ("protocol", "LOCAL"),
        ("rcpt", "bob@example.test"), ("notify", "SUCCESS"),
        ("rcpt", "someone@remote.example"), ("notify", "NEVER")], message("partial"))
    assert host.wait_for_log(queue_id + r": sender delivery status notification: ")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(re.findall(
            queue_id + r": to=<someone@remote.example>", host.log())) < 4:
        time.sleep(0.2)
    assert len(re.findall(queue_id + r": to=<someone@remote.example>", host.log())) >= 4
    assert len(re.findall(queue_id + r": sender delivery status notification", host.log())) == 1
    assert len(host.messages("alice@example.test")) == 1
    lines = envelope_lines(host, queue_id)
    assert lines[lines.index("rcpt=bob@example.test") + 1:][:3] == [
        "notify=SUCCESS", "success_reported=1", "status=sent"]


def test_success_dsn_authenticated(make_mailhost):
    host = make_mailhost(tls=True)
    with host.submission() as client:
        client._host = TLS_SERVER_NAME  # SNI name and certificate check
        client.starttls(context=tls_client_context())
        client.ehlo()
        assert client.has_extn("auth")
        client.login("alice@example.test", VIRTUAL_USERS["alice@example.test"])
        refused = client.sendmail(
            "alice@example.test", ["bob@example.test"],
            message("signed receipt").replace(b"\n", b"\r\n"),
            mail_options=["ENVID=auth-1"], rcpt_options=["NOTIFY=SUCCESS"])
    assert refused == {}
    assert len(host.wait_for_messages("bob@example.test", 1)) == 1
    assert len(host.wait_for_messages("alice@example.test", 1)) == 1
    report = reports_in(host, "alice@example.test")[0]
    groups = delivery_status(report)
    assert groups[0]["original-envelope-id"] == "auth-1"
    assert groups[1]["final-recipient"] == "rfc822; bob@example.test"
    assert groups[1]["action"] == "delivered"
    assert groups[1]["status"] == "2.0.0"


def test_success_dsn_alias_expanded(make_mailhost):
    host = make_mailhost(
        aliases="postmaster: root\nteam@example.test: alice@example.test, bob@example.test\n")
    queue_id = commit(host, [
        ("sender", "demo@example.test"), ("protocol", "LOCAL"),
        ("rcpt", "team@example.test"), ("notify", "SUCCESS")], message("team"))
    assert host.wait_for_log(queue_id + r": sender delivery status notification: ")
    assert len(host.wait_for_messages("alice@example.test", 1)) == 1
    assert len(host.wait_for_messages("bob@example.test", 1)) == 1
    assert len(host.wait_for_messages("demo@example.test", 1)) == 1
    rcpt = delivery_status(reports_in(host, "demo@example.test")[0])[1]
    assert rcpt["final-recipient"] == "rfc822; team@example.test"
    assert rcpt["action"] == "expanded"


def test_success_dsn_forward_expanded(make_mailhost):
    host = make_mailhost(aliases="postmaster: root\noutside: someone@remote.example\n")
    queue_id = commit(host, [
        ("sender", "demo@example.test"), ("protocol", "LOCAL"),
        ("rcpt", "outside@mail.example.test"), ("notify", "SUCCESS")], message("forwarded"))
    assert host.wait_for_log(queue_id + r": sender delivery status notification: ")
    assert len(host.wait_for_messages("demo@example.test", 1)) == 1
    report = reports_in(host, "demo@example.test")[0]
    rcpt = delivery_status(report)[1]
    assert rcpt["final-recipient"] == "rfc822; outside@mail.example.test"
    assert rcpt["action"] == "expanded"
    assert rcpt["status"] == "2.0.0"
