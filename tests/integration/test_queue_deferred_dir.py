"""The deferred queue: after its first attempt ends deferred, a message's
envelope and data file live in spool/deferred/ and spool/deferred-data/,
apart from the queue/ and data/ directories that new messages use.

Local recipients are deferred by stopping deliverd, remote ones by
leaving outbound delivery off. Recovery tests stop queued and make by
hand each state that a crash during the move can leave.
"""

import email
import email.policy
import os
import re
import shutil
import time

import pytest

from test_queue_ipc import QueueClient, message

FAST_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "1s",
              "queue_run_delay": "1s"}

SPOOL_DIRS = ("queue", "data", "deferred", "deferred-data")
DEFERRED = ["deferred", "deferred-data"]
REMOTE = "someone@remote.example"
ORPHAN_ID = "0000000000000ABC"
CORRUPT_ID = "0000000000000ABE"


def submit(host, rcpt, subject, body="Hello.\n", extra=()):
    client = QueueClient(host.settings["queued_socket"])
    try:
        msg_type, reply, queue_id = client.submit(
            "alice@example.test", [rcpt], message(subject, body=body, to=rcpt), extra=extra)
    finally:
        client.close()
    assert msg_type == "COMMIT-OK", reply
    return queue_id


def listed(host):
    """The queue ids and attempt counts in queued's listing."""
    client = QueueClient(host.settings["queued_socket"])
    try:
        return {dict(entry)["id"]: dict(entry)["attempts"] for entry in client.list()}
    finally:
        client.close()


def spool_dirs_of(host, queue_id):
    """The directories among SPOOL_DIRS that have a file named QUEUE_ID."""
    spool = host.dir / "spool"
    return [name for name in SPOOL_DIRS if (spool / name / queue_id).exists()]


