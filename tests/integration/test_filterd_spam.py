"""filterd's SpamAssassin check through smtpd, against a real spamd.

One spamd (local tests only, see scanners.py) serves the whole module.
Clients connect from 127.0.0.1, which these hosts leave out of mynetworks
so that their mail counts as inbound and is scanned.
"""

import email.utils
import re
import smtplib
import time

import pytest

from scanners import GTUBE, FakePeer, Spamd

DEMO = "demo@example.test"
SENDER = "sender@example.org"
# mynetworks without the loopback clients of the tests.
INBOUND = {"mynetworks": "198.51.100.0/24"}


@pytest.fixture(scope="module")
def spamd():
    server = Spamd()
    server.start()
    yield server
    server.destroy()


def start_host(make_mailhost, **settings):
    """Start a host whose smtpd sends each transaction to filterd, which
    runs only the SpamAssassin check."""
    base = dict(INBOUND, smtpd_filter="yes", filterd_checks="spamassassin",
                spam_reject_score="0")
    base.update(settings)
    host = make_mailhost(start=False, **base)
    host.newaliases()
    host.start()
    host.start("filterd")
    return host


def message(subject, body, extra_fields=""):
    # Dated now: SpamAssassin adds DATE_IN_PAST_* for an old Date: field,
    # which would change the scores and symbols these tests check.
    return ("From: Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
            "Date: %s\r\n"
            "Message-ID: <%s@example.org>\r\n%s\r\n%s\r\n"
            % (SENDER, DEMO, subject, email.utils.formatdate(usegmt=True), abs(hash(subject)),
               extra_fields, body))


def gtube_message(subject="GTUBE test", extra_fields=""):
    return message(subject, "This is the GTUBE test string:\r\n%s" % GTUBE, extra_fields)


def clean_message(subject="Lunch", extra_fields=""):
    return message(subject, "Shall we meet for lunch at noon on Monday?", extra_fields)


def send(host, text):
    """Send TEXT to demo; return the end-of-data reply (code, text)."""
    client = host.smtp()
    try:
        assert client.ehlo()[0] == 250
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(DEMO)[0] == 250
        return client.data(text)
    finally:
        client.quit()


def header_section(raw):
    return raw.split(b"\n\n", 1)[0].decode()


def fields(raw, name):
    """The values of every field called NAME, unfolded."""
    header = re.sub(r"\n[ \t]+", " ", header_section(raw))
    pattern = re.compile(r"^%s:[ \t]*(.*)$" % re.escape(name), re.IGNORECASE | re.MULTILINE)
    return pattern.findall(header)


def test_gtube_tagged(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket)
    code, _ = send(host, gtube_message())
    assert code == 250

    delivered = host.wait_for_messages(DEMO, 1)
    assert len(delivered) == 1
    assert fields(delivered[0], "Subject") == ["*****SPAM***** GTUBE test"]
    assert fields(delivered[0], "X-Spam-Flag") == ["YES"]
    status = fields(delivered[0], "X-Spam-Status")
    assert len(status) == 1
    assert re.match(r"Yes, score=\d+\.\d required=5\.0 tests=.*GTUBE", status[0])
    assert "version=" in status[0]
    assert host.wait_for_log(r"action=accept, stage=message.*spam=\d+\.\d/5\.0, symbols=[A-Z_,]*GTUBE")


def test_gtube_status_folded(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket)
    assert send(host, gtube_message())[0] == 250

    header = header_section(host.wait_for_messages(DEMO, 1)[0])
    # spamd's folding is kept, with LF line ends as in the rest of the file.
    assert re.search(r"^X-Spam-Status: Yes, [^\n]*\n\t\S", header, re.MULTILINE)
    assert "\r" not in header


def test_gtube_rejected_over_score(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket, spam_reject_score="15")
    code, text = send(host, gtube_message())
    assert code == 550
    assert text == b"5.7.1 Message rejected as spam"

    assert host.wait_for_log(r"action=reject, stage=message, reason=spam=\d+\.\d/5\.0")
    time.sleep(0.5)
    assert host.messages(DEMO) == []


def test_clean_under_reject_score(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket, spam_reject_score="15")
    assert send(host, clean_message())[0] == 250
    assert len(host.wait_for_messages(DEMO, 1)) == 1


def test_gtube_junk_folder(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket, spam_action="junk")
    assert send(host, gtube_message())[0] == 250
    assert host.wait_for_log(r"action=quarantine, stage=message, reason=spam=")

    junk = host.maildir(DEMO) / ".Junk" / "new"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (junk.is_dir() and any(junk.iterdir())):
        time.sleep(0.05)
    files = sorted(junk.iterdir()) if junk.is_dir() else []
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert fields(raw, "X-Spam-Flag") == ["YES"]
    # spam_subject_tag is set by default, so junk mail is tagged too.
    assert fields(raw, "Subject") == ["*****SPAM***** GTUBE test"]
    assert host.messages(DEMO) == []


