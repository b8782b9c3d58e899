"""SIGHUP stops filterd from serving until the slowest running check ends.

chain_reload runs on filterd's main thread and takes the chain's lock
for writing. Each running request keeps that lock for reading for the
whole check, for example a spamd round trip bounded by spamd_timeout.
The lock prefers writers, so once the main thread waits, new requests
wait too, and the main thread accepts and dispatches nothing. One slow
scanner at the time of a reload delays every SMTP client's MAIL FROM by
up to spamd_timeout (30 s by default).

Fixed: the reload runs in a thread of its own and new requests go on
while it waits for the running checks.
"""

import signal
import threading
import time

from scanners import FakePeer

DEMO = "demo@example.test"
SENDER = "sender@example.org"
SPAMD_TIMEOUT = 4


def start_host(make_mailhost, spamd_socket, spamd_timeout=SPAMD_TIMEOUT):
    host = make_mailhost(start=False, mynetworks="198.51.100.0/24", smtpd_filter="yes",
                         filterd_checks="spamassassin", spamd_socket=spamd_socket,
                         spamd_timeout="%ds" % spamd_timeout,
                         filterd_spamassassin_failure_policy="accept")
    host.newaliases()
    host.start()
    host.start("filterd")
    return host


def send_slow_message(host, replies):
    """Send a message that waits for the silent spamd, and append the reply to REPLIES."""
    client = host.smtp()
    try:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(DEMO)
        replies.append(client.data(b"Subject: slow\r\n\r\nWaiting for spamd.\r\n")[0])
    finally:
        client.quit()


def mail_reply_time(host):
    """Return the reply code to MAIL FROM on a new session and the seconds it took."""
    raw = host.raw()
    try:
        assert raw.cmd("EHLO client.example.test")[0] == 250
        started = time.monotonic()
        code = raw.cmd("MAIL FROM:<%s>" % SENDER)[0]
        return code, time.monotonic() - started
    finally:
        raw.close()


def test_reload_leaves_mail_stage_served(make_mailhost):
    peer = FakePeer(reply=None)
    try:
        host = start_host(make_mailhost, peer.socket)
        replies = []
        sender = threading.Thread(target=send_slow_message, args=(host, replies), daemon=True)
        sender.start()
        deadline = time.monotonic() + 3
        while peer.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert peer.connections == 1, host.log()

        host.procs["filterd"].send_signal(signal.SIGHUP)
        time.sleep(0.3)
        code, seconds = mail_reply_time(host)

        sender.join(SPAMD_TIMEOUT + 10)
    finally:
        peer.close()
    assert replies == [250], host.log()
    assert code == 250, host.log()
    assert seconds < 1.5, host.log()
    assert host.wait_for_log(r"reloaded 1 checks")


def test_reload_closes_gate_after_patience(make_mailhost):
    """A reload waits 5 s for the running checks, then new requests wait
    for it, and it runs once the slow check ends."""
    peer = FakePeer(reply=None)
    try:
        host = start_host(make_mailhost, peer.socket, spamd_timeout=7)
        replies = []
        sender = threading.Thread(target=send_slow_message, args=(host, replies), daemon=True)
        sender.start()
        deadline = time.monotonic() + 3
        while peer.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert peer.connections == 1, host.log()

        host.procs["filterd"].send_signal(signal.SIGHUP)
        assert host.wait_for_log(r"reload waits for 1 running checks; new requests wait too")
        assert host.wait_for_log(r"reloaded 1 checks")
        sender.join(10)
    finally:
        peer.close()
    assert replies == [250], host.log()
