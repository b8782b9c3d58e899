"""imapd folders: Maildir++ directories, LIST and its extensions,
subscriptions, STATUS, APPEND, COPY and MOVE, and names that must
never leave the user's Maildir."""

import os
import re

import pytest

DEMO = "demo@example.test"
MESSAGE = (b"From: demo@example.test\r\nTo: demo@example.test\r\nSubject: appended\r\n"
           b"\r\nAppended body.\r\n")


@pytest.fixture
def imaphost(make_mailhost):
    host = make_mailhost()
    host.start("imapd")
    return host


def login(host, user=DEMO, password="demo"):
    imap = host.imap()
    assert imap.login(user, password)[0] == "OK"
    return imap


def command(imap, text):
    """Send one raw command; return its tagged reply line without the tag."""
    tag = imap._new_tag().decode()
    imap.send(("%s %s\r\n" % (tag, text)).encode())
    for _ in range(1000):
        line = imap.readline().decode().rstrip("\r\n")
        assert line, "connection closed before the reply to %s" % text
        if line.startswith(tag + " "):
            return line[len(tag) + 1:]
    raise AssertionError("no tagged reply to %s" % text)


def test_special_use_folders_created(imaphost):
    imap = login(imaphost)
    typ, data = imap.list()
    assert typ == "OK"
    assert b'(\\HasNoChildren \\Sent) "." "Sent"' in data
    assert b'(\\HasNoChildren \\Trash) "." "Trash"' in data
    maildir = imaphost.maildir(DEMO)
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (maildir / ("." + name) / "cur").is_dir()
        assert (maildir / ("." + name) / "maildirfolder").exists()
    typ, data = imap.lsub()
    assert b'() "." "Sent"' in data
    subscriptions = (maildir / "subscriptions").read_text()
    assert subscriptions.startswith("V\t2\n\n")


def test_create_hierarchy_and_list(imaphost):
    imap = login(imaphost)
    assert imap.create("Projects.Estafeta")[0] == "OK"
    assert imap.create("Projects.Other")[0] == "OK"
    assert (imaphost.maildir(DEMO) / ".Projects.Estafeta" / "new").is_dir()
    typ, data = imap.list('""', "Projects*")
    assert b'(\\Noselect \\HasChildren) "." "Projects"' in data
    assert b'(\\HasNoChildren) "." "Projects.Estafeta"' in data
    typ, data = imap.list('""', "%")
    assert not any(b"Projects.Estafeta" in line for line in data)
    typ, data = imap.list("Projects.", "%")
    assert len(data) == 2
    typ, data = imap.list('""', '""')
    assert data == [b'(\\Noselect) "." ""']
    assert imap.create("Projects.Estafeta")[1] == [b"[ALREADYEXISTS] Mailbox already exists"]


def test_list_extended_and_status(imaphost):
    imap = login(imaphost)
    imap.append("Sent", None, None, MESSAGE)
    typ, data = imap._simple_command("LIST", '(SPECIAL-USE)', '""', '"*"',
                                     "RETURN", "(STATUS (MESSAGES UIDNEXT SIZE))")
    assert typ == "OK"
    lines = imap.untagged_responses.get("LIST", [])
    assert any(b"\\Sent" in line for line in lines)
    assert not any(b'"INBOX"' in line for line in lines)
    statuses = imap.untagged_responses.get("STATUS", [])
    assert any(re.search(rb'"Sent" \(MESSAGES 1 UIDNEXT 2 SIZE %d\)' % len(MESSAGE), line)
               for line in statuses)


def test_status_counts(imaphost):
    imap = login(imaphost)
    imap.append("INBOX", "(\\Seen)", None, MESSAGE)
    imap.append("INBOX", None, None, MESSAGE)
    typ, data = imap.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE)")
    assert typ == "OK"
    assert re.search(rb"MESSAGES 2 RECENT 0 UIDNEXT 3 UIDVALIDITY \d+ UNSEEN 1 SIZE %d"
                     % (2 * len(MESSAGE)), data[0])
    assert command(imap, "STATUS INBOX (BOGUS)") == \
        "BAD Invalid arguments: expected STATUS mailbox (items)"
    assert command(imap, "STATUS Missing (MESSAGES)") == "NO [NONEXISTENT] Mailbox does not exist"


