"""imapd on INBOX. Mail is delivered through smtpd and deliverd and read
back with imaplib. The tests check flags, UIDs and UIDVALIDITY in
Dovecot's files and across a restart, and SEARCH, STORE, EXPUNGE and
IDLE."""

import os
import re
import socket
import time

import pytest

DEMO = "demo@example.test"


def message(subject, body="Hello there.\n", sender="alice@example.org"):
    return ("From: Alice <%s>\nTo: Demo <%s>\nSubject: %s\n"
            "Date: Fri, 04 Dec 2026 10:00:00 +0000\nMessage-ID: <%s@example.org>\n\n%s"
            % (sender, DEMO, subject, subject.replace(" ", "."), body))


def deliver(host, subject, body="Hello there.\n", count=None):
    before = len(host.messages(DEMO))
    with host.smtp() as client:
        client.sendmail("alice@example.org", [DEMO], message(subject, body).replace("\n", "\r\n"))
    found = host.wait_for_messages(DEMO, before + 1)
    assert len(found) == before + 1


@pytest.fixture
def imaphost(make_mailhost):
    host = make_mailhost()
    host.start("imapd")
    return host


def login(host, user=DEMO, password="demo"):
    imap = host.imap()
    assert imap.login(user, password)[0] == "OK"
    return imap


def test_select_fetch_delivered(imaphost):
    deliver(imaphost, "first message")
    deliver(imaphost, "second message", body="Line one.\nLine two.\n")
    imap = login(imaphost)
    typ, data = imap.select("INBOX")
    assert typ == "OK"
    assert data == [b"2"]
    typ, data = imap.fetch("1:2", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    assert b"Subject: first message" in data[0][1]
    assert b"Subject: second message" in data[2][1]
    assert re.search(rb"UID 1 .*FLAGS \(\\Recent\)", data[0][0])
    typ, data = imap.fetch("2", "(BODY[TEXT])")
    assert data[0][1] == b"Line one.\r\nLine two.\r\n"
    typ, data = imap.fetch("2", "(FLAGS)")
    assert b"\\Seen" in data[0]


def test_fetch_envelope_and_structure(imaphost):
    deliver(imaphost, "structure")
    imap = login(imaphost)
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(ENVELOPE BODYSTRUCTURE INTERNALDATE)")
    assert typ == "OK"
    text = data[0] if isinstance(data[0], bytes) else b"".join(data[0])
    assert b'"structure"' in text
    assert b'(("Alice" NIL "alice" "example.org"))' in text
    assert b'BODYSTRUCTURE ("TEXT" "PLAIN"' in text
    assert re.search(rb'INTERNALDATE "\d\d-\w\w\w-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', text)


def test_fetch_partial_and_rfc822(imaphost):
    deliver(imaphost, "partial")
    imap = login(imaphost)
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(BODY.PEEK[]<0.5>)")
    assert data[0][0].endswith(b"BODY[]<0> {5}")
    partial = data[0][1]
    typ, data = imap.fetch("1", "(RFC822)")
    assert data[0][1][:5] == partial
    assert b"\r\n\r\nHello there.\r\n" in data[0][1]
    typ, data = imap.fetch("1", "(BINARY.SIZE[1] BINARY.PEEK[1])")
    assert typ == "OK"
    assert b"BINARY.SIZE[1] 14" in data[0][0]


def test_store_flags_and_keywords(imaphost):
    deliver(imaphost, "flags")
    imap = login(imaphost)
    imap.select("INBOX")
    typ, data = imap.store("1", "+FLAGS", "(\\Flagged \\Seen Important)")
    assert typ == "OK"
    assert b"\\Flagged" in data[0]
    assert b"Important" in data[0]
    typ, data = imap.store("1", "-FLAGS.SILENT", "(\\Seen)")
    assert typ == "OK"
    assert data == [None]
    names = [p.name for p in imaphost.message_files(DEMO)]
    assert len(names) == 1
    assert names[0].endswith(":2,Fa")
    maildir = imaphost.maildir(DEMO)
    assert (maildir / "dovecot-keywords").read_text() == "0 Important\n"


def test_flags_and_uids_survive_restart(imaphost):
    deliver(imaphost, "one")
    deliver(imaphost, "two")
    imap = login(imaphost)
    imap.select("INBOX")
    imap.uid("STORE", "2", "+FLAGS", "(\\Answered)")
    typ, data = imap.status("INBOX", "(UIDVALIDITY UIDNEXT)")
    validity = re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1)
    imap.logout()

    uidlist = (imaphost.maildir(DEMO) / "dovecot-uidlist").read_text().splitlines()
    assert re.match(r"3 V%s N3 G[0-9a-f]{32}$" % validity.decode(), uidlist[0])
    assert uidlist[1].startswith("1 :")
    assert uidlist[2].startswith("2 :")

    imaphost.stop("imapd")
    imaphost.start("imapd")
    imap = login(imaphost)
    typ, data = imap.select("INBOX")
    assert data == [b"2"]
    assert imap.untagged_responses.get("UIDVALIDITY") == [validity]
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    assert b"UID 1 FLAGS ()" in data[0]
    assert b"UID 2 FLAGS (\\Answered)" in data[1] or b"FLAGS (\\Answered) UID 2" in data[1]


