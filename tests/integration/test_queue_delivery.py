"""queued end to end: durability, deferral, bounces, expiry and recovery.

Messages come in through smtpd (smtplib) or straight through queued's
socket (QueueClient), and go out to the real deliverd over LMTP.
"""

import email
import email.policy
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from test_queue_ipc import QueueClient, message, values

FAST_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "1s",
              "queue_run_delay": "1s"}


def send_smtp(host, sender, rcpts, data):
    """Send DATA (LF line ends) through smtpd, which expects CRLF."""
    with host.smtp() as client:
        refused = client.sendmail(sender, rcpts, data.replace(b"\n", b"\r\n"))
    assert refused == {}


def queued_ids(host):
    client = QueueClient(host.settings["queued_socket"])
    try:
        return {dict(entry)["id"]: entry for entry in client.list()}
    finally:
        client.close()


def flush(host):
    client = QueueClient(host.settings["queued_socket"])
    try:
        msg_type, fields, _ = client.request("FLUSH")
    finally:
        client.close()
    assert msg_type == "OK", fields
    return int(dict(fields)["count"])


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def bounces_in(host, address):
    return [parse(raw) for raw in host.messages(address)
            if b"multipart/report" in raw]


def delivery_status(report):
    """Per-message and per-recipient field groups of a DSN, as dicts."""
    parts = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(parts) == 1
    groups = []
    for block in parts[0].get_payload():
        groups.append({k.lower(): str(v) for k, v in block.items()})
    return groups


def test_killed_queued_delivers_after_restart(make_mailhost):
    host = make_mailhost(**FAST_RETRY)
    host.stop("deliverd")
    send_smtp(host, "alice@example.test", ["bob@example.test"],
              message("survives kill", body="Still here after SIGKILL.\n"))
    assert host.wait_for_log(r"to=<bob@example.test>.*status=deferred")

    host.kill("queued")
    assert host.messages("bob@example.test") == []
    host.start("deliverd")
    host.start("queued")

    found = host.wait_for_messages("bob@example.test", 1)
    assert len(found) == 1
    assert b"Still here after SIGKILL." in found[0]


def test_commit_ok_then_kill_loses_nothing(make_mailhost):
    host = make_mailhost(**FAST_RETRY)
    host.stop("deliverd")
    client = QueueClient(host.settings["queued_socket"])
    ids = []
    for i in range(20):
        msg_type, _, queue_id = client.submit(
            "alice@example.test", ["bob@example.test"], message("batch %d" % i))
        assert msg_type == "COMMIT-OK"
        ids.append(queue_id)
    client.close()

    host.kill("queued")
    spool = host.dir / "spool"
    # Each message is in queue/ and data/, or in deferred/ and
    # deferred-data/ once its first attempt deferred it.
    for queue_id in ids:
        assert (spool / "queue" / queue_id).exists() or (spool / "deferred" / queue_id).exists()
        assert (spool / "data" / queue_id).exists() or (spool / "deferred-data" / queue_id).exists()
    host.start("deliverd")
    host.start("queued")
    assert len(host.wait_for_messages("bob@example.test", 20, timeout=30)) == 20


def test_deliverd_down_defers_then_flush(mailhost):
    mailhost.stop("deliverd")
    send_smtp(mailhost, "alice@example.test", ["bob@example.test"], message("deferred"))
    match = mailhost.wait_for_log(r"([0-9A-F]{12,20}): to=<bob@example.test>.*status=deferred \((.*)\)")
    assert match
    queue_id = match.group(1)
    assert "deliverd" in match.group(2)

    entry = queued_ids(mailhost)[queue_id]
    assert dict(entry)["queue"] == "deferred"
    assert values(entry, "status") == ["deferred"]
    assert values(entry, "reason")[0] == match.group(2)
    estafeta = Path(mailhost.bin("estafeta"))
    if estafeta.exists():
        listing = mailhost.run("estafeta", "queue", "list")
        assert queue_id in listing.stdout.decode()

    mailhost.start("deliverd")
    assert flush(mailhost) == 1
    found = mailhost.wait_for_messages("bob@example.test", 1)
    assert len(found) == 1
    assert mailhost.wait_for_log(queue_id + r": removed")
    assert queue_id not in queued_ids(mailhost)


