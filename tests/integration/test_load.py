"""Load and crash safety with Postfix's smtp-source as the client.

smtp-source runs with -v so that every "queued as ID" reply is recorded:
those are the messages the server promised to deliver, and each must
reach the mailbox, found by the queue id in its Received: field.
"""

import random
import re
import shutil
import subprocess
import threading
import time
from collections import Counter

import pytest

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")
RECEIVED_ID = re.compile(rb"^Received:.*?\bid ([0-9A-Za-z]+)", re.M | re.S)

pytestmark = pytest.mark.skipif(not shutil.which(SMTP_SOURCE), reason="smtp-source (package postfix) is not installed")

FAST_RETRY = {
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "2s",
    "queue_run_delay": "1s",
}


def run_smtp_source(host, count, sessions):
    """Start smtp-source; returns the Popen (stdout: the -v dialogue)."""
    command = [
        SMTP_SOURCE, "-v", "-A", "-d", "-s", str(sessions), "-m", str(count), "-l", "4096",
        "-M", "client.example.test", "-f", "load@client.example.test",
        "-t", "demo@example.test", "-S", "load test",
        "127.0.0.1:%d" % host.smtp_port,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def accepted_ids(output):
    return QUEUED_AS.findall(output.decode("utf-8", "replace"))


def delivered_ids(host):
    ids = []
    for data in host.messages("demo@example.test"):
        # The first Received: field is ours (smtpd writes it first).
        header = data.split(b"\n\n", 1)[0]
        match = RECEIVED_ID.search(header)
        ids.append(match.group(1).decode() if match else None)
    return ids


def wait_for_ids(host, wanted, timeout):
    deadline = time.monotonic() + timeout
    while True:
        have = set(delivered_ids(host))
        missing = set(wanted) - have
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


@pytest.mark.slow
def test_load_delivered_exactly_once(make_mailhost):
    host = make_mailhost(**FAST_RETRY)

    proc = run_smtp_source(host, count=2000, sessions=20)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-2000:]

    ids = accepted_ids(output)
    assert len(ids) == 2000
    assert len(set(ids)) == 2000

    missing = wait_for_ids(host, ids, timeout=180)
    assert not missing, "%d accepted messages not delivered" % len(missing)

    counts = Counter(delivered_ids(host))
    duplicates = {qid: n for qid, n in counts.items() if n > 1}
    assert duplicates == {}
    assert sum(counts.values()) == 2000


@pytest.mark.slow
def test_load_survives_kill9(make_mailhost):
    host = make_mailhost(**FAST_RETRY)

    # Kill queued and deliverd, each twice, at random moments while the
    # load runs, and restart each one at once, as systemd would. A batch
    # of 2000 messages can finish within a second, so further batches
    # (at most four) keep the load going until every kill has happened.
    rng = random.Random()
    kills = ["queued", "deliverd", "queued", "deliverd"]
    rng.shuffle(kills)
    done = []

    def killer():
        for name in kills:
            time.sleep(rng.uniform(0.05, 0.2))
            host.kill(name)
            time.sleep(rng.uniform(0.0, 0.1))
            host.start(name)
            done.append(name)

    thread = threading.Thread(target=killer)
    thread.start()
    ids = []
    for batch in range(4):
        proc = run_smtp_source(host, count=2000, sessions=20)
        output, _ = proc.communicate(timeout=300)
        ids += accepted_ids(output)
        if not thread.is_alive():
            break
    thread.join(timeout=60)
    assert sorted(done) == sorted(kills), "the load finished before the kills: %s" % done
    assert len(ids) > 0

    missing = wait_for_ids(host, ids, timeout=240)
    delivered = delivered_ids(host)
    duplicates = sum(n - 1 for n in Counter(delivered).values() if n > 1)
    print("accepted %d, delivered %d files, duplicates %d, kills %s"
          % (len(ids), len(delivered), duplicates, done))
    assert not missing, "accepted but lost: %s" % sorted(missing)[:20]


def test_first_deliveries_create_home_once(mailhost):
    """Concurrent first deliveries to a user whose home does not exist
    yet all succeed at the first attempt: no worker finds the new home
    before it belongs to the user."""
    proc = subprocess.run(
        [SMTP_SOURCE, "-s", "20", "-m", "60", "-l", "512", "-M", "client.example.test",
         "-f", "load@client.example.test", "-t", "alice@example.test",
         "127.0.0.1:%d" % mailhost.smtp_port],
        capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    delivered = mailhost.wait_for_messages("alice@example.test", 60, timeout=30)
    assert len(delivered) == 60
    assert "status=deferred" not in mailhost.log()
