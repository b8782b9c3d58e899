"""Recovery after a power loss while a spare file is reused: found in review.

An envelope update swaps tmp/ID with deferred/ID (RENAME_EXCHANGE) after
the round's barrier. The old envelope file used to go to spare/ at once,
and the next round could write another message's envelope into it
before its own syncfs. A power loss during that syncfs could keep the
exchange off the disk while the other message's bytes were on it.
deferred/X then named a file with Y's envelope, or with the text of a
message that took the file as its data file, and tmp/X contained X's
new envelope. The old file is now held until the next barrier, and recovery
ignores a copy whose id differs from its name. These tests make that
state by hand and start queued on it.
"""

import time

from test_queue_deferred_dir import listed
from test_queue_ipc import message
from test_queue_recovery import FAST_RETRY, deferred_message, host_wait, set_field, with_crc

OLD_FORMAT_ID = "0000000000000AC0"


def test_foreign_envelope_in_deferred(make_mailhost):
    """Another message's update in deferred/ID makes recovery drop ID's newer envelope."""
    host = make_mailhost(**FAST_RETRY)
    lost_id = deferred_message(host, ["bob@example.test"])
    other_id = deferred_message(host, ["demo@example.test"])
    host.stop("queued")
    spool = host.dir / "spool"
    lost_text = (spool / "deferred" / lost_id).read_bytes()
    other_text = (spool / "deferred" / other_id).read_bytes()
    # Both messages were deferred equally often, so their next updates
    # have the same seq. X's update is complete in tmp/, and Y's update
    # fills X's old file, which deferred/X still names.
    (spool / "tmp" / lost_id).write_bytes(with_crc(set_field(lost_text, b"seq", b"2")))
    (spool / "deferred" / lost_id).write_bytes(with_crc(set_field(other_text, b"seq", b"2")))

    host.start("queued")
    assert lost_id in listed(host)
    assert not (spool / "corrupt" / lost_id).exists()
    host.start("deliverd")
    assert host.run("estafeta", "queue", "flush").returncode == 0
    assert len(host.wait_for_messages("demo@example.test", 1)) == 1
    assert len(host.wait_for_messages("bob@example.test", 1)) == 1


def old_format_envelope(queue_id, size):
    """An envelope as the version before data_crc, seq and crc wrote it."""
    return ("version=1\nid=%s\narrival=%d.000000\nsize=%d\nsender=alice@example.test\n"
            "attempts=0\nnext_attempt=0\nprotocol=LOCAL\nrcpt=bob@example.test\n"
            "status=pending\nend=1\n" % (queue_id, int(time.time()), size)).encode()


def test_unreadable_copy_of_old_format_update(make_mailhost):
    """An update of a pre-crc envelope in tmp/ is dropped when deferred/ID is unreadable."""
    host = make_mailhost(**FAST_RETRY)
    host.stop("deliverd")
    host.stop("queued")
    spool = host.dir / "spool"
    data = message("old format", body="Queued by the previous version.\n")
    (spool / "data" / OLD_FORMAT_ID).write_bytes(data)
    (spool / "queue" / OLD_FORMAT_ID).write_bytes(old_format_envelope(OLD_FORMAT_ID, len(data)))

    # The first failed attempt moves the message to deferred/, and the
    # second swaps in a new envelope there, as in the crash below.
    host.start("queued")
    envelope = spool / "deferred" / OLD_FORMAT_ID
    assert host_wait(lambda: envelope.exists() and b"\nseq=1\n" in envelope.read_bytes())
    assert host.run("estafeta", "queue", "flush").returncode == 0
    assert host_wait(lambda: envelope.exists() and b"\nseq=2\n" in envelope.read_bytes())
    host.stop("queued")
    update = envelope.read_bytes()
    assert b"\ndata_crc=" not in update

    # The old envelope file became the data file of a new message.
    (spool / "tmp" / OLD_FORMAT_ID).write_bytes(update)
    envelope.write_bytes(message("a later message", body="Written into a reused file.\n"))

    host.start("queued")
    assert OLD_FORMAT_ID in listed(host)
    host.start("deliverd")
    assert host.run("estafeta", "queue", "flush").returncode == 0
    found = host.wait_for_messages("bob@example.test", 1)
    assert len(found) == 1
    assert b"Queued by the previous version." in found[0]
