"""sendmail's other modes: -bs (SMTP on stdio), mailq (-bp), newaliases
(-bi) and -q. The hosts run authd and queued only, so queued messages
stay deferred with the reason queued recorded.
"""

import os
import re
import struct
import subprocess

import pytest

EX_NOINPUT = 66
EX_DATAERR = 65
EX_UNAVAILABLE = 69


@pytest.fixture
def queue_host(make_mailhost):
    host = make_mailhost(start=False)
    host.start("authd", "queued")
    return host


def queue_ids(host):
    result = host.run("estafeta", "queue", "list")
    assert result.returncode == 0, result.stderr
    return re.findall(r"^([0-9A-F]{8,})\*?\s", result.stdout.decode(), re.M)


def show_message(host, queue_id):
    result = host.run("estafeta", "queue", "show", queue_id)
    assert result.returncode == 0, result.stderr
    head, _, message = result.stdout.partition(b"*** MESSAGE %s ***\n" % queue_id.encode())
    return head.decode(), message


def smtp_session(host, commands):
    """Run sendmail -bs with COMMANDS (CRLF lines); return the reply lines."""
    result = host.run("sendmail", "-bs", input=b"".join(c + b"\r\n" for c in commands))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"\r\n")
    return result.stdout.decode().split("\r\n")[:-1]


def link_as(host, name):
    """A link named NAME to the sendmail binary, for the argv[0] modes."""
    path = host.dir / name
    os.symlink(host.bin("sendmail"), path)
    return str(path)


def read_cdb(path):
    """All (key, value) records of a cdb file (format: D. J. Bernstein's cdb)."""
    data = path.read_bytes()
    first_table = min(struct.unpack_from("<II", data, 8 * i)[0] for i in range(256))
    records, pos = {}, 2048
    while pos < first_table:
        klen, dlen = struct.unpack_from("<II", data, pos)
        key = data[pos + 8:pos + 8 + klen]
        records[key.decode()] = data[pos + 8 + klen:pos + 8 + klen + dlen].decode()
        pos += 8 + klen + dlen
    return records


# sendmail -bs

def test_bs_session(queue_host):
    replies = smtp_session(queue_host, [
        b"EHLO client.example.test",
        b"MAIL FROM:<sender@client.example.test> BODY=8BITMIME",
        b"RCPT TO:<alice@example.test>",
        b"RCPT TO:<root>",
        b"DATA",
        b"Subject: via -bs",
        b"",
        b"..leading dot",
        b"last line",
        b".",
        b"QUIT",
    ])
    assert replies[0] == "220 mail.example.test ESMTP Estafeta"
    assert replies[1:6] == ["250-mail.example.test", "250-PIPELINING", "250-8BITMIME",
                            "250-SMTPUTF8", "250 ENHANCEDSTATUSCODES"]
    assert replies[6] == "250 2.1.0 Ok"
    assert replies[7] == "250 2.1.5 Ok"
    assert replies[8] == "250 2.1.5 Ok"
    assert replies[9] == "354 End data with <CR><LF>.<CR><LF>"
    match = re.fullmatch(r"250 2\.0\.0 Ok: queued as ([0-9A-F]+)", replies[10])
    assert match
    assert replies[11] == "221 2.0.0 Bye"

    head, message = show_message(queue_host, match.group(1))
    assert "sender: sender@client.example.test" in head
    assert "recipient: alice@example.test " in head
    assert "recipient: root@mail.example.test " in head
    assert message.endswith(b"Subject: via -bs\n\n.leading dot\nlast line\n")
    assert re.match(rb"Received: from client\.example\.test\n\tby mail\.example\.test "
                    rb"\(Estafeta, from userid \d+\) with ESMTP\n\tid %s; " % match.group(1).encode(),
                    message)


def test_bs_lf_line_ends(queue_host):
    result = queue_host.run("sendmail", "-bs", input=b"HELO client\nMAIL FROM:<>\n"
                            b"RCPT TO:<alice@example.test>\nDATA\nSubject: lf\n\nbody\n.\nQUIT\n")
    assert result.returncode == 0
    lines = result.stdout.decode().split("\r\n")
    assert lines[1] == "250 mail.example.test"
    assert lines[5].startswith("250 2.0.0 Ok: queued as ")
    assert len(queue_ids(queue_host)) == 1


def test_bs_two_messages(queue_host):
    replies = smtp_session(queue_host, [
        b"EHLO c", b"MAIL FROM:<a@example.test>", b"RCPT TO:<alice@example.test>", b"DATA",
        b"Subject: one", b"", b"1", b".",
        b"MAIL FROM:<a@example.test>", b"RCPT TO:<bob@example.test>", b"DATA",
        b"Subject: two", b"", b"2", b".", b"QUIT"])
    assert len([r for r in replies if r.startswith("250 2.0.0 Ok: queued as ")]) == 2
    assert len(queue_ids(queue_host)) == 2


