"""imapd on malformed and hostile input: literals cut short or empty,
deep nesting, commands in the wrong state, invalid sequence sets,
broken modified UTF-7 and mailbox names that try to leave the Maildir.
Each case asserts the exact tagged reply and that the session or the
server goes on. Cases that test_imapd_login, test_imapd_mailbox and
test_imapd_folders already cover are not repeated here."""

import time

import pytest

from test_imapd_login import RawIMAP

DEMO = "demo@example.test"
MESSAGE = b"From: alice@example.org\r\nSubject: present\r\n\r\nBody.\r\n"

# imapd ends a session after 20 BAD replies, so tables of bad commands
# are split over several sessions of at most this many commands.
BAD_COMMANDS_PER_SESSION = 15


@pytest.fixture
def imaphost(make_mailhost):
    host = make_mailhost()
    host.start("imapd")
    return host


def connect(host):
    conn = RawIMAP(host.imap_port)
    greeting = conn.line()
    assert greeting.startswith("* OK ["), greeting
    return conn


def logged_in(host):
    conn = connect(host)
    assert conn.cmd("l1", "LOGIN %s demo" % DEMO)[-1].startswith("l1 OK ")
    return conn


def selected(host, mailbox="INBOX"):
    conn = logged_in(host)
    assert conn.cmd("s1", "SELECT " + mailbox)[-1].startswith("s1 OK [READ-WRITE]")
    return conn


def append(host, count):
    conn = logged_in(host)
    for i in range(count):
        conn.send(b"a%d APPEND INBOX {%d+}\r\n" % (i, len(MESSAGE)) + MESSAGE + b"\r\n")
        assert conn.until_tagged("a%d" % i)[-1].startswith("a%d OK [APPENDUID " % i)
    conn.cmd("z", "LOGOUT")
    conn.close()


def tagged(conn, tag, command):
    """Send COMMAND and return its tagged reply without the tag."""
    return conn.cmd(tag, command)[-1][len(tag) + 1:]


def assert_alive(host):
    assert host.procs["imapd"].poll() is None
    conn = logged_in(host)
    assert conn.cmd("n1", "NOOP")[-1] == "n1 OK NOOP completed."
    conn.cmd("z", "LOGOUT")
    conn.close()


def wait_for_logouts(host, count, timeout=10):
    """Wait until mail processes have logged COUNT session ends."""
    deadline = time.monotonic() + timeout
    while host.log().count(": logged out") < count:
        assert time.monotonic() < deadline, "fewer than %d sessions ended" % count
        time.sleep(0.05)


def maildir_files(host):
    maildir = host.maildir(DEMO)
    return sorted(p for sub in ("tmp", "new", "cur") for p in (maildir / sub).iterdir())


# Literals


def test_unterminated_literal_then_new_connection(imaphost):
    conn = connect(imaphost)
    conn.send(b"a1 LOGIN {100}\r\n")
    assert conn.line() == "+ OK"
    conn.send(b"abc")
    conn.close()

    conn = connect(imaphost)
    conn.send(b"a1 LOGIN {100+}\r\nabc")
    conn.close()

    conn = logged_in(imaphost)
    conn.send(b"a2 CREATE {100}\r\n")
    assert conn.line() == "+ OK"
    conn.send(b"Half")
    conn.close()

    assert_alive(imaphost)
    conn = logged_in(imaphost)
    lines = conn.cmd("l2", 'LIST "" "Half*"')
    assert lines == ["l2 OK List completed."]


def test_zero_length_literals(imaphost):
    conn = connect(imaphost)
    conn.send(b"a1 LOGIN {0}\r\n")
    assert conn.line() == "+ OK"
    conn.send(b" {0}\r\n")
    assert conn.line() == "+ OK"
    conn.send(b"\r\n")
    assert conn.line() == "a1 NO [AUTHENTICATIONFAILED] Authentication failed."
    assert tagged(conn, "a2", "LOGIN %s demo" % DEMO).startswith("OK ")

    conn.send(b"a3 CREATE {0}\r\n")
    assert conn.line() == "+ OK"
    conn.send(b"\r\n")
    assert conn.line() == "a3 NO [CANNOT] Invalid mailbox name"
    assert tagged(conn, "a4", "SELECT {0+}\r\n") == "NO [CANNOT] Invalid mailbox name"

    # An empty message is valid RFC 5322 (no header fields, no body), so
    # imapd stores it. NOTE: Dovecot 2.3.19 rejects it ("NO Can't save a zero byte message.").
    # An empty message is refused, as Dovecot refuses it.
    conn.send(b"a5 APPEND INBOX {0}\r\n")
    assert conn.line() == "+ OK"
    conn.send(b"\r\n")
    assert conn.line() == "a5 NO Cannot save a zero byte message"
    assert tagged(conn, "a6", "SELECT INBOX") == "OK [READ-WRITE] Select completed."
    assert conn.cmd("a7", "FETCH 1:* FLAGS")[-1].startswith("a7 BAD Invalid message number")


