"""After each commit smtpd requests from queued the spool file of the
session's next message, so DATA finds it ready. A file that no message
used is removed when the session ends."""

import time

BODY = b"Subject: ahead\r\n\r\nbody\r\n"


def data_files(host):
    spool = host.dir / "spool"
    return sorted({path.name for path in [*spool.glob("data/*"), *spool.glob("deferred-data/*")]})


def queued_ids(host):
    spool = host.dir / "spool"
    # A message being moved has an envelope in both for a moment.
    return sorted({path.name for path in [*spool.glob("queue/*"), *spool.glob("deferred/*")]})


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_next_message_uses_file_asked_ahead(mailhost):
    mailhost.stop("deliverd")
    with mailhost.smtp() as client:
        client.sendmail("sender@client.example.test", ["demo@example.test"], BODY)
        first = queued_ids(mailhost)
        assert len(first) == 1
        assert wait_for(lambda: len(data_files(mailhost)) == 2)
        ahead = [name for name in data_files(mailhost) if name not in first]
        assert len(ahead) == 1

        client.sendmail("sender@client.example.test", ["demo@example.test"], BODY)
        assert queued_ids(mailhost) == sorted(first + ahead)


def test_unused_file_removed_at_quit(mailhost):
    mailhost.stop("deliverd")
    with mailhost.smtp() as client:
        client.sendmail("sender@client.example.test", ["demo@example.test"], BODY)
        assert wait_for(lambda: len(data_files(mailhost)) == 2)
    assert wait_for(lambda: data_files(mailhost) == queued_ids(mailhost))
    assert len(queued_ids(mailhost)) == 1


def test_file_asked_ahead_serves_bdat(mailhost):
    mailhost.stop("deliverd")
    with mailhost.smtp() as client:
        client.sendmail("sender@client.example.test", ["demo@example.test"], BODY)
        assert wait_for(lambda: len(data_files(mailhost)) == 2)
        ahead = [name for name in data_files(mailhost) if name not in queued_ids(mailhost)]

        client.ehlo("client.example.test")
        assert client.mail("sender@client.example.test")[0] == 250
        assert client.rcpt("demo@example.test")[0] == 250
        client.send(b"BDAT %d LAST\r\n" % len(BODY) + BODY)
        code, text = client.getreply()
        assert code == 250
        assert text.decode().endswith("queued as %s" % ahead[0])


def test_no_message_no_file_ahead(mailhost):
    with mailhost.smtp() as client:
        client.ehlo("client.example.test")
        assert client.noop()[0] == 250
        assert data_files(mailhost) == []