def test_uidlist_written_by_dovecot_is_kept(imaphost):
    login(imaphost).logout()
    maildir = imaphost.maildir(DEMO)
    (maildir / "dovecot-uidlist").unlink(missing_ok=True)
    (maildir / "cur" / "1700000000.M1P1.old:2,S").write_text(message("old one"))
    (maildir / "cur" / "1700000001.M2P2.old:2,").write_text(message("old two"))
    (maildir / "cur" / "1700000002.M3P3.old:2,").write_text(message("old three"))
    # Dovecot appends lines without rewriting the header, so N may be stale.
    (maildir / "dovecot-uidlist").write_text(
        "3 V1234567 N43 G0123456789abcdef0123456789abcdef\n"
        "41 W500 :1700000000.M1P1.old\n"
        "42 :1700000001.M2P2.old\n"
        "45 :1700000002.M3P3.old\n")
    owner = maildir.stat()
    for path in maildir.rglob("*"):
        os.chown(path, owner.st_uid, owner.st_gid)
    imap = login(imaphost)
    imap.select("INBOX")
    assert imap.untagged_responses.get("UIDVALIDITY") == [b"1234567"]
    typ, data = imap.uid("SEARCH", "SEEN")
    assert data == [b"41"]
    deliver(imaphost, "new one")
    imap.noop()
    typ, data = imap.uid("SEARCH", "ALL")
    assert data == [b"41 42 45 46"]
    uidlist = (maildir / "dovecot-uidlist").read_text().splitlines()
    assert uidlist[0] == "3 V1234567 N47 G0123456789abcdef0123456789abcdef"
    assert uidlist[1] == "41 W500 :1700000000.M1P1.old"


def test_search_keys(imaphost):
    deliver(imaphost, "apples", body="Crisp and red.\n")
    deliver(imaphost, "pears", body="Soft and green.\n")
    deliver(imaphost, "plums", body="Dark and sweet.\n")
    imap = login(imaphost)
    imap.select("INBOX")
    imap.store("2", "+FLAGS", "(\\Flagged)")
    cases = [
        (("ALL",), b"1 2 3"),
        (("FLAGGED",), b"2"),
        (("UNFLAGGED",), b"1 3"),
        (("SUBJECT", "pears"), b"2"),
        (("BODY", "sweet"), b"3"),
        (("TEXT", "apples"), b"1"),
        (("FROM", "alice"), b"1 2 3"),
        (("NOT", "SUBJECT", "plums"), b"1 2"),
        (("OR", "SUBJECT", "apples", "SUBJECT", "plums"), b"1 3"),
        (("2:3", "UNFLAGGED"), b"3"),
        (("UID", "1,3"), b"1 3"),
        (("LARGER", "10"), b"1 2 3"),
        (("SMALLER", "10"), b""),
        (("SENTON", "4-Dec-2026"), b"1 2 3"),
        (("SENTBEFORE", "1-Jan-2020"), b""),
        (("SINCE", "1-Jan-2020"), b"1 2 3"),
        (("HEADER", "Message-ID", "pears@"), b"2"),
        (("RECENT",), b"1 2 3"),
    ]
    for criteria, expected in cases:
        typ, data = imap.search(None, *criteria)
        assert typ == "OK", criteria
        assert data == [expected], criteria
    typ, data = imap.search("UTF-8", "SUBJECT", "apples")
    assert data == [b"1"]


def test_search_bad_input(imaphost):
    imap = login(imaphost)
    imap.select("INBOX")
    tag = imap._new_tag().decode()
    imap.send(("%s SEARCH CHARSET KOI8-R ALL\r\n" % tag).encode())
    line = imap.readline()
    assert line == ("%s NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n" % tag).encode()
    tag = imap._new_tag().decode()
    imap.send(("%s SEARCH FOOBAR\r\n" % tag).encode())
    assert imap.readline() == ("%s BAD Invalid search criteria\r\n" % tag).encode()
    tag = imap._new_tag().decode()
    imap.send(("%s SEARCH %s\r\n" % (tag, "(" * 100 + "ALL" + ")" * 100)).encode())
    assert imap.readline() == ("%s BAD Invalid search criteria\r\n" % tag).encode()
    assert imap.noop()[0] == "OK"