def test_unknown_user_bounces_to_sender(mailhost):
    client = QueueClient(mailhost.settings["queued_socket"])
    msg_type, _, queue_id = client.submit(
        "alice@example.test", ["nobody-here@example.test", "bob@example.test"],
        message("bounce me", to="nobody-here@example.test"))
    client.close()
    assert msg_type == "COMMIT-OK"

    assert len(mailhost.wait_for_messages("bob@example.test", 1)) == 1
    assert len(mailhost.wait_for_messages("alice@example.test", 1)) == 1
    reports = bounces_in(mailhost, "alice@example.test")
    assert len(reports) == 1
    report = reports[0]
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["From"].addresses[0].addr_spec == "MAILER-DAEMON@mail.example.test"
    assert report["To"].addresses[0].addr_spec == "alice@example.test"
    assert report["Auto-Submitted"] == "auto-replied"
    bounce_id = mailhost.wait_for_log(
        queue_id + r": sender non-delivery notification: ([0-9A-F]+)").group(1)
    assert mailhost.wait_for_log(bounce_id + r": from=<>, ")

    groups = delivery_status(report)
    assert groups[0]["reporting-mta"] == "dns; mail.example.test"
    assert "arrival-date" in groups[0]
    assert len(groups) == 2
    rcpt = groups[1]
    assert rcpt["final-recipient"] == "rfc822; nobody-here@example.test"
    assert rcpt["action"] == "failed"
    assert rcpt["status"].startswith("5.")
    assert rcpt["diagnostic-code"].startswith("smtp; 5")

    headers = [p for p in report.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert len(headers) == 1
    assert b"Subject: bounce me" in headers[0].get_payload(decode=True)
    assert mailhost.wait_for_log(queue_id + r": removed")


def test_removed_user_bounces_after_acceptance(mailhost):
    mailhost.stop("deliverd")
    send_smtp(mailhost, "alice@example.test", ["bob@example.test"], message("bob left"))
    assert mailhost.wait_for_log(r"to=<bob@example.test>.*status=deferred")

    users = {"demo@example.test": "demo", "alice@example.test": "alice-secret"}
    mailhost.write_users(users)
    mailhost.restart("authd")
    mailhost.start("deliverd")
    flush(mailhost)

    assert len(mailhost.wait_for_messages("alice@example.test", 1)) == 1
    reports = bounces_in(mailhost, "alice@example.test")
    assert len(reports) == 1
    rcpt = delivery_status(reports[0])[1]
    assert rcpt["final-recipient"] == "rfc822; bob@example.test"
    assert rcpt["action"] == "failed"


def test_null_sender_gets_no_bounce(mailhost):
    client = QueueClient(mailhost.settings["queued_socket"])
    msg_type, _, queue_id = client.submit(
        "", ["nobody-here@example.test"], message("from nobody", sender="MAILER-DAEMON@example.test"))
    client.close()
    assert msg_type == "COMMIT-OK"
    assert mailhost.wait_for_log(queue_id + r": no bounce to the null sender")
    assert mailhost.wait_for_log(queue_id + r": removed")
    for user in ("alice", "bob", "demo"):
        assert mailhost.messages(user + "@example.test") == []


def test_queue_lifetime_bounces_remote_recipient(make_mailhost):
    host = make_mailhost(maximal_queue_lifetime="1s", **FAST_RETRY)
    send_smtp(host, "alice@example.test", ["someone@remote.example"], message("too late"))
    match = host.wait_for_log(
        r"([0-9A-F]+): to=<someone@remote.example>.*status=deferred \(outbound delivery is not enabled\)")
    assert match
    queue_id = match.group(1)
    assert host.wait_for_log(queue_id + r": from=<alice@example.test>, status=expired", timeout=15)

    assert len(host.wait_for_messages("alice@example.test", 1)) == 1
    reports = bounces_in(host, "alice@example.test")
    assert len(reports) == 1
    rcpt = delivery_status(reports[0])[1]
    assert rcpt["final-recipient"] == "rfc822; someone@remote.example"
    assert rcpt["action"] == "failed"
    assert rcpt["status"].startswith("4.")
    assert "outbound delivery is not enabled" in rcpt["diagnostic-code"]
    assert host.wait_for_log(queue_id + r": removed")


def test_half_written_files_removed_at_start(mailhost):
    mailhost.stop("queued")
    spool = mailhost.dir / "spool"
    half = spool / "data" / "0000000000000ABC"
    half.write_bytes(b"Subject: half\n\nno envelope was ever written\n")
    unfinished = spool / "tmp" / "0000000000000ABD"
    unfinished.write_bytes(b"version=1\nid=0000000000000ABD\n")

    mailhost.start("queued")
    assert not half.exists()
    assert not unfinished.exists()
    assert mailhost.wait_for_log(r"0000000000000ABC: removed uncommitted data file")
    assert mailhost.wait_for_log(r"0000000000000ABD: removed unfinished envelope file")
    for user in ("alice", "bob", "demo"):
        assert mailhost.messages(user + "@example.test") == []


def test_corrupt_envelope_moved_aside(mailhost):
    mailhost.stop("queued")
    spool = mailhost.dir / "spool"
    (spool / "data" / "0000000000000ABE").write_bytes(b"Subject: x\n\n")
    (spool / "queue" / "0000000000000ABE").write_bytes(b"version=1\nid=0000000000000ABE\n")

    mailhost.start("queued")
    assert mailhost.wait_for_log(r"0000000000000ABE: unreadable envelope \(truncated")
    assert (spool / "corrupt" / "0000000000000ABE").exists()


def test_client_killed_mid_message_leaves_nothing(mailhost):
    client = QueueClient(mailhost.settings["queued_socket"])
    queue_id, fd = client.new()
    os.write(fd, b"Subject: half\n")
    os.close(fd)
    mailhost.kill("queued")
    client.close()
    assert (mailhost.dir / "spool" / "data" / queue_id).exists()
    mailhost.start("queued")
    assert not (mailhost.dir / "spool" / "data" / queue_id).exists()


def test_dot_lines_survive_lmtp(mailhost):
    body = ".\n..two dots\n.leading dot\nlast line without newline"
    client = QueueClient(mailhost.settings["queued_socket"])
    msg_type, _, _ = client.submit("alice@example.test", ["bob@example.test"],
                                   message("dots", body=body))
    client.close()
    assert msg_type == "COMMIT-OK"
    found = mailhost.wait_for_messages("bob@example.test", 1)
    assert len(found) == 1
    assert b"\n.\n..two dots\n.leading dot\nlast line without newline" in found[0]


def test_eight_bit_message_delivered(mailhost):
    client = QueueClient(mailhost.settings["queued_socket"])
    data = message("8bit", body="Gr\u00fc\u00dfe aus K\u00f6ln\n").replace(b"Subject: 8bit", "Subject: caf\u00e9".encode())
    msg_type, _, queue_id = client.submit("alice@example.test", ["bob@example.test"], data)
    client.close()
    assert msg_type == "COMMIT-OK"
    found = mailhost.wait_for_messages("bob@example.test", 1)
    assert len(found) == 1
    assert "Gr\u00fc\u00dfe aus K\u00f6ln".encode() in found[0]


def test_parallel_commits_all_delivered(mailhost):
    per_thread, threads = 25, 8
    errors = []

    def submit_many(n):
        client = QueueClient(mailhost.settings["queued_socket"])
        try:
            for i in range(per_thread):
                msg_type, reply, _ = client.submit(
                    "alice@example.test", ["bob@example.test"], message("parallel %d-%d" % (n, i)))
                if msg_type != "COMMIT-OK":
                    errors.append(reply)
        finally:
            client.close()

    workers = [threading.Thread(target=submit_many, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    total = per_thread * threads
    assert len(mailhost.wait_for_messages("bob@example.test", total, timeout=60)) == total


def test_sigterm_stops_cleanly(mailhost):
    mailhost.stop("queued")
    assert mailhost.wait_for_log(r"estafeta/queued\[\d+\]: stopped")


def test_delay_warning_sent_once(make_mailhost):
    host = make_mailhost(delay_warning_time="1s", **FAST_RETRY)
    send_smtp(host, "alice@example.test", ["someone@remote.example"], message("slow"))
    match = host.wait_for_log(r"([0-9A-F]+): sender delay notification: ([0-9A-F]+)")
    assert match
    queue_id = match.group(1)

    assert len(host.wait_for_messages("alice@example.test", 1)) == 1
    reports = bounces_in(host, "alice@example.test")
    assert len(reports) == 1
    assert reports[0]["Subject"] == "Delayed Mail (still being retried)"
    rcpt = delivery_status(reports[0])[1]
    assert rcpt["final-recipient"] == "rfc822; someone@remote.example"
    assert rcpt["action"] == "delayed"
    assert rcpt["status"].startswith("4.")
    assert "will-retry-until" in rcpt

    # Later attempts keep the message queued and send no second warning.
    attempts = len(re.findall(queue_id + r": to=<someone@remote.example>", host.log()))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(re.findall(
            queue_id + r": to=<someone@remote.example>", host.log())) < attempts + 2:
        time.sleep(0.2)
    assert len(re.findall(queue_id + r": to=<someone@remote.example>", host.log())) >= attempts + 2
    assert len(re.findall(queue_id + r": sender delay notification", host.log())) == 1
    assert queue_id in queued_ids(host)