def test_append_cut_mid_literal(imaphost):
    append(imaphost, 1)
    before = maildir_files(imaphost)
    assert len(before) == 1

    conn = logged_in(imaphost)
    conn.send(b"a1 APPEND INBOX {1000}\r\n")
    assert conn.line() == "+ OK"
    conn.send(b"From: alice@example.org\r\nSubject: partial\r\n\r\n" + b"y" * 400)
    conn.close()
    conn = logged_in(imaphost)
    conn.send(b"a2 APPEND INBOX (\\Seen) {1000+}\r\n" + b"z" * 500)
    conn.close()

    # One session ended in append(), two more were cut mid-literal.
    wait_for_logouts(imaphost, 3)
    assert maildir_files(imaphost) == before
    conn = logged_in(imaphost)
    lines = conn.cmd("s1", "STATUS INBOX (MESSAGES UIDNEXT)")
    assert lines[0] == '* STATUS "INBOX" (MESSAGES 1 UIDNEXT 2)'
    conn.send(b"a3 APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
    assert conn.until_tagged("a3")[-1].startswith("a3 OK [APPENDUID ")


# Nesting

NESTED = [
    (b"FETCH 1 " + b"(" * 1000 + b"FLAGS" + b")" * 1000, "BAD Invalid FETCH items"),
    (b"FETCH 1 BODY[HEADER.FIELDS " + b"(" * 1000 + b"SUBJECT" + b")" * 1000 + b"]",
     "BAD Invalid FETCH items"),
    (b"SEARCH " + b"(" * 1000 + b"ALL" + b")" * 1000, "BAD Invalid search criteria"),
    (b"SEARCH " + b"NOT " * 1000 + b"ALL", "BAD Invalid search criteria"),
    (b"SEARCH " + b"OR ALL " * 1000 + b"ALL", "BAD Invalid search criteria"),
    (b"UID SEARCH " + b"(" * 1000 + b"ALL" + b")" * 1000, "BAD Invalid search criteria"),
    (b"STORE 1 FLAGS " + b"(" * 1000 + b"\\Seen" + b")" * 1000, "BAD Invalid flag list"),
    (b"APPEND INBOX " + b"(" * 1000 + b")" * 1000 + b" {1+}\r\nx", "BAD Invalid flag list"),
    (b"STATUS INBOX " + b"(" * 1000 + b"MESSAGES" + b")" * 1000,
     "BAD Invalid arguments: expected STATUS mailbox (items)"),
    (b"LIST " + b"(" * 1000 + b")" * 1000 + b' "" *',
     "BAD Invalid arguments: expected LIST [(options)] reference pattern [RETURN (options)]"),
    (b"ID " + b"(" * 1000 + b")" * 1000, "BAD Invalid arguments: expected ID NIL or a parameter list"),
]


def test_deeply_nested_lists(imaphost):
    append(imaphost, 1)
    conn = selected(imaphost)
    for i, (command, reply) in enumerate(NESTED):
        tag = "d%d" % i
        assert tagged(conn, tag, command) == reply, command[:40]
    assert conn.cmd("n1", "NOOP")[-1] == "n1 OK NOOP completed."
    lines = conn.cmd("f1", "FETCH 1 FLAGS")
    assert lines == ["* 1 FETCH (FLAGS ())", "f1 OK Fetch completed."]


# Command state

BEFORE_LOGIN = ["EXAMINE INBOX", "CREATE x", 'LIST "" *', "STATUS INBOX (MESSAGES)",
                "APPEND INBOX {1+}\r\nx", "UID FETCH 1 FLAGS", "IDLE", "ENABLE UTF8=ACCEPT"]
BEFORE_SELECT = ["STORE 1 +FLAGS (\\Seen)", "COPY 1 Archive", "MOVE 1 Archive", "EXPUNGE",
                 "SEARCH ALL", "UID FETCH 1 FLAGS", "UID STORE 1 FLAGS ()", "UID EXPUNGE 1",
                 "CLOSE", "UNSELECT"]


def test_commands_in_wrong_state(imaphost):
    conn = connect(imaphost)
    for i, command in enumerate(BEFORE_LOGIN):
        tag = "b%d" % i
        assert tagged(conn, tag, command) == "BAD Unknown command, or not allowed before login", command
    assert conn.cmd("n1", "NOOP")[-1] == "n1 OK NOOP completed."

    conn = logged_in(imaphost)
    for i, command in enumerate(BEFORE_SELECT):
        tag = "c%d" % i
        assert tagged(conn, tag, command) == "BAD No mailbox selected", command
    assert tagged(conn, "c98", "LOGIN %s demo" % DEMO) == "BAD Already logged in"
    assert tagged(conn, "c99", "AUTHENTICATE PLAIN") == "BAD Already logged in"
    assert tagged(conn, "s1", "SELECT INBOX") == "OK [READ-WRITE] Select completed."


# Sequence sets

INVALID_SETS = ["0", "1:", "a", "4294967296", "1:4294967296", "99999999999999999999", "*:",
                "1,", ",1", "1,,2", "1::2", "-1", "1:0", "0:*", "$"]


@pytest.mark.parametrize("command", ["FETCH", "UID FETCH"])
def test_invalid_sequence_sets(imaphost, command):
    append(imaphost, 2)
    reply = "BAD Invalid arguments: expected FETCH sequence-set items"
    conn = None
    for i, sequence_set in enumerate(INVALID_SETS):
        if i % BAD_COMMANDS_PER_SESSION == 0:
            conn = selected(imaphost)
        tag = "q%d" % i
        assert tagged(conn, tag, "%s %s FLAGS" % (command, sequence_set)) == reply, sequence_set
    assert conn.cmd("n1", "NOOP")[-1] == "n1 OK NOOP completed."

    conn = selected(imaphost)
    cases = [
        ("STORE 1: FLAGS ()", "BAD Invalid arguments: expected STORE sequence-set action flags"),
        ("UID STORE 4294967296 FLAGS ()", "BAD Invalid arguments: expected STORE sequence-set action flags"),
        ("COPY 1: Archive", "BAD Invalid arguments: expected sequence-set mailbox"),
        ("UID COPY 4294967296 Archive", "BAD Invalid arguments: expected sequence-set mailbox"),
        ("SEARCH 1:", "BAD Invalid search criteria"),
        ("UID SEARCH UID 4294967296", "BAD Invalid search criteria"),
    ]
    for i, (text, expected) in enumerate(cases):
        tag = "r%d" % i
        assert tagged(conn, tag, text) == expected, text
    assert conn.cmd("n2", "NOOP")[-1] == "n2 OK NOOP completed."


def test_max_sequence_number_not_star(imaphost):
    append(imaphost, 2)
    conn = selected(imaphost)
    lines = conn.cmd("f1", "FETCH 4294967295 FLAGS")
    assert lines == ["f1 BAD Invalid message number: the mailbox has 2 messages"]


def test_max_uid_not_star(imaphost):
    append(imaphost, 2)
    conn = selected(imaphost)
    lines = conn.cmd("f1", "UID FETCH 4294967295 FLAGS")
    assert lines == ["f1 OK UID Fetch completed."]


def test_sequence_sets_on_empty_mailbox(imaphost):
    conn = selected(imaphost)
    # By RFC 9051's seq-number rule, a message number above EXISTS gets
    # BAD, and that includes * in an empty mailbox. A UID set that
    # matches nothing is not an error.
    cases = [
        ("FETCH 1:* FLAGS", ["BAD Invalid message number: the mailbox has 0 messages"]),
        ("UID FETCH 1:* FLAGS", ["OK UID Fetch completed."]),
        ("UID FETCH * FLAGS", ["OK UID Fetch completed."]),
        ("STORE 1:* +FLAGS (\\Seen)", ["BAD Invalid message number: the mailbox has 0 messages"]),
        ("UID STORE 1:* +FLAGS (\\Seen)", ["OK UID Store completed."]),
        ("UID COPY 1:* Archive", ["OK Copy completed, no messages."]),
        ("UID MOVE 1:* Archive", ["OK Move completed, no messages."]),
        ("UID EXPUNGE 1:*", ["OK UID Expunge completed."]),
        ("SEARCH 1:*", ["* SEARCH", "OK Search completed."]),
        ("UID SEARCH 1:*", ["* SEARCH", "OK UID Search completed."]),
    ]
    for i, (command, expected) in enumerate(cases):
        tag = "e%d" % i
        lines = conn.cmd(tag, command)
        untagged, last = lines[:-1], lines[-1][len(tag) + 1:]
        assert untagged + [last] == expected, command
    assert conn.cmd("n1", "NOOP")[-1] == "n1 OK NOOP completed."


# Mailbox names

# Each is invalid modified UTF-7 (RFC 3501 section 5.1.3): a shift with no
# closing "-", a character outside the modified base64 alphabet, or raw
# 8-bit text, which IMAP4rev1 allows in no mailbox name.
REJECTED_UTF7 = ["&", "&AGE", "&AOQ", "a&b", "&AGE&-", "&/-", "Entw\u00fcrfe"]

# Also invalid, but accepted by imapd: printable ASCII in base64 ("a",
# "aa"), lone UTF-16 surrogates, and base64 that ends inside a UTF-16
# code unit.
ACCEPTED_BROKEN_UTF7 = ["&AGE-", "&AGEAYQ-", "&2D0-", "&3gA-", "&AGEA-", "&A-"]


def test_create_broken_modified_utf7(imaphost):
    conn = logged_in(imaphost)
    for i, name in enumerate(REJECTED_UTF7):
        tag = "u%d" % i
        assert tagged(conn, tag, 'CREATE "%s"' % name) == "NO [CANNOT] Invalid mailbox name", name
    lines = conn.cmd("l2", 'LIST "" *')
    assert len(lines) == 7, lines
    assert tagged(conn, "c1", 'CREATE "&ZeVnLIqe-"') == "OK Create completed."


def test_create_rejects_invalid_utf7(imaphost):
    conn = logged_in(imaphost)
    accepted = []
    for i, name in enumerate(ACCEPTED_BROKEN_UTF7):
        reply = tagged(conn, "u%d" % i, 'CREATE "%s"' % name)
        if reply != "NO [CANNOT] Invalid mailbox name":
            accepted.append((name, reply))
    assert accepted == []


ESCAPING_NAMES = ["../x", "INBOX/../..", "INBOX/..", "INBOX..", "INBOX...x", "x/../../y",
                  "./x", ".", "..x"]


def test_names_cannot_leave_maildir(imaphost):
    conn = logged_in(imaphost)
    for i, name in enumerate(ESCAPING_NAMES):
        for j, template in enumerate(['CREATE "%s"', 'RENAME Archive "%s"', 'RENAME "%s" x',
                                      'APPEND "%s" {1+}\r\nx', 'EXAMINE "%s"']):
            tag = "x%d.%d" % (i, j)
            command = template % name
            assert tagged(conn, tag, command) == "NO [CANNOT] Invalid mailbox name", command
    assert tagged(conn, "c1", 'CREATE "INBOX.x"') == "OK Create completed."

    home = imaphost.maildir(DEMO).parent
    assert sorted(p.name for p in home.iterdir()) == ["Maildir"]
    assert sorted(p.name for p in home.parent.iterdir()) == ["demo"]
    folders = sorted(p.name for p in imaphost.maildir(DEMO).iterdir() if p.name.startswith("."))
    assert folders == [".Archive", ".Drafts", ".INBOX.x", ".Junk", ".Sent", ".Trash"]
    assert_alive(imaphost)


@pytest.mark.parametrize("command", ["DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "STATUS", "RENAME"])
def test_invalid_name_one_reply(imaphost, command):
    conn = logged_in(imaphost)
    conn.send(b'%s %s "../x"\r\n' % (b"x1", command.encode()))
    conn.send(b"n1 NOOP\r\n")
    lines = conn.until_tagged("n1")
    assert lines == ["x1 NO [CANNOT] Invalid mailbox name", "n1 OK NOOP completed."]