def test_esearch_return(imaphost):
    for subject in ("a", "b", "c"):
        deliver(imaphost, subject)
    imap = login(imaphost)
    imap.select("INBOX")
    tag = imap._new_tag().decode()
    imap.send(("%s UID SEARCH RETURN (MIN MAX COUNT ALL) ALL\r\n" % tag).encode())
    assert imap.readline() == ('* ESEARCH (TAG "%s") UID MIN 1 MAX 3 ALL 1:3 COUNT 3\r\n' % tag).encode()
    assert imap.readline().startswith(tag.encode() + b" OK")


def test_expunge(imaphost):
    for subject in ("keep", "drop", "keep too"):
        deliver(imaphost, subject)
    imap = login(imaphost)
    imap.select("INBOX")
    imap.store("2", "+FLAGS", "(\\Deleted)")
    typ, data = imap.expunge()
    assert typ == "OK"
    assert data == [b"2"]
    assert len(imaphost.messages(DEMO)) == 2
    typ, data = imap.uid("SEARCH", "ALL")
    assert data == [b"1 3"]


def test_uid_expunge_only_named(imaphost):
    for subject in ("one", "two"):
        deliver(imaphost, subject)
    imap = login(imaphost)
    imap.select("INBOX")
    imap.store("1:2", "+FLAGS", "(\\Deleted)")
    typ, data = imap.uid("EXPUNGE", "2")
    assert typ == "OK"
    assert imap.uid("SEARCH", "ALL")[1] == [b"1"]


def test_examine_is_read_only(imaphost):
    deliver(imaphost, "read only")
    imap = login(imaphost)
    typ, _ = imap.select("INBOX", readonly=True)
    assert typ == "OK"
    typ, data = imap.fetch("1", "(BODY[])")
    assert typ == "OK"
    typ, data = imap.store("1", "+FLAGS", "(\\Deleted)")
    assert typ == "NO"
    assert data == [b"[READ-ONLY] Mailbox is read-only"]
    names = [p.name for p in imaphost.message_files(DEMO)]
    assert not any(":2,S" in name for name in names)


def test_bad_fetch_and_store(imaphost):
    deliver(imaphost, "bad input")
    imap = login(imaphost)
    imap.select("INBOX")
    cases = [
        ("FETCH 5 FLAGS", "BAD Invalid message number: the mailbox has 1 messages"),
        ("FETCH 1 (FLAGS", "BAD Invalid FETCH items"),
        ("FETCH 1 BODY[1.X]", "BAD Invalid FETCH items"),
        ("FETCH 0 FLAGS", "BAD Invalid arguments: expected FETCH sequence-set items"),
        ("FETCH x FLAGS", "BAD Invalid arguments: expected FETCH sequence-set items"),
        ("STORE 1 +FLAGS (\\Bogus)", "BAD Invalid flag list"),
        ("STORE 1 FLIPS (\\Seen)", "BAD Invalid STORE action: expected [+-]FLAGS[.SILENT]"),
        ("UID FROB 1", "BAD Unknown UID command"),
        ("FROB", "BAD Unknown command"),
    ]
    for command, reply in cases:
        tag = imap._new_tag().decode()
        imap.send(("%s %s\r\n" % (tag, command)).encode())
        assert imap.readline().decode() == "%s %s\r\n" % (tag, reply), command
    assert imap.noop()[0] == "OK"


def test_commands_need_selected_mailbox(imaphost):
    imap = login(imaphost)
    tag = imap._new_tag().decode()
    imap.send(("%s FETCH 1 FLAGS\r\n" % tag).encode())
    assert imap.readline().decode() == "%s BAD No mailbox selected\r\n" % tag


def test_literal_limits_after_login(make_mailhost):
    host = make_mailhost(imapd_max_literal_size="2k", imapd_append_limit="4k",
                         imapd_max_line_length="2k")
    host.start("imapd")
    imap = login(host)
    tag = imap._new_tag().decode()
    imap.send(("%s CREATE {5000}\r\n" % tag).encode())
    assert imap.readline().decode() == "%s BAD [TOOBIG] Literal too big\r\n" % tag
    tag = imap._new_tag().decode()
    imap.send(("%s APPEND INBOX {5000}\r\n" % tag).encode())
    assert imap.readline().decode() == "%s NO [TOOBIG] Message too big\r\n" % tag
    tag = imap._new_tag().decode()
    imap.send(("%s APPEND INBOX {5000+}\r\n" % tag).encode() + b"x" * 5000 + b"\r\n")
    assert imap.readline().decode() == "%s NO [TOOBIG] Message too big\r\n" % tag
    tag = imap._new_tag().decode()
    imap.send(("%s NOOP %s\r\n" % (tag, "y" * 3000)).encode())
    assert imap.readline().decode() == "%s BAD [TOOBIG] Command line too long\r\n" % tag
    assert imap.noop()[0] == "OK"
    typ, data = imap.capability()
    assert b"APPENDLIMIT=4096" in data[-1]


