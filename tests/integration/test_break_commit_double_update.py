"""Two updates of one message in one commit round: found in review.

Each FLUSH starts a new attempt on a deferred message at once, and with
deliverd down the attempt ends deferred, so the updates of one message
can pile up while the commit thread runs a barrier. When one round took
several of them, they all wrote the same tmp/ID; the first exchange put
the newest text into deferred/ID, and every later job found tmp/ID gone
and logged "envelope update failed", although deferred/ID held the
newest envelope. A round now takes one job per message.
"""

import re
import time

from test_queue_deferred_dir import defer_local, listed
from test_queue_ipc import QueueClient

FLUSHES = 30


def test_repeated_flush_reports_no_failure(make_mailhost):
    """Updates of one message that share a round are not reported as failed."""
    # The default backoff keeps the queue run from starting attempts of
    # its own, so the listing and the envelope can be compared at rest.
    host = make_mailhost()
    queue_id = defer_local(host)
    client = QueueClient(host.settings["queued_socket"])
    try:
        for _ in range(FLUSHES):
            msg_type, fields, _ = client.request("FLUSH")
            assert msg_type == "OK", fields
    finally:
        client.close()
    time.sleep(1)

    attempts = listed(host)[queue_id]
    envelope = (host.dir / "spool" / "deferred" / queue_id).read_text()
    assert "\nattempts=%s\n" % attempts in envelope
    assert re.search(queue_id + r": envelope update failed", host.log()) is None