@pytest.mark.parametrize("commands, expected", [
    ([b"RCPT TO:<alice@example.test>"], "503 5.5.1 Error: need MAIL command"),
    ([b"MAIL FROM:<a@example.test>", b"DATA"], "554 5.5.1 Error: no valid recipients"),
    ([b"DATA"], "503 5.5.1 Error: need RCPT command"),
    ([b"MAIL FROM:<a@example.test>", b"MAIL FROM:<b@example.test>"],
     "503 5.5.1 Error: nested MAIL command"),
    ([b"MAIL FROM:a@example.test"], "501 5.1.7 Bad sender address syntax: invalid address"),
    ([b"MAIL TO:<a@example.test>"], "501 5.5.4 Syntax: MAIL FROM:<address>"),
    ([b"MAIL FROM:<a@example.test> FROB=1"], "555 5.5.4 Unsupported MAIL FROM parameter"),
    ([b"MAIL FROM:<a@example.test>", b"RCPT TO:<a b@example.test>"],
     "501 5.1.3 Bad recipient address syntax"),
    ([b"MAIL FROM:<a@example.test>", b"RCPT TO:<>"], "501 5.1.3 Bad recipient address syntax"),
    ([b"EHLO"], "501 5.5.4 Syntax: EHLO hostname"),
    ([b"ETRN example.test"], "502 5.5.2 Error: command not recognized"),
    ([b"NOOP"], "250 2.0.0 Ok"),
    ([b"RSET"], "250 2.0.0 Ok"),
    ([b"VRFY alice"], "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"),
    ([b"X" * 5000], "500 5.5.2 Error: line too long"),
    ([b"NO\x00OP"], "500 5.5.2 Error: NUL byte in command"),
])
def test_bs_error_replies(queue_host, commands, expected):
    replies = smtp_session(queue_host, commands + [b"QUIT"])
    assert replies[-2] == expected
    assert replies[-1] == "221 2.0.0 Bye"
    assert queue_ids(queue_host) == []


def test_bs_rset_clears_transaction(queue_host):
    replies = smtp_session(queue_host, [b"MAIL FROM:<a@example.test>",
                                        b"RCPT TO:<alice@example.test>", b"RSET", b"DATA",
                                        b"QUIT"])
    assert replies[-2] == "503 5.5.1 Error: need RCPT command"


def test_bs_input_ends_in_data(queue_host):
    result = queue_host.run("sendmail", "-bs", input=b"MAIL FROM:<a@example.test>\r\n"
                            b"RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: cut\r\n")
    assert result.returncode == 0
    assert queue_ids(queue_host) == []


def test_bs_queued_down(queue_host):
    queue_host.stop("queued")
    replies = smtp_session(queue_host, [b"MAIL FROM:<a@example.test>",
                                        b"RCPT TO:<alice@example.test>", b"DATA",
                                        b"Subject: x", b"", b"y", b".", b"QUIT"])
    assert replies[-2] == "451 4.3.0 Error: queue file write error"


# mailq

def test_mailq_empty(queue_host):
    result = queue_host.run("sendmail", "-bp")
    assert result.returncode == 0
    assert result.stdout == b"Mail queue is empty\n"


def test_mailq_deferred_message(queue_host):
    result = queue_host.run("sendmail", "-f", "sender@client.example.test",
                            "alice@example.test", "bob@example.test",
                            input=b"Subject: deferred\n\nbody\n")
    assert result.returncode == 0
    queue_id = queue_ids(queue_host)[0]

    result = queue_host.run("sendmail", "-bp")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().split("\n")
    assert lines[0] == "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
    assert re.fullmatch(r"%s\*? {1,}\d+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d sender@client\.example\.test"
                        % queue_id, lines[1])
    assert re.fullmatch(r" *\(.*lmtp\.sock.*\)", lines[2])
    assert lines[3] == " " * 47 + "alice@example.test"
    assert lines[4] == " " * 47 + "bob@example.test"
    assert lines[5] == ""
    assert re.fullmatch(r"-- 0 Kbytes in 1 Request\.", lines[6])
    assert lines[7:] == [""]


def test_mailq_by_program_name(queue_host):
    queue_host.run("sendmail", "alice@example.test", input=b"Subject: x\n\ny\n")
    mailq = link_as(queue_host, "mailq")
    result = subprocess.run([mailq], capture_output=True, env=queue_host.env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"----Queue ID-----")
    assert b"alice@example.test" in result.stdout
    assert result.stdout.endswith(b"in 1 Request.\n")