def wait_for_dirs(host, queue_id, expected, timeout=10):
    """Wait until QUEUE_ID's files are in EXPECTED, and return where they are."""
    deadline = time.monotonic() + timeout
    while True:
        found = spool_dirs_of(host, queue_id)
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def wait_for_count(path, count, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        found = len(list(path.iterdir()))
        if found == count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def defer_local(host, subject="deferred", body="Kept for later.\n"):
    """Submit a message to bob while deliverd is down and wait until it
    has moved to the deferred directories. Returns its queue id."""
    host.stop("deliverd")
    queue_id = submit(host, "bob@example.test", subject, body=body)
    assert host.wait_for_log(queue_id + r": to=<bob@example.test>.*status=deferred")
    assert wait_for_dirs(host, queue_id, DEFERRED) == DEFERRED
    return queue_id


def deliver_once(host, queue_id, body=b"Kept for later."):
    """Start deliverd, flush, and check that bob got QUEUE_ID's message
    exactly once and that its files are gone from the spool."""
    host.start("deliverd")
    assert host.run("estafeta", "queue", "flush").returncode == 0
    found = host.wait_for_messages("bob@example.test", 1)
    assert len(found) == 1
    assert body in found[0]
    assert host.wait_for_log(queue_id + r": removed\n")
    assert wait_for_dirs(host, queue_id, []) == []
    time.sleep(1)
    assert len(host.messages("bob@example.test")) == 1
    assert host.messages("alice@example.test") == []


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


# The move

@pytest.mark.parametrize("method", ["syncfs", "fsync"])
def test_deferral_moves_files(make_mailhost, method):
    host = make_mailhost(queue_sync_method=method)
    queue_id = defer_local(host, body="Moved once.\n")

    spool = host.dir / "spool"
    envelope = (spool / "deferred" / queue_id).read_text().splitlines()
    assert "id=" + queue_id in envelope
    assert "attempts=1" in envelope
    assert "status=deferred" in envelope
    assert b"Moved once." in (spool / "deferred-data" / queue_id).read_bytes()
    assert list((spool / "queue").iterdir()) == []
    assert list((spool / "data").iterdir()) == []


def test_later_attempts_stay_deferred(make_mailhost):
    host = make_mailhost(**FAST_RETRY)
    queue_id = defer_local(host)
    envelope = host.dir / "spool" / "deferred" / queue_id

    deadline = time.monotonic() + 15
    while "\nattempts=3\n" not in envelope.read_text() and time.monotonic() < deadline:
        assert spool_dirs_of(host, queue_id) == DEFERRED
        time.sleep(0.05)
    assert "\nattempts=3\n" in envelope.read_text()
    assert spool_dirs_of(host, queue_id) == DEFERRED
    deliver_once(host, queue_id)


# Restarts and the admin command

@pytest.mark.parametrize("how", ["stop", "kill"])
def test_deferred_survives_restart(mailhost, how):
    queue_id = defer_local(mailhost)
    if how == "stop":
        mailhost.stop("queued")
    else:
        mailhost.kill("queued")
    mailhost.start("queued")

    assert spool_dirs_of(mailhost, queue_id) == DEFERRED
    listing = mailhost.run("estafeta", "queue", "list")
    assert listing.returncode == 0, listing.stderr
    assert queue_id in listing.stdout.decode()
    show = mailhost.run("estafeta", "queue", "show", queue_id)
    assert show.returncode == 0, show.stderr
    assert show.stdout.decode().endswith("Kept for later.\n")
    deliver_once(mailhost, queue_id)


def test_flush_one_deferred_message(mailhost):
    queue_id = defer_local(mailhost)
    mailhost.start("deliverd")

    result = mailhost.run("estafeta", "queue", "flush", queue_id)
    assert result.returncode == 0, result.stderr
    assert len(mailhost.wait_for_messages("bob@example.test", 1)) == 1
    assert mailhost.wait_for_log(queue_id + r": removed\n")
    assert wait_for_dirs(mailhost, queue_id, []) == []


def test_delete_deferred_message(mailhost):
    queue_id = defer_local(mailhost)

    result = mailhost.run("estafeta", "queue", "delete", queue_id)
    assert result.returncode == 0, result.stderr
    assert mailhost.wait_for_log(queue_id + r": removed\n")
    assert wait_for_dirs(mailhost, queue_id, []) == []
    assert queue_id not in listed(mailhost)

    mailhost.start("deliverd")
    assert mailhost.run("estafeta", "queue", "flush").returncode == 0
    time.sleep(1)
    assert mailhost.messages("bob@example.test") == []


def test_flush_while_still_failing(mailhost):
    queue_id = defer_local(mailhost)

    assert mailhost.run("estafeta", "queue", "flush", queue_id).returncode == 0
    envelope = mailhost.dir / "spool" / "deferred" / queue_id
    deadline = time.monotonic() + 10
    while "\nattempts=2\n" not in envelope.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "\nattempts=2\n" in envelope.read_text()
    assert spool_dirs_of(mailhost, queue_id) == DEFERRED
    assert listed(mailhost)[queue_id] == "2"


@pytest.mark.parametrize("blocked", ["deferred-data", "deferred"])
@pytest.mark.parametrize("then", ["retry", "delete"])
def test_failed_move_keeps_message(make_mailhost, blocked, then):
    if os.geteuid() != 0:
        pytest.skip("needs root, so that queued runs as the queue user")
    host = make_mailhost()
    host.stop("deliverd")
    target = host.dir / "spool" / blocked
    # Without write permission on the target the move's rename fails for
    # the queue user, as it would on a full or failing disk.
    target.chmod(0o500)
    try:
        queue_id = submit(host, "bob@example.test", "blocked", body="Kept for later.\n")
        assert host.wait_for_log(queue_id + r": envelope update failed: Permission denied")
        assert spool_dirs_of(host, queue_id) == ["queue", "data"]
        show = host.run("estafeta", "queue", "show", queue_id)
        assert show.returncode == 0, show.stderr
        assert show.stdout.decode().endswith("Kept for later.\n")
        if then == "delete":
            assert host.run("estafeta", "queue", "delete", queue_id).returncode == 0
            assert host.wait_for_log(queue_id + r": removed\n")
            assert wait_for_dirs(host, queue_id, []) == []
            return
    finally:
        target.chmod(0o700)

    # The next attempt, deferred again, moves the message.
    assert host.run("estafeta", "queue", "flush", queue_id).returncode == 0
    assert wait_for_dirs(host, queue_id, DEFERRED) == DEFERRED
    deliver_once(host, queue_id)


# Expiry

@pytest.mark.parametrize("ret", ["FULL", "HDRS"])
def test_expired_deferred_message_bounces(make_mailhost, ret):
    host = make_mailhost(maximal_queue_lifetime="3s", **FAST_RETRY)
    queue_id = submit(host, REMOTE, "too late", body="Quoted from deferred-data.\n",
                      extra=[("ret", ret)])
    assert wait_for_dirs(host, queue_id, DEFERRED) == DEFERRED
    assert host.wait_for_log(queue_id + r": from=<alice@example.test>, status=expired",
                             timeout=15)

    found = host.wait_for_messages("alice@example.test", 1)
    assert len(found) == 1
    report = parse(found[0])
    assert report.get_content_type() == "multipart/report"
    if ret == "FULL":
        parts = [p for p in report.walk() if p.get_content_type() == "message/rfc822"]
        assert len(parts) == 1
        assert b"Quoted from deferred-data." in parts[0].as_bytes()
    else:
        parts = [p for p in report.walk() if p.get_content_type() == "text/rfc822-headers"]
        assert len(parts) == 1
        assert b"Subject: too late" in parts[0].get_payload(decode=True)
    assert host.wait_for_log(queue_id + r": removed\n")
    assert wait_for_dirs(host, queue_id, []) == []


# Recovery from the states a crash during the move can leave

def stopped_with_deferred(mailhost):
    """Defer a message to bob, then stop queued. Returns the queue id
    and the spool path."""
    queue_id = defer_local(mailhost)
    mailhost.stop("queued")
    return queue_id, mailhost.dir / "spool"


def test_recovery_envelope_in_both(mailhost):
    queue_id, spool = stopped_with_deferred(mailhost)
    newer = (spool / "deferred" / queue_id).read_text()
    assert "\nattempts=1\n" in newer
    older = newer.replace("\nattempts=1\n", "\nattempts=0\n")
    (spool / "queue" / queue_id).write_text(older)

    mailhost.start("queued")
    assert mailhost.wait_for_log(queue_id + r": envelope in both queue/ and deferred/")
    assert spool_dirs_of(mailhost, queue_id) == DEFERRED
    assert listed(mailhost) == {queue_id: "1"}
    deliver_once(mailhost, queue_id)


@pytest.mark.parametrize("envelope_dir, data_dir, expected", [
    # Cut after the data file moved, before the new envelope did.
    ("queue", "deferred-data", ["queue", "data"]),
    # The envelope's rename reached the disk, the data file's did not.
    ("deferred", "data", DEFERRED),
])
def test_recovery_data_in_other_dir(mailhost, envelope_dir, data_dir, expected):
    queue_id, spool = stopped_with_deferred(mailhost)
    shutil.move(spool / "deferred" / queue_id, spool / envelope_dir / queue_id)
    shutil.move(spool / "deferred-data" / queue_id, spool / data_dir / queue_id)

    mailhost.start("queued")
    assert mailhost.wait_for_log(
        queue_id + r": data file in %s/ but envelope in %s/" % (data_dir, envelope_dir))
    assert spool_dirs_of(mailhost, queue_id) == expected
    assert list(listed(mailhost)) == [queue_id]
    deliver_once(mailhost, queue_id)


def test_recovery_data_in_both(mailhost):
    queue_id, spool = stopped_with_deferred(mailhost)
    shutil.copy(spool / "deferred-data" / queue_id, spool / "data" / queue_id)

    mailhost.start("queued")
    assert mailhost.wait_for_log(queue_id + r": data file in both data/ and deferred-data/")
    assert spool_dirs_of(mailhost, queue_id) == DEFERRED
    assert list(listed(mailhost)) == [queue_id]
    deliver_once(mailhost, queue_id)


def test_recovery_removes_orphan_deferred_data(mailhost):
    mailhost.stop("queued")
    orphan = mailhost.dir / "spool" / "deferred-data" / ORPHAN_ID
    orphan.write_bytes(b"Subject: orphan\n\nno envelope was ever written\n")

    mailhost.start("queued")
    assert mailhost.wait_for_log(ORPHAN_ID + r": removed uncommitted data file")
    assert not orphan.exists()
    assert listed(mailhost) == {}
    for user in ("alice", "bob", "demo"):
        assert mailhost.messages(user + "@example.test") == []


def test_recovery_corrupt_deferred_envelope(mailhost):
    mailhost.stop("queued")
    spool = mailhost.dir / "spool"
    (spool / "deferred-data" / CORRUPT_ID).write_bytes(b"Subject: x\n\n")
    (spool / "deferred" / CORRUPT_ID).write_bytes(b"version=1\nid=%s\n" % CORRUPT_ID.encode())

    mailhost.start("queued")
    assert mailhost.wait_for_log(CORRUPT_ID + r": unreadable envelope \(truncated.*\) in deferred/")
    assert (spool / "corrupt" / CORRUPT_ID).exists()
    assert not (spool / "deferred" / CORRUPT_ID).exists()
    assert listed(mailhost) == {}


# New mail beside a deferred queue

def test_fresh_mail_beside_deferred(mailhost):
    deferred_ids = [submit(mailhost, REMOTE, "waiting %d" % i) for i in range(30)]
    spool = mailhost.dir / "spool"
    assert wait_for_count(spool / "deferred", 30) == 30
    assert wait_for_count(spool / "deferred-data", 30) == 30

    fresh_ids = [submit(mailhost, "bob@example.test", "fresh %d" % i) for i in range(10)]
    assert len(mailhost.wait_for_messages("bob@example.test", 10)) == 10
    for queue_id in fresh_ids:
        assert mailhost.wait_for_log(queue_id + r": removed\n")
    assert wait_for_count(spool / "queue", 0) == 0
    assert wait_for_count(spool / "data", 0) == 0
    assert sorted(p.name for p in (spool / "deferred").iterdir()) == sorted(deferred_ids)
    assert sorted(p.name for p in (spool / "deferred-data").iterdir()) == sorted(deferred_ids)
    log = mailhost.log()
    for queue_id in fresh_ids:
        assert not re.search(queue_id + r": .*status=deferred", log)