def test_append_with_flags_and_date(imaphost):
    imap = login(imaphost)
    typ, data = imap.append("Drafts", "(\\Draft \\Seen)", '"01-Feb-2026 12:30:00 +0100"', MESSAGE)
    assert typ == "OK"
    assert re.match(rb"\[APPENDUID \d+ 1\] Append completed.", data[0])
    files = list((imaphost.maildir(DEMO) / ".Drafts" / "cur").iterdir())
    assert len(files) == 1
    assert files[0].name.endswith(":2,DS")
    assert files[0].read_bytes() == MESSAGE
    assert int(files[0].stat().st_mtime) == 1769945400
    imap.select("Drafts")
    typ, data = imap.fetch("1", "(INTERNALDATE)")
    assert typ == "OK"
    typ, data = imap.search(None, "ON", "1-Feb-2026")
    assert data == [b"1"]


def test_append_errors(imaphost):
    imap = login(imaphost)
    typ, data = imap.append("Nowhere", None, None, MESSAGE)
    assert typ == "NO"
    assert data == [b"[TRYCREATE] Mailbox does not exist"]
    assert command(imap, 'APPEND INBOX "bad date" {1+}\r\nx') == "BAD Invalid date-time"
    assert command(imap, "APPEND INBOX (\\Bogus) {1+}\r\nx") == "BAD Invalid flag list"
    assert command(imap, "APPEND INBOX") == \
        "BAD Invalid arguments: expected APPEND mailbox [(flags)] [date-time] message"


def test_copy_and_move(imaphost):
    imap = login(imaphost)
    imap.append("INBOX", "(\\Flagged Work)", None, MESSAGE)
    imap.append("INBOX", None, None, MESSAGE)
    imap.create("Keep")
    imap.select("INBOX")
    typ, data = imap.copy("1:2", "Keep")
    assert typ == "OK"
    assert re.match(rb"\[COPYUID \d+ 1,2 1,2\] Copy completed.", data[0])
    typ, data = imap.uid("MOVE", "2", "Archive")
    assert typ == "OK"
    assert imap.untagged_responses.get("EXPUNGE") == [b"2"]
    typ, data = imap.uid("SEARCH", "ALL")
    assert data == [b"1"]
    typ, data = imap.status("Keep", "(MESSAGES)")
    assert b"MESSAGES 2" in data[0]
    typ, data = imap.status("Archive", "(MESSAGES)")
    assert b"MESSAGES 1" in data[0]
    imap.select("Keep")
    typ, data = imap.fetch("1", "(FLAGS)")
    assert b"\\Flagged" in data[0]
    assert b"Work" in data[0]
    typ, data = imap.copy("1", "Missing")
    assert typ == "NO"
    assert data == [b"[TRYCREATE] Mailbox does not exist"]


def test_rename_and_delete(imaphost):
    imap = login(imaphost)
    imap.create("Old")
    imap.create("Old.Child")
    imap.append("Old", None, None, MESSAGE)
    assert imap.rename("Old", "New")[0] == "OK"
    maildir = imaphost.maildir(DEMO)
    assert (maildir / ".New.Child").is_dir()
    assert not (maildir / ".Old").exists()
    assert imap.delete("New")[1] == [b"[INUSE] Mailbox has children, delete them first"]
    assert imap.delete("New.Child")[0] == "OK"
    assert imap.delete("New")[0] == "OK"
    assert not (maildir / ".New").exists()
    assert imap.delete("INBOX")[1] == [b"[CANNOT] INBOX cannot be deleted"]
    assert imap.rename("Missing", "INBOX")[1] == [b"[ALREADYEXISTS] INBOX already exists"]


def test_rename_inbox_moves_messages(imaphost):
    imap = login(imaphost)
    imap.append("INBOX", "(\\Seen)", None, MESSAGE)
    imap.append("INBOX", None, None, MESSAGE)
    imap.select("INBOX")
    assert imap.rename("INBOX", "Old-Inbox")[0] == "OK"
    assert imap.noop()[0] == "OK"
    assert imap.untagged_responses.get("EXPUNGE") == [b"1", b"1"]
    typ, data = imap.status("INBOX", "(MESSAGES)")
    assert b"MESSAGES 0" in data[0]
    imap.select("Old-Inbox")
    typ, data = imap.fetch("1:*", "(FLAGS)")
    assert len(data) == 2
    assert b"\\Seen" in data[0]
    assert imap.rename("INBOX", "Old-Inbox")[1] == [b"[ALREADYEXISTS] Target mailbox already exists"]
    assert imap.delete("Missing")[1] == [b"[NONEXISTENT] Mailbox does not exist"]


def test_subscribe_unsubscribe(imaphost):
    imap = login(imaphost)
    imap.create("News")
    assert imap.subscribe("News")[0] == "OK"
    assert b'() "." "News"' in imap.lsub()[1]
    assert imap.unsubscribe("News")[0] == "OK"
    assert b'() "." "News"' not in imap.lsub()[1]
    assert imap.subscribe("Missing")[1] == [b"[NONEXISTENT] Mailbox does not exist"]