def test_mailq_two_messages(queue_host):
    for rcpt in ("alice@example.test", "bob@example.test"):
        queue_host.run("sendmail", rcpt, input=b"Subject: x\n\n" + b"y" * 2000 + b"\n")
    result = queue_host.run("sendmail", "-bp")
    assert re.search(rb"\n-- \d+ Kbytes in 2 Requests\.\n$", result.stdout)
    assert result.stdout.count(b"\n\n") == 2


def test_mailq_queued_down(queue_host):
    queue_host.stop("queued")
    result = queue_host.run("sendmail", "-bp")
    assert result.returncode == EX_UNAVAILABLE
    assert b"cannot list the queue: cannot connect to queued" in result.stderr


# sendmail -q

def test_flush_all(queue_host):
    queue_host.run("sendmail", "alice@example.test", input=b"Subject: x\n\ny\n")
    result = queue_host.run("sendmail", "-q")
    assert result.returncode == 0, result.stderr


def test_flush_one(queue_host):
    queue_host.run("sendmail", "alice@example.test", input=b"Subject: x\n\ny\n")
    queue_id = queue_ids(queue_host)[0]
    result = queue_host.run("sendmail", "-qI" + queue_id)
    assert result.returncode == 0, result.stderr


def test_flush_queued_down(queue_host):
    queue_host.stop("queued")
    result = queue_host.run("sendmail", "-q")
    assert result.returncode == EX_UNAVAILABLE
    assert b"cannot flush the queue" in result.stderr


def test_flush_site_unsupported(queue_host):
    result = queue_host.run("sendmail", "-qRexample.test")
    assert result.returncode == 64
    assert b"-qR and -qS are not supported" in result.stderr


# newaliases

ALIASES = ("# test aliases\n"
           "Postmaster: demo@example.test\n"
           "team@example.test: alice@example.test,\n"
           "  bob@example.test\n"
           "archive: /var/tmp/archive, \"|/usr/bin/logger -t mail\"\n")


@pytest.mark.parametrize("args", [["-bi"], ["-bI"], ["-I"]])
def test_newaliases_builds_cdb(make_mailhost, args):
    host = make_mailhost(start=False, aliases=ALIASES)
    result = host.run("sendmail", *args)
    assert result.returncode == 0, result.stderr
    records = read_cdb(host.dir / "etc" / "aliases.cdb")
    assert records["postmaster"] == "demo@example.test"
    assert records["team@example.test"] == "alice@example.test, bob@example.test"
    assert records["archive"] == "/var/tmp/archive, \"|/usr/bin/logger -t mail\""


def test_newaliases_by_program_name(make_mailhost):
    host = make_mailhost(start=False, aliases="root: demo@example.test\n")
    newaliases = link_as(host, "newaliases")
    result = subprocess.run([newaliases], capture_output=True, env=host.env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert read_cdb(host.dir / "etc" / "aliases.cdb") == {"root": "demo@example.test"}


def test_newaliases_other_file(make_mailhost):
    host = make_mailhost(start=False)
    other = host.dir / "etc" / "other-aliases"
    other.write_text("abuse: demo@example.test\n")
    result = host.run("sendmail", "-bi", "-oA" + str(other))
    assert result.returncode == 0, result.stderr
    assert read_cdb(host.dir / "etc" / "other-aliases.cdb") == {"abuse": "demo@example.test"}


def test_newaliases_warns_on_stderr(make_mailhost):
    host = make_mailhost(start=False, aliases="twice: demo@example.test\ntwice: alice@example.test\n")
    result = host.run("sendmail", "-bi")
    assert result.returncode == 0
    assert b"duplicate alias twice" in result.stderr
    assert b"compiled" not in result.stderr
    assert read_cdb(host.dir / "etc" / "aliases.cdb") == {"twice": "demo@example.test"}


def test_newaliases_replaces_old_map(make_mailhost):
    host = make_mailhost(start=False, aliases="old: demo@example.test\n")
    assert host.run("sendmail", "-bi").returncode == 0
    host.write_aliases("new: alice@example.test\n")
    assert host.run("sendmail", "-bi").returncode == 0
    assert read_cdb(host.dir / "etc" / "aliases.cdb") == {"new": "alice@example.test"}


def test_newaliases_syntax_error(make_mailhost):
    host = make_mailhost(start=False, aliases="good: demo@example.test\nbroken line\n")
    result = host.run("sendmail", "-bi")
    assert result.returncode == EX_DATAERR
    assert re.search(rb"aliases:2: ", result.stderr), result.stderr
    assert not (host.dir / "etc" / "aliases.cdb").exists()


def test_newaliases_missing_file(make_mailhost):
    host = make_mailhost(start=False)
    result = host.run("sendmail", "-bi", "-oA/nonexistent/aliases")
    assert result.returncode == EX_NOINPUT
    assert b"cannot read the aliases file /nonexistent/aliases" in result.stderr
