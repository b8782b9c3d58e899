"""Failures of deliverd's mailbox worker pool found in review: each test
fails while the bug is there."""

import os
import pwd
import signal
import smtplib
import time

import pytest

from test_deliverd_lmtp import lmtp, send_data
from test_deliverd_pool import deliver, delivering_pids

NOBODY = 65534


def give_bob_own_uid(host):
    """Give bob@example.test uid and gid NOBODY in the passwd-file, and
    his home directory, before the host starts."""
    users = host.dir / "etc" / "passwd-file"
    users.write_text(users.read_text().replace(
        "bob@example.test:{PLAIN}bob-secret::::", "bob@example.test:{PLAIN}bob-secret:%d:%d::"
        % (NOBODY, NOBODY)))
    home = host.dir / "mail" / "bob"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)


def test_redo_at_process_limit_delivers(make_mailhost):
    # With one process slot, the mailbox worker occupies the slot when it
    # hands the first delivery (no home directory yet) back with redo=yes.
    # The request must reach a one-shot worker, not go back to the pool.
    host = make_mailhost(deliverd_max_processes="1")
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=20)
    assert client.ehlo("client.example.test")[0] == 250
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    assert send_data(client, b"Subject: slot\r\n\r\nhello\r\n")[0] == 354

    try:
        code, text = client.getreply()
    except smtplib.SMTPServerDisconnected as error:
        code, text = None, str(error)
    assert code == 250, text
    assert len(host.wait_for_messages("demo@example.test", 1, timeout=5)) == 1
    client.quit()


def test_worker_holds_no_other_users_message(make_mailhost):
    # bob gets his own uid, so his deliveries need a second mailbox worker.
    # The master starts it while demo's requests, each with a duplicate of
    # the message descriptor, still wait in the output queue of demo's
    # worker. The fork must not hand those descriptors to bob's process.
    if os.geteuid() != 0:
        pytest.skip("needs root for a second uid and to read /proc")
    host = make_mailhost(start=False)
    give_bob_own_uid(host)
    host.start()
    deliver(host, "demo@example.test", 2)

    # Let every session send its DELIVER while the master is stopped, so
    # that it reads them in one pass of its event loop.
    rcpts = ["demo@example.test"] * 4 + ["bob@example.test"]
    clients = []
    for index, rcpt in enumerate(rcpts):
        client = lmtp(host)
        assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
        assert client.docmd("RCPT TO:<%s>" % rcpt)[0] == 250
        clients.append((client, b"Subject: %d\r\n\r\nbody of message %d\r\n" % (index, index)))
    master = host.procs["deliverd"].pid
    os.kill(master, signal.SIGSTOP)
    try:
        for client, body in clients:
            assert send_data(client, body)[0] == 354
            time.sleep(0.2)
    finally:
        os.kill(master, signal.SIGCONT)
    for client, _ in clients:
        assert client.getreply()[0] == 250
        client.quit()

    workers = set(delivering_pids(host, "bob@example.test"))
    assert len(workers) == 1
    worker = workers.pop()
    open_messages = []
    for fd in os.listdir("/proc/%d/fd" % worker):
        path = "/proc/%d/fd/%s" % (worker, fd)
        if "deliverd-message" in os.readlink(path):
            with open(path, "rb") as message:
                open_messages.append(message.read())
    foreign = [text for text in open_messages if b"Subject: 4" not in text]
    assert foreign == []


def test_waiting_request_gets_idle_workers_slot(make_mailhost):
    # With one process slot, demo's mailbox worker is busy (its userdb
    # lookup waits for a stopped authd) when a delivery for bob, who has
    # another uid, arrives and has to wait. Once demo's worker is idle,
    # bob's delivery must get its slot, not wait for the idle timeout.
    if os.geteuid() != 0:
        pytest.skip("needs root for a second uid")
    # Without the userdb cache, the worker's lookup for demo waits.
    host = make_mailhost(start=False, deliverd_max_processes="1",
                         deliverd_userdb_cache_time="0")
    give_bob_own_uid(host)
    vmail = pwd.getpwnam("_estafeta-vmail")
    home = host.dir / "mail" / "demo"
    home.mkdir()
    os.chown(home, vmail.pw_uid, vmail.pw_gid)
    host.start()
    deliver(host, "demo@example.test", 1)

    clients = []
    for rcpt in ("demo@example.test", "bob@example.test"):
        client = lmtp(host)
        assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
        assert client.docmd("RCPT TO:<%s>" % rcpt)[0] == 250
        clients.append(client)
    authd = host.procs["authd"].pid
    os.kill(authd, signal.SIGSTOP)
    try:
        assert send_data(clients[0], b"Subject: demo\r\n\r\nbusy\r\n")[0] == 354
        time.sleep(0.5)
        assert send_data(clients[1], b"Subject: bob\r\n\r\nwaiting\r\n")[0] == 354
        time.sleep(0.5)
    finally:
        os.kill(authd, signal.SIGCONT)
    assert clients[0].getreply()[0] == 250

    clients[1].sock.settimeout(15)
    try:
        code, text = clients[1].getreply()
    except smtplib.SMTPServerDisconnected as error:
        code, text = None, str(error)
    assert code == 250, text
