"""queued's recovery of envelopes left in tmp/ by a crash.

A commit is acknowledged once its envelope is complete on disk in tmp/,
before the rename into queue/ or deferred/ (queued/commit.h). These
tests stop queued, arrange the spool as a crash between those two steps
can leave it, and start queued again. An envelope whose checksums match
is moved into place and delivered, anything else in tmp/ is removed, and
of two copies of one envelope the one with the higher seq wins.
"""

import os
import re
import time
import zlib

from test_queue_ipc import QueueClient, message

FAST_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "1s",
              "queue_run_delay": "1s"}


def deferred_message(host, rcpts):
    """Commit one message for RCPTS while deliverd is down; wait until
    its first attempt is written back (seq=1). Returns its queue id."""
    host.stop("deliverd")
    client = QueueClient(host.settings["queued_socket"])
    try:
        msg_type, _, queue_id = client.submit("alice@example.test", rcpts,
                                              message("recovered", body="Kept across the crash.\n"))
    finally:
        client.close()
    assert msg_type == "COMMIT-OK"
    assert host.wait_for_log(queue_id + r": to=<%s>.*status=deferred" % re.escape(rcpts[-1]))
    envelope = host.dir / "spool" / "deferred" / queue_id
    assert host_wait(lambda: envelope.exists() and b"\nseq=1\n" in envelope.read_bytes())
    return queue_id


def stopped_with_deferred(make_mailhost, rcpts=("bob@example.test",)):
    """A host with one deferred message for RCPTS and queued stopped.
    Returns (host, its spool directory, the queue id)."""
    host = make_mailhost(**FAST_RETRY)
    queue_id = deferred_message(host, list(rcpts))
    host.stop("queued")
    return host, host.dir / "spool", queue_id


def host_wait(predicate, tries=100):
    for _ in range(tries):
        if predicate():
            return True
        time.sleep(0.05)
    return False


def with_crc(text):
    """TEXT (an envelope) with its crc line recomputed, as after an edit."""
    head = text[:text.index(b"\ncrc=") + 1]
    return head + b"crc=%08X\nend=1\n" % (zlib.crc32(head) & 0xFFFFFFFF)


def set_field(text, key, value):
    return re.sub(rb"(?m)^%s=.*$" % key, b"%s=%s" % (key, value), text, count=1)


def test_envelope_only_in_tmp_is_recovered_and_delivered(make_mailhost):
    host, spool, queue_id = stopped_with_deferred(make_mailhost)
    (spool / "deferred" / queue_id).rename(spool / "tmp" / queue_id)

    host.start("queued")
    assert host.wait_for_log(queue_id + r": recovered committed envelope from tmp/")
    assert (spool / "deferred" / queue_id).exists()
    assert not (spool / "tmp" / queue_id).exists()
    host.start("deliverd")
    found = host.wait_for_messages("bob@example.test", 1)
    assert b"Kept across the crash." in found[0]


def test_envelope_in_tmp_with_altered_data_is_removed(make_mailhost):
    host, spool, queue_id = stopped_with_deferred(make_mailhost)
    (spool / "deferred" / queue_id).rename(spool / "tmp" / queue_id)
    data = spool / "deferred-data" / queue_id
    data.write_bytes(data.read_bytes().replace(b"Kept", b"Lost"))

    host.start("queued")
    assert host.wait_for_log(queue_id + r": removed envelope file whose data file is incomplete")
    assert host.wait_for_log(queue_id + r": removed uncommitted data file")
    assert not data.exists()
    host.start("deliverd")
    client = QueueClient(host.settings["queued_socket"])
    try:
        assert all(dict(entry)["id"] != queue_id for entry in client.list())
    finally:
        client.close()
    assert host.messages("bob@example.test") == []


def test_envelope_in_tmp_with_bad_checksum_is_removed(make_mailhost):
    host, spool, queue_id = stopped_with_deferred(make_mailhost)
    text = (spool / "deferred" / queue_id).read_bytes()
    (spool / "deferred" / queue_id).unlink()
    # One recipient changed, the crc line left as it was: a torn write.
    (spool / "tmp" / queue_id).write_bytes(text.replace(b"rcpt=bob@", b"rcpt=eve@"))

    host.start("queued")
    assert host.wait_for_log(queue_id + r": removed unfinished envelope file")
    assert not (spool / "tmp" / queue_id).exists()
    assert not (spool / "deferred" / queue_id).exists()


