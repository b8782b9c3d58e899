"""deliverd's mailbox workers: long-lived delivery processes per mailbox
owner that serve many Maildir deliveries and share barriers, with the
one-shot workers as fallback."""

import os
import re
import signal
import smtplib
import threading
import time

from test_deliverd_lmtp import transaction


def delivering_pids(host, address):
    """The process ids in the Maildir file names (the P part)."""
    pids = []
    for folder in ("new", "cur"):
        for path in (host.maildir(address) / folder).iterdir():
            match = re.search(r"\.M\d+P(\d+)Q", path.name)
            assert match, path.name
            pids.append(int(match.group(1)))
    return pids


def deliver(host, address, count):
    for _ in range(count):
        rcpt_replies, data_replies, client = transaction(host, [address])
        assert data_replies[0][0] == 250, data_replies
        client.quit()


def test_one_process_serves_many_deliveries(mailhost):
    # The first delivery creates the home directory, which needs root, so
    # a one-shot worker makes it; the others go to one mailbox worker.
    deliver(mailhost, "demo@example.test", 6)
    pids = delivering_pids(mailhost, "demo@example.test")
    assert len(pids) == 6
    worker = max(set(pids), key=pids.count)
    assert pids.count(worker) >= 5
    assert os.path.exists("/proc/%d" % worker)


def test_users_of_one_uid_share_a_worker(mailhost):
    for address in ("alice@example.test", "bob@example.test"):
        deliver(mailhost, address, 1)
    deliver(mailhost, "alice@example.test", 2)
    deliver(mailhost, "bob@example.test", 2)
    alice = delivering_pids(mailhost, "alice@example.test")
    bob = delivering_pids(mailhost, "bob@example.test")
    # Beyond the first delivery of each (home creation), one process.
    assert set(alice) & set(bob)


def test_killed_worker_is_replaced(mailhost):
    deliver(mailhost, "demo@example.test", 3)
    worker = delivering_pids(mailhost, "demo@example.test")
    worker = max(set(worker), key=worker.count)
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/status" % worker) as status:
                if "State:\tZ" in status.read():
                    break
        except (FileNotFoundError, ProcessLookupError):
            break  # already reaped
        time.sleep(0.02)

    deliver(mailhost, "demo@example.test", 2)
    pids = delivering_pids(mailhost, "demo@example.test")
    assert len(pids) == 5
    assert pids.count(worker) == 2
    assert mailhost.wait_for_log(r"mailbox worker %d \(uid \d+\) killed by signal 9" % worker)


def test_concurrent_deliveries_share_barriers(make_mailhost):
    host = make_mailhost()
    deliver(host, "demo@example.test", 1)
    errors = []

    def sender():
        try:
            deliver(host, "demo@example.test", 10)
        except (AssertionError, smtplib.SMTPException, OSError) as error:
            errors.append(error)

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(host.messages("demo@example.test")) == 81
    assert len(list((host.maildir("demo@example.test") / "tmp").iterdir())) == 0


def test_fsync_method_delivers(make_mailhost):
    host = make_mailhost(maildir_sync_method="fsync")
    deliver(host, "demo@example.test", 3)
    assert len(host.messages("demo@example.test")) == 3


def test_missing_home_goes_to_a_one_shot_worker(mailhost):
    deliver(mailhost, "demo@example.test", 2)
    home = mailhost.dir / "mail" / "demo"
    os.rename(home, str(home) + ".moved")

    deliver(mailhost, "demo@example.test", 1)
    created = re.findall(r"created home directory .*/mail/demo for uid", mailhost.log())
    assert len(created) == 2
    assert len(mailhost.messages("demo@example.test")) == 1
