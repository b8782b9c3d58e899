"""Recovery keeps the data file of an envelope it cannot move: found in review.

When the rename of a tmp/ envelope into deferred/ or queue/ fails
(ENOSPC when the directory needs a new block on a full file system,
EIO, EPERM), recovery leaves the envelope in tmp/. place_data_files
used to find the data file without an envelope in queue/ or deferred/
and remove it as uncommitted, and the next start then dropped the
envelope too. Here an immutable flag on tmp/ID makes the rename fail.
"""

import os
import subprocess

import pytest

from test_queue_deferred_dir import listed
from test_queue_recovery import FAST_RETRY, deferred_message


def set_immutable(path, on):
    """Set or clear the immutable attribute of PATH with chattr(1)."""
    flag = "+i" if on else "-i"
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs CAP_LINUX_IMMUTABLE")
def test_stuck_tmp_envelope_keeps_data(make_mailhost):
    """A tmp/ envelope that recovery cannot move keeps its data file."""
    host = make_mailhost(**FAST_RETRY)
    queue_id = deferred_message(host, ["bob@example.test"])
    host.stop("queued")
    spool = host.dir / "spool"
    stranded = spool / "tmp" / queue_id
    data = spool / "deferred-data" / queue_id
    (spool / "deferred" / queue_id).rename(stranded)
    if not set_immutable(stranded, True):
        pytest.skip("the file system of %s has no immutable attribute" % spool)
    try:
        host.start("queued")
        assert host.wait_for_log(queue_id + r": could not move the envelope out of tmp/")
        host.stop("queued")
        assert data.exists()
    finally:
        set_immutable(stranded, False)

    host.start("queued")
    assert queue_id in listed(host)
    host.start("deliverd")
    assert host.run("estafeta", "queue", "flush").returncode == 0
    assert len(host.wait_for_messages("bob@example.test", 1)) == 1