def test_older_copy_in_tmp_loses(make_mailhost):
    host, spool, queue_id = stopped_with_deferred(make_mailhost)
    text = (spool / "deferred" / queue_id).read_bytes()
    older = set_field(text, b"status", b"sent")
    (spool / "tmp" / queue_id).write_bytes(with_crc(set_field(older, b"seq", b"0")))

    host.start("queued")
    assert host.wait_for_log(queue_id + r": removed envelope file older than the committed one")
    host.start("deliverd")
    assert len(host.wait_for_messages("bob@example.test", 1)) == 1


def test_newer_copy_in_tmp_replaces_the_committed_one(make_mailhost):
    host, spool, queue_id = stopped_with_deferred(make_mailhost,
                                                  ("bob@example.test", "demo@example.test"))
    text = (spool / "deferred" / queue_id).read_bytes()
    # In the newer copy bob has the message already; only demo is left.
    newer = set_field(set_field(text, b"status", b"sent"), b"seq", b"2")
    (spool / "tmp" / queue_id).write_bytes(with_crc(newer))

    host.start("queued")
    assert host.wait_for_log(queue_id + r": recovered envelope update from tmp/")
    host.start("deliverd")
    assert len(host.wait_for_messages("demo@example.test", 1)) == 1
    assert host.wait_for_log(queue_id + r": removed")
    assert host.messages("bob@example.test") == []


def envelope_as_committed(spool, queue_id):
    """Take QUEUE_ID's envelope out of queue/ or deferred/ as it was at its
    commit (seq=0, not yet tried), with its data file back in data/."""
    if (spool / "deferred" / queue_id).exists():
        # Its first attempt ran already: undo what it changed.
        text = (spool / "deferred" / queue_id).read_bytes()
        (spool / "deferred" / queue_id).unlink()
        (spool / "deferred-data" / queue_id).rename(spool / "data" / queue_id)
        text = set_field(set_field(set_field(text, b"seq", b"0"), b"attempts", b"0"),
                         b"status", b"pending")
    else:
        text = (spool / "queue" / queue_id).read_bytes()
        (spool / "queue" / queue_id).unlink()
    assert b"\nseq=0\n" in text
    return text


def assert_recovered_and_delivered(host, queue_id, text):
    """Start queued and deliverd; QUEUE_ID comes out of tmp/ and reaches
    bob with TEXT in it."""
    host.start("queued")
    assert host.wait_for_log(queue_id + r": recovered committed envelope from tmp/")
    host.start("deliverd")
    found = host.wait_for_messages("bob@example.test", 1)
    assert text in found[0]


def test_new_message_in_tmp_recovered(make_mailhost):
    # A commit whose rename into queue/ was lost: seq=0, data in data/.
    host = make_mailhost(**FAST_RETRY)
    host.stop("deliverd")
    client = QueueClient(host.settings["queued_socket"])
    try:
        msg_type, _, queue_id = client.submit("alice@example.test", ["bob@example.test"],
                                              message("fresh", body="Never tried yet.\n"))
    finally:
        client.close()
    assert msg_type == "COMMIT-OK"
    host.kill("queued")
    spool = host.dir / "spool"
    (spool / "tmp" / queue_id).write_bytes(with_crc(envelope_as_committed(spool, queue_id)))

    assert_recovered_and_delivered(host, queue_id, b"Never tried yet.")


def large_message_in_tmp(host):
    """Send a message of 300 KB over SMTP, then leave its envelope in tmp/
    as a lost rename would. Returns its queue id."""
    host.stop("deliverd")
    body = "".join("line %06d of a large message\n" % i for i in range(10000))
    with host.smtp() as client:
        client.sendmail("alice@example.test", ["bob@example.test"],
                        message("large", body=body).replace(b"\n", b"\r\n"))
    match = host.wait_for_log(r"([0-9A-F]{12,20}): to=<bob@example.test>.*status=deferred")
    queue_id = match.group(1)
    host.stop("queued")
    spool = host.dir / "spool"
    text = envelope_as_committed(spool, queue_id)
    # Too large for a CRC: the data file was synced before the envelope.
    assert b"\ndata_synced=1\n" in text
    assert b"\ndata_crc=" not in text
    (spool / "tmp" / queue_id).write_bytes(with_crc(text))
    return queue_id


def test_large_message_in_tmp_recovered(make_mailhost):
    host = make_mailhost(**FAST_RETRY)
    queue_id = large_message_in_tmp(host)

    assert_recovered_and_delivered(host, queue_id, b"line 009999 of a large message")


def test_large_message_short_data_removed(make_mailhost):
    host = make_mailhost(**FAST_RETRY)
    queue_id = large_message_in_tmp(host)
    data = host.dir / "spool" / "data" / queue_id
    os.truncate(data, data.stat().st_size - 1)

    host.start("queued")
    assert host.wait_for_log(queue_id + r": removed envelope file whose data file is incomplete")
    assert not data.exists()