def test_idle_sees_delivery(imaphost):
    imap = login(imaphost)
    imap.select("INBOX")
    tag = imap._new_tag().decode()
    imap.send(("%s IDLE\r\n" % tag).encode())
    assert imap.readline() == b"+ idling\r\n"
    deliver(imaphost, "while idle")
    # deliver() returns once the file is in new/: inotify reports it at once.
    imap.sock.settimeout(1)
    line = imap.readline()
    assert line == b"* 1 EXISTS\r\n"
    assert imap.readline() == b"* 1 RECENT\r\n"
    imap.send(b"DONE\r\n")
    assert imap.readline() == ("%s OK Idle completed.\r\n" % tag).encode()


def test_idle_reports_expunge_elsewhere(imaphost):
    deliver(imaphost, "to be removed")
    first = login(imaphost)
    first.select("INBOX")
    second = login(imaphost)
    second.select("INBOX")
    tag = first._new_tag().decode()
    first.send(("%s IDLE\r\n" % tag).encode())
    assert first.readline() == b"+ idling\r\n"
    second.store("1", "+FLAGS", "(\\Deleted)")
    second.expunge()
    first.sock.settimeout(5)
    # The \\Deleted flag may be reported before the message goes.
    lines = [first.readline()]
    if lines[0].startswith(b"* 1 FETCH"):
        lines.append(first.readline())
    assert lines[-1] == b"* 1 EXPUNGE\r\n"
    first.send(b"DONE\r\n")
    for _ in range(100):
        line = first.readline()
        assert line, "connection closed while idling"
        if line.startswith(tag.encode()):
            break
    assert line == ("%s OK Idle completed.\r\n" % tag).encode()


def test_close_expunges_unselect_keeps(imaphost):
    for subject in ("one", "two"):
        deliver(imaphost, subject)
    imap = login(imaphost)
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = imap._simple_command("UNSELECT")
    assert typ == "OK"
    assert len(imaphost.messages(DEMO)) == 2
    imap.select("INBOX")
    assert imap.close()[0] == "OK"
    assert len(imaphost.messages(DEMO)) == 1


def test_session_commands(imaphost):
    imap = login(imaphost)
    typ, data = imap.namespace()
    assert data == [b'(("" ".")) NIL NIL']
    typ, data = imap._simple_command("ENABLE", "CONDSTORE")
    assert typ == "OK"
    tag = imap._new_tag().decode()
    imap.send(("%s ENABLE\r\n" % tag).encode())
    assert imap.readline().decode() == \
        "%s BAD Invalid arguments: expected ENABLE capability...\r\n" % tag
    tag = imap._new_tag().decode()
    imap.send(("%s ID NIL\r\n" % tag).encode())
    assert imap.readline() == b'* ID ("name" "Estafeta")\r\n'
    assert imap.readline().decode() == "%s OK ID completed.\r\n" % tag
    imap.select("INBOX")
    assert imap.check()[0] == "OK"
    tag = imap._new_tag().decode()
    imap.send(("%s LOGIN demo@example.test demo\r\n" % tag).encode())
    assert imap.readline().decode() == "%s BAD Already logged in\r\n" % tag


def test_sighup_keeps_serving(imaphost):
    imaphost.procs["imapd"].send_signal(1)
    assert imaphost.wait_for_log(r"received SIGHUP") is not None
    imap = login(imaphost)
    assert imap.select("INBOX")[0] == "OK"


def test_search_decoded_utf8(imaphost):
    raw = ("From: Jörg <joerg@example.org>\r\nTo: demo@example.test\r\n"
           "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\n"
           "RGllIFN0cmHDn2UgaXN0IG5hc3Mu\r\n")
    imap = login(imaphost)
    assert imap.append("INBOX", None, None, raw.encode())[0] == "OK"
    imap.append("INBOX", None, None, b"Subject: plain\r\n\r\nnothing here\r\n")
    imap.select("INBOX")
    imap.literal = "KÖLN".encode()
    typ, data = imap.search("UTF-8", "SUBJECT")
    assert data == [b"1"]
    imap.literal = "straße".encode()
    typ, data = imap.search("UTF-8", "BODY")
    assert data == [b"1"]
    typ, data = imap.search("US-ASCII", "TEXT", "nothing")
    assert data == [b"2"]