def test_gtube_tag_without_subject(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket, spam_subject_tag="")
    assert send(host, gtube_message())[0] == 250

    delivered = host.wait_for_messages(DEMO, 1)
    assert fields(delivered[0], "Subject") == ["GTUBE test"]
    assert fields(delivered[0], "X-Spam-Flag") == ["YES"]


def test_clean_message_passes(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket)
    assert send(host, clean_message())[0] == 250

    delivered = host.wait_for_messages(DEMO, 1)
    assert len(delivered) == 1
    assert fields(delivered[0], "Subject") == ["Lunch"]
    assert fields(delivered[0], "X-Spam-Flag") == []
    status = fields(delivered[0], "X-Spam-Status")
    assert len(status) == 1
    assert re.match(r"No, score=-?\d+\.\d required=5\.0 tests=", status[0])
    assert host.wait_for_log(r"action=accept, stage=message.*spam=-?\d+\.\d/5\.0")


def test_large_message_scanned(make_mailhost, spamd):
    # Several read and send chunks, every line end turned into CRLF.
    body = "\r\n".join("Line %05d of the minutes of the meeting." % i for i in range(2500))
    host = start_host(make_mailhost, spamd_socket=spamd.socket)
    assert send(host, message("Minutes", body))[0] == 250

    raw = host.wait_for_messages(DEMO, 1)[0]
    assert len(raw) > 100000
    status = fields(raw, "X-Spam-Status")
    assert len(status) == 1
    assert status[0].startswith("No, ")


def test_forged_spam_fields_removed(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket)
    forged = ("X-Spam-Flag: YES\r\n"
              "X-Spam-Status: Yes, score=99.0 required=5.0 tests=FORGED\r\n"
              "X-Spam-Level: ************\r\n"
              "x-spam-flag: YES\r\n")
    assert send(host, clean_message(extra_fields=forged))[0] == 250

    raw = host.wait_for_messages(DEMO, 1)[0]
    assert fields(raw, "X-Spam-Flag") == []
    assert fields(raw, "X-Spam-Level") == []
    status = fields(raw, "X-Spam-Status")
    assert len(status) == 1
    assert status[0].startswith("No, ")


def test_forged_obsolete_syntax_removed(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket)
    assert send(host, clean_message(extra_fields="X-Spam-Flag : YES\r\n"))[0] == 250

    raw = host.wait_for_messages(DEMO, 1)[0]
    assert "x-spam-flag :" not in header_section(raw).lower()


def test_many_forged_fields_still_scanned(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket)
    forged = "X-Spam-Status: No, score=0.0\r\n" * 5 + "X-Spam-Flag: NO\r\n" * 20
    assert send(host, gtube_message(extra_fields=forged))[0] == 250

    raw = host.wait_for_messages(DEMO, 1)[0]
    status = fields(raw, "X-Spam-Status")
    assert len(status) == 1
    assert status[0].startswith("Yes, ")
    assert fields(raw, "X-Spam-Flag") == ["YES"]


def test_too_many_forged_fields_rejected(make_mailhost, spamd):
    # More removals than one reply to smtpd carries: no forged field may stay.
    host = start_host(make_mailhost, spamd_socket=spamd.socket)
    forged = "X-Spam-Flag: NO\r\n" * 40

    code, text = send(host, clean_message(extra_fields=forged))

    assert code == 550
    assert b"too many header fields to remove" in text
    assert host.messages(DEMO) == []
    assert host.wait_for_log(r"rejecting the message: too many X-Spam-\* fields to remove")


def test_forged_fields_removed_when_down(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=str(spamd.dir / "missing.sock"))
    assert send(host, clean_message(extra_fields="X-Spam-Flag: NO\r\n"))[0] == 250

    raw = host.wait_for_messages(DEMO, 1)[0]
    assert fields(raw, "X-Spam-Flag") == []
    assert fields(raw, "X-Spam-Status") == []


def test_forged_fields_removed_when_skipped(make_mailhost, spamd):
    # Over filterd_scan_size_limit spamd is not asked, but the removal stays.
    host = start_host(make_mailhost, spamd_socket=spamd.socket, filterd_scan_size_limit="1k")
    body = "\r\n".join("Line %03d of the minutes." % i for i in range(100))
    forged = "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=0.0\r\n"
    assert send(host, message("Minutes", body, extra_fields=forged))[0] == 250

    raw = host.wait_for_messages(DEMO, 1)[0]
    assert fields(raw, "X-Spam-Flag") == []
    assert fields(raw, "X-Spam-Status") == []
    assert fields(raw, "X-Estafeta-Filter") == ["scan skipped, message larger than 1024 bytes"]