HOSTILE_NAMES = ["../bob", "..", ".hidden", "a..b", ".trailing.", "/etc", "/tmp/x",
                 "a/b", "~root", "&Jjo", "a\tb"]


def test_hostile_names_rejected(imaphost):
    imap = login(imaphost)
    for name in HOSTILE_NAMES:
        quoted = '"%s"' % name
        assert command(imap, "CREATE " + quoted) == "NO [CANNOT] Invalid mailbox name", name
        assert command(imap, "SELECT " + quoted) == "NO [CANNOT] Invalid mailbox name", name
        assert command(imap, "STATUS %s (MESSAGES)" % quoted) == "NO [CANNOT] Invalid mailbox name", name
    assert not any(p.name.startswith("..") for p in imaphost.maildir(DEMO).iterdir())
    assert command(imap, 'SELECT "trailing."') == "NO [CANNOT] Invalid mailbox name"


def test_other_users_folders_unreachable(imaphost):
    bob = login(imaphost, "bob@example.test", "bob-secret")
    bob.append("INBOX", None, None, b"Subject: secret\r\n\r\nbob only\r\n")
    bob.create("Private")
    bob.logout()
    bob_maildir = imaphost.maildir("bob@example.test")

    imap = login(imaphost)
    attempts = ["../../bob/Maildir", "../bob", str(bob_maildir), str(bob_maildir / ".Private"),
                "..bob", "Private/../../../bob/Maildir"]
    for name in attempts:
        reply = command(imap, 'SELECT "%s"' % name)
        assert reply.startswith("NO "), name
    typ, data = imap.list('""', "*")
    assert not any(b"Private" in line for line in data)
    if os.geteuid() == 0:
        # The mail process runs as the vmail user, so file permissions alone
        # are not what separates virtual users: names are checked.
        assert command(imap, 'APPEND "../bob" {1+}\r\nx') == "NO [CANNOT] Invalid mailbox name"


def test_modified_utf7_names_kept(imaphost):
    imap = login(imaphost)
    name = "Entw&APw-rfe"
    assert imap.create(name)[0] == "OK"
    assert (imaphost.maildir(DEMO) / (".%s" % name)).is_dir()
    typ, data = imap.list('""', "Entw*")
    assert data == [b'(\\HasNoChildren) "." "Entw&APw-rfe"']


def test_list_wildcards_limited(imaphost):
    imap = login(imaphost)
    assert command(imap, 'LIST "" "' + "*a" * 9 + '"') == "BAD Too many wildcards in a LIST pattern"
    assert command(imap, 'LIST "" "' + "*a" * 8 + '"') == "OK List completed."
    assert command(imap, 'LIST "' + "*a" * 5 + '" "' + "*a" * 4 + '"') == \
        "BAD Too many wildcards in a LIST pattern"


def test_failed_copy_adds_nothing(imaphost):
    imap = login(imaphost)
    imap.append("INBOX", None, None, MESSAGE)
    imap.create("Locked")
    tmp = imaphost.maildir(DEMO) / ".Locked" / "tmp"
    os.chmod(tmp, 0o500)
    try:
        imap.select("INBOX")
        typ, data = imap.copy("1", "Locked")
        assert typ == "NO"
        assert data == [b"[SERVERBUG] Copy failed"]
    finally:
        os.chmod(tmp, 0o700)
    assert imap.status("Locked", "(MESSAGES)")[1] == [b'"Locked" (MESSAGES 0)']
    assert imap.noop()[0] == "OK"


def test_subscribed_but_missing_listed(imaphost):
    imap = login(imaphost)
    imap.create("Gone")
    imap.subscribe("Gone")
    imap.delete("Gone")
    typ, data = imap.lsub('""', "Gone")
    assert data == [b'(\\Noselect) "." "Gone"']
    typ, data = imap._simple_command("LIST", "(SUBSCRIBED)", '""', "Gone")
    assert imap.untagged_responses.get("LIST") == [b'(\\NonExistent \\HasNoChildren \\Subscribed) "." "Gone"']


def test_append_literal8_binary(imaphost):
    imap = login(imaphost)
    body = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\nA\x00B\r\n"
    reply = command(imap, "APPEND INBOX ~{%d+}\r\n" % len(body) + body.decode("latin-1"))
    assert reply.startswith("OK [APPENDUID ")
    imap.select("INBOX")
    tag = imap._new_tag().decode()
    imap.send(("%s FETCH 1 BINARY.PEEK[1]\r\n" % tag).encode())
    line = imap.readline()
    assert line == b"* 1 FETCH (BINARY[1] ~{5}\r\n"
    assert imap.read(5) == b"A\x00B\r\n"
