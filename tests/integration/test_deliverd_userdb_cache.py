"""deliverd's LMTP sessions and mailbox workers keep the results of their
userdb lookups for deliverd_userdb_cache_time: a user seen once needs no
new lookup, a result expires, a failed lookup is not kept, and 0 turns the
cache off. Stopping authd shows which RCPT or delivery sent a lookup."""

import signal
import smtplib
import time

from conftest import VIRTUAL_USERS
from test_deliverd_lmtp import send_data


def lmtp_session(host):
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=30)
    assert client.ehlo("client.example.test")[0] == 250
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    return client


def rcpt(client, address):
    code, text = client.docmd("RCPT TO:<%s>" % address)
    return code, text[:5]


def test_seen_user_needs_no_lookup(make_mailhost):
    host = make_mailhost()
    client = lmtp_session(host)
    assert rcpt(client, "demo@example.test") == (250, b"2.1.5")

    host.stop("authd")
    assert rcpt(client, "demo@example.test") == (250, b"2.1.5")
    assert rcpt(client, "bob@example.test") == (451, b"4.3.0")
    client.quit()


def test_zero_turns_cache_off(make_mailhost):
    host = make_mailhost(deliverd_userdb_cache_time=0)
    client = lmtp_session(host)
    assert rcpt(client, "demo@example.test") == (250, b"2.1.5")

    host.stop("authd")
    assert rcpt(client, "demo@example.test") == (451, b"4.3.0")
    client.quit()


def test_cached_result_expires(make_mailhost):
    host = make_mailhost(deliverd_userdb_cache_time=1)
    client = lmtp_session(host)
    assert rcpt(client, "demo@example.test") == (250, b"2.1.5")

    host.stop("authd")
    time.sleep(2.2)
    assert rcpt(client, "demo@example.test") == (451, b"4.3.0")
    client.quit()


def test_failed_lookup_not_kept(make_mailhost):
    host = make_mailhost()
    client = lmtp_session(host)
    host.stop("authd")
    assert rcpt(client, "demo@example.test") == (451, b"4.3.0")

    host.start("authd")
    assert rcpt(client, "demo@example.test") == (250, b"2.1.5")
    client.quit()


def test_unknown_user_kept_until_expiry(make_mailhost):
    host = make_mailhost(deliverd_userdb_cache_time=2)
    client = lmtp_session(host)
    assert rcpt(client, "carol@example.test") == (550, b"5.1.1")

    host.write_users(dict(VIRTUAL_USERS, **{"carol@example.test": "carol-secret"}))
    host.procs["authd"].send_signal(signal.SIGHUP)
    assert host.wait_for_log(r"reloading the passwd-file")
    assert rcpt(client, "carol@example.test") == (550, b"5.1.1")

    time.sleep(2.2)
    assert rcpt(client, "carol@example.test") == (250, b"2.1.5")
    client.quit()


def test_mailbox_worker_keeps_results(make_mailhost):
    host = make_mailhost()
    client = lmtp_session(host)
    assert rcpt(client, "demo@example.test") == (250, b"2.1.5")
    assert send_data(client, b"Subject: first\r\n\r\nbody\r\n")[0] == 354
    assert client.getreply()[0] == 250

    # The session and the mailbox worker of demo's owner both looked demo
    # up; neither needs authd for the second message.
    host.stop("authd")
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert rcpt(client, "demo@example.test") == (250, b"2.1.5")
    assert send_data(client, b"Subject: second\r\n\r\nbody\r\n")[0] == 354
    code, text = client.getreply()
    assert code == 250
    assert text[:5] == b"2.0.0"
    client.quit()
    assert len(host.messages("demo@example.test")) == 2


def test_cached_user_still_delivered(make_mailhost):
    host = make_mailhost()
    client = lmtp_session(host)
    for n in range(3):
        if n > 0:
            assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
        assert rcpt(client, "demo@example.test") == (250, b"2.1.5")
        assert client.docmd("DATA")[0] == 354
        client.send(b"Subject: %d\r\n\r\nbody\r\n.\r\n" % n)
        assert client.getreply()[0] == 250
    client.quit()
    assert len(host.messages("demo@example.test")) == 3