def test_outbound_not_scanned(make_mailhost, spamd):
    # The loopback client is in mynetworks here, so its mail is outbound.
    host = start_host(make_mailhost, spamd_socket=spamd.socket, mynetworks="127.0.0.0/8")
    assert send(host, gtube_message())[0] == 250

    raw = host.wait_for_messages(DEMO, 1)[0]
    assert fields(raw, "X-Spam-Status") == []
    assert fields(raw, "Subject") == ["GTUBE test"]


def test_outbound_scanned_by_setting(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket, mynetworks="127.0.0.0/8",
                      spam_scan_outbound="yes")
    assert send(host, gtube_message())[0] == 250

    raw = host.wait_for_messages(DEMO, 1)[0]
    assert fields(raw, "X-Spam-Flag") == ["YES"]


def test_spamd_user_and_length(make_mailhost):
    # A peer that records the request: the protocol bytes filterd sends.
    peer = FakePeer(reply=b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n"
                          b"Spam: False ; 1.5 / 5.0\r\n\r\n")
    try:
        host = start_host(make_mailhost, spamd_socket=peer.socket, spamd_user="alice")
        assert send(host, clean_message())[0] == 250
        assert len(host.wait_for_messages(DEMO, 1)) == 1
    finally:
        peer.close()

    assert len(peer.requests) == 1
    head, body = peer.requests[0].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HEADERS SPAMC/1.5"
    assert b"User: alice" in lines
    assert b"Content-length: %d" % len(body) in lines
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert b"Subject: Lunch\r\n" in body


def test_spamd_status_without_field(make_mailhost):
    # spamd configured not to add X-Spam-Status: filterd writes a short one.
    peer = FakePeer(reply=b"SPAMD/1.1 0 EX_OK\r\nContent-length: 2\r\n"
                          b"Spam: True ; 7.5 / 5.0\r\n\r\n\r\n")
    try:
        host = start_host(make_mailhost, spamd_socket=peer.socket)
        assert send(host, clean_message())[0] == 250
        raw = host.wait_for_messages(DEMO, 1)[0]
    finally:
        peer.close()

    assert fields(raw, "X-Spam-Status") == ["Yes, score=7.5 required=5.0"]
    assert fields(raw, "X-Spam-Flag") == ["YES"]


def spamd_headers_reply(header_block, spam=True):
    body = header_block.encode()
    return (b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: %s ; 9.0 / 5.0\r\n\r\n"
            % (len(body), b"True" if spam else b"False")) + body


def deliver_with_reply(make_mailhost, reply):
    """Deliver a clean message with REPLY as spamd's; return the stored message."""
    peer = FakePeer(reply=reply)
    try:
        host = start_host(make_mailhost, spamd_socket=peer.socket)
        assert send(host, clean_message())[0] == 250
        return host.wait_for_messages(DEMO, 1)[0]
    finally:
        peer.close()


def test_spamd_long_status_cut(make_mailhost):
    rules = ",\r\n\t".join("RULE_%03d_%s" % (i, "X" * 40) for i in range(80))
    raw = deliver_with_reply(make_mailhost, spamd_headers_reply(
        "X-Spam-Status: Yes, score=9.0 required=5.0 tests=%s autolearn=no\r\n\r\n" % rules))

    # The original fields are still in the header section, not in the body.
    assert "\nMessage-ID: <" in header_section(raw)
    status = fields(raw, "X-Spam-Status")
    assert len(status) == 1
    assert status[0].startswith("Yes, score=9.0 required=5.0 tests=RULE_000_")
    assert 1500 < len(status[0]) < 2048
    # Cut after a whole line: the last rule name is complete.
    assert re.search(r"RULE_\d{3}_X{40},$", status[0])


def test_spamd_blank_fold_dropped(make_mailhost):
    raw = deliver_with_reply(make_mailhost, spamd_headers_reply(
        "X-Spam-Status: Yes, score=9.0 required=5.0 tests=ONE,\r\n \r\n\tTWO\r\n\r\n"))

    assert "\nMessage-ID: <" in header_section(raw)
    assert fields(raw, "X-Spam-Status") == ["Yes, score=9.0 required=5.0 tests=ONE, TWO"]
    assert "\n \n" not in header_section(raw)


@pytest.mark.parametrize("settings,error", [
    ({}, "spamd_socket and spamd_address are both empty"),
    # A listener's form, every address: no good for a client.
    ({"spamd_address": ":783"}, "invalid spamd_address :783"),
    ({"spamd_socket": "/tmp/" + "s" * 120}, "spamd_socket path too long"),
])
def test_spamd_settings_checked_at_start(make_mailhost, settings, error):
    host = make_mailhost(start=False, smtpd_filter="yes", filterd_checks="spamassassin",
                         **settings)
    with pytest.raises(RuntimeError, match=error):
        host.start("filterd")


