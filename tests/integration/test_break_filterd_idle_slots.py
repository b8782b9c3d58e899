"""An idle SMTP session must not keep one of filterd's
filterd_max_connections slots.

smtpd opens its filterd connection at the first MAIL FROM and keeps it
until the session ends, and filterd gives each connection a worker
thread until it closes or stays idle for filterd_timeout (600 s). The
requests carry all the state (smtpd passes the SPF result back), yet a
client that sends MAIL FROM and RSET and then waits keeps a slot. With
the defaults (filterd_max_connections 100, smtpd_max_connections 500) a
hundred such connections make every other client get 451 4.7.0 at MAIL
FROM (smtpd_filter_failure_policy tempfail)."""

import time

import pytest

SLOTS = 2


def start_host(make_mailhost):
    host = make_mailhost(start=False, mynetworks="198.51.100.0/24", smtpd_filter="yes",
                         filterd_checks="", filterd_max_connections=str(SLOTS))
    host.newaliases()
    host.start()
    host.start("filterd")
    return host


def mail_reply(host):
    """The reply code to MAIL FROM on a new session."""
    raw = host.raw()
    try:
        assert raw.cmd("EHLO client.example.test")[0] == 250
        return raw.cmd("MAIL FROM:<sender@example.org>")[0]
    finally:
        raw.close()


# What each idle session sends after MAIL FROM before it waits.
IDLE_AFTER_MAIL = {
    "after RSET": ["RSET"],
    "inside a transaction": ["RCPT TO:<demo@example.test>"],
}


@pytest.mark.parametrize("case", sorted(IDLE_AFTER_MAIL))
def test_idle_sessions_keep_no_slot(make_mailhost, case):
    host = start_host(make_mailhost)
    idle = []
    for _ in range(SLOTS):
        raw = host.raw()
        assert raw.cmd("EHLO idle.example.test")[0] == 250
        assert raw.cmd("MAIL FROM:<idle@example.org>")[0] == 250
        for command in IDLE_AFTER_MAIL[case]:
            assert raw.cmd(command)[0] == 250
        idle.append(raw)

    # A released slot may take a moment to reach filterd: try a few times.
    code = None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        code = mail_reply(host)
        if code == 250:
            break
        time.sleep(0.2)

    for raw in idle:
        raw.close()
    assert code == 250, host.log()