def test_spamd_down_accept(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=str(spamd.dir / "missing.sock"))
    assert send(host, clean_message())[0] == 250

    assert len(host.wait_for_messages(DEMO, 1)) == 1
    assert host.wait_for_log(r"check spamassassin failed: connect to spamd at \S+ failed: "
                             r"No such file or directory; accepting")


def test_spamd_down_tempfail_resend(make_mailhost, spamd):
    host = start_host(make_mailhost, spamd_socket=spamd.socket,
                      filterd_spamassassin_failure_policy="tempfail")
    spamd.stop()
    try:
        code, text = send(host, gtube_message())
        assert code == 451
        assert text.startswith(b"4.7.0 ")
        assert host.wait_for_log(r"check spamassassin failed: .*replying 451")
    finally:
        spamd.start()

    # The client tries again once spamd is back: delivered once, tagged.
    assert send(host, gtube_message())[0] == 250
    delivered = host.wait_for_messages(DEMO, 1)
    time.sleep(0.5)
    assert len(host.messages(DEMO)) == 1
    assert fields(delivered[0], "X-Spam-Flag") == ["YES"]


@pytest.mark.parametrize("policy,expected", [("accept", 250), ("tempfail", 451)])
def test_spamd_silent_timeout(make_mailhost, policy, expected):
    peer = FakePeer(reply=None)
    try:
        host = start_host(make_mailhost, spamd_socket=peer.socket, spamd_timeout="1s",
                          filterd_spamassassin_failure_policy=policy)
        started = time.monotonic()
        code, _ = send(host, clean_message())
        elapsed = time.monotonic() - started
        assert code == expected
        assert 0.9 < elapsed < 10
        assert host.wait_for_log(r"check spamassassin failed: spamd: timed out waiting for the reply")
    finally:
        peer.close()


REPLIES = [
    (b"garbage\r\n", r"spamd sent an invalid status line: garbage"),
    (b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch)\r\n",
     r"spamd replied with an error: SPAMD/1\.0 76 Bad header line"),
    (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: Maybe ; 1 / 5\r\n\r\n",
     r"spamd sent an invalid Spam header: Maybe ; 1 / 5"),
    (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", r"spamd's reply has no Spam header"),
    (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 50\r\nSpam: True ; 9.0 / 5.0\r\n\r\nshort",
     r"spamd closed the connection after 5 of 50 bytes"),
    (b"SPAMD/1.1 0 EX_OK\nSpam: True ; 9.0 / 5.0\n\n", r"spamd sent a malformed reply line"),
    (b"SPAMD/1.1 0 EX_OK\r\n", r"spamd closed the connection in the middle of its reply"),
    (b"", r"spamd closed the connection in the middle of its reply"),
]


@pytest.mark.parametrize("reply,logged", REPLIES)
def test_spamd_bad_reply_accept(make_mailhost, reply, logged):
    peer = FakePeer(reply=reply)
    try:
        host = start_host(make_mailhost, spamd_socket=peer.socket)
        assert send(host, clean_message())[0] == 250
        raw = host.wait_for_messages(DEMO, 1)[0]
        assert host.wait_for_log(r"check spamassassin failed: " + logged)
    finally:
        peer.close()
    assert fields(raw, "X-Spam-Status") == []


def test_spamd_bad_reply_tcp_tempfail(make_mailhost):
    peer = FakePeer(reply=b"HTTP/1.0 200 OK\r\n\r\n", unix=False)
    try:
        host = start_host(make_mailhost, spamd_address=peer.address,
                          filterd_spamassassin_failure_policy="tempfail")
        code, text = send(host, clean_message())
        assert code == 451
        assert host.wait_for_log(r"spamd sent an invalid status line: HTTP/1\.0 200 OK")
    finally:
        peer.close()
    assert peer.connections == 1
    time.sleep(0.3)
    assert host.messages(DEMO) == []


def test_session_continues_after_failure(make_mailhost):
    peer = FakePeer(reply=b"junk")
    try:
        host = start_host(make_mailhost, spamd_socket=peer.socket,
                          filterd_spamassassin_failure_policy="tempfail")
        client = host.smtp()
        for attempt in range(2):
            with pytest.raises(smtplib.SMTPDataError) as error:
                client.sendmail(SENDER, [DEMO], clean_message("try %d" % attempt))
            assert error.value.smtp_code == 451
        assert client.noop()[0] == 250
        client.quit()
    finally:
        peer.close()
