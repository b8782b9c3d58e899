"""sendmail's command line, checked on what reaches the queue.

These hosts run authd and queued only, so every message stays queued
(deferred: deliverd is not running) and `estafeta queue show` returns the
envelope and the exact bytes sendmail submitted.
"""

import os
import pwd
import re
import subprocess

import pytest

EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75

LOGIN = pwd.getpwuid(os.getuid()).pw_name
GECOS = pwd.getpwuid(os.getuid()).pw_gecos.split(",")[0]


@pytest.fixture
def queue_host(make_mailhost):
    host = make_mailhost(start=False)
    host.start("authd", "queued")
    return host


def queue_ids(host):
    result = host.run("estafeta", "queue", "list")
    assert result.returncode == 0, result.stderr
    return re.findall(r"^([0-9A-F]{8,})\*?\s", result.stdout.decode(), re.M)


def show(host, queue_id):
    """Return (envelope dict with a list of recipients, message bytes)."""
    result = host.run("estafeta", "queue", "show", queue_id)
    assert result.returncode == 0, result.stderr
    head, _, message = result.stdout.partition(b"*** MESSAGE %s ***\n" % queue_id.encode())
    envelope = {"recipients": []}
    for line in head.decode().splitlines()[1:]:
        key, _, value = line.partition(": ")
        if key == "recipient":
            envelope["recipients"].append(value.split(" ")[0])
        else:
            envelope[key] = value
    return envelope, message


def submit(host, *args, input=b"Subject: test\n\nbody\n"):
    """Run sendmail and return (envelope, message) of the one queued message."""
    result = host.run("sendmail", *args, input=input)
    assert result.returncode == 0, result.stderr
    ids = queue_ids(host)
    assert len(ids) == 1, ids
    return show(host, ids[0])


def header_of(message):
    return message.split(b"\n\n", 1)[0]


def field_names(message):
    return [line.split(b":", 1)[0].lower() for line in header_of(message).split(b"\n")
            if line and line[:1] not in (b" ", b"\t")]


def test_plain_recipient(queue_host):
    envelope, message = submit(queue_host, "alice@example.test")
    assert envelope["sender"] == "%s@mail.example.test" % LOGIN
    assert envelope["recipients"] == ["alice@example.test"]
    assert message.endswith(b"Subject: test\n\nbody\n")


def test_local_fields_added(queue_host):
    envelope, message = submit(queue_host, "alice@example.test")
    queue_id = queue_ids(queue_host)[0]
    assert field_names(message)[:4] == [b"received", b"date", b"message-id", b"from"]
    assert re.search(rb"^Received: by mail\.example\.test \(Estafeta, from userid %d\)\n"
                     rb"\tid %s; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n"
                     % (os.getuid(), queue_id.encode()), message, re.M)
    assert b"\nMessage-ID: <%s@mail.example.test>\n" % queue_id.encode() in message
    assert re.search(rb"^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$", message, re.M)


def test_existing_fields_kept(queue_host):
    original = (b"From: Someone <someone@example.test>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
                b"Message-ID: <original@example.test>\nSubject: kept\n\nbody\n")
    _, message = submit(queue_host, "alice@example.test", input=original)
    assert message.endswith(original)
    assert field_names(message)[0] == b"received"
    assert field_names(message).count(b"from") == 1
    assert field_names(message).count(b"date") == 1
    assert field_names(message).count(b"message-id") == 1


def test_from_uses_gecos_name(queue_host):
    _, message = submit(queue_host, "alice@example.test")
    if GECOS:
        assert b"\nFrom: %s <%s@mail.example.test>\n" % (GECOS.encode(), LOGIN.encode()) in message
    else:
        assert b"\nFrom: %s@mail.example.test\n" % LOGIN.encode() in message


@pytest.mark.parametrize("args", [
    ["-f", "sender@client.example.test"],
    ["-fsender@client.example.test"],
    ["-r", "sender@client.example.test"],
    ["-f", "Some One <sender@client.example.test>"],
    ["-f", "<sender@client.example.test>"],
])
def test_sender_option(queue_host, args):
    envelope, message = submit(queue_host, *args, "alice@example.test")
    assert envelope["sender"] == "sender@client.example.test"
    # The display name comes from the invoking user's GECOS field, which
    # may be empty, so only the address part is fixed.
    from_line = re.search(rb"\nFrom: (.*)\n", message).group(1)
    assert re.fullmatch(rb"(.+ <sender@client\.example\.test>|sender@client\.example\.test)", from_line)


def test_sender_bare_name_gets_hostname(queue_host):
    envelope, _ = submit(queue_host, "-f", "cron", "alice@example.test")
    assert envelope["sender"] == "cron@mail.example.test"


def test_null_sender(queue_host):
    envelope, _ = submit(queue_host, "-f", "<>", "alice@example.test")
    assert envelope["sender"] == "<>"


def test_invalid_sender_rejected(queue_host):
    result = queue_host.run("sendmail", "-f", "a b@@c", "alice@example.test", input=b"x\n")
    assert result.returncode == EX_USAGE
    assert b'invalid sender address "a b@@c"' in result.stderr


def test_full_name_option(queue_host):
    _, message = submit(queue_host, "-F", "Cron Daemon", "alice@example.test")
    assert b"\nFrom: Cron Daemon <%s@mail.example.test>\n" % LOGIN.encode() in message


def test_full_name_quoted(queue_host):
    _, message = submit(queue_host, "-FDoe, John", "alice@example.test")
    assert b'\nFrom: "Doe, John" <' in message


def test_full_name_utf8_encoded(queue_host):
    _, message = submit(queue_host, "-F", "Jos\u00e9", "alice@example.test")
    assert b"\nFrom: =?UTF-8?B?Sm9zw6k=?= <" in message


def test_bare_recipient_gets_hostname(queue_host):
    envelope, _ = submit(queue_host, "root")
    assert envelope["recipients"] == ["root@mail.example.test"]


def test_recipient_list_argument(queue_host):
    envelope, _ = submit(queue_host, "alice@example.test, Bob <bob@example.test>")
    assert envelope["recipients"] == ["alice@example.test", "bob@example.test"]


def test_invalid_recipient_rejected(queue_host):
    result = queue_host.run("sendmail", "not an address@", input=b"x\n")
    assert result.returncode == EX_USAGE
    assert b'invalid recipient address "not an address@"' in result.stderr
    assert queue_ids(queue_host) == []


def test_no_recipients_rejected(queue_host):
    result = queue_host.run("sendmail", input=b"Subject: x\n\nbody\n")
    assert result.returncode == EX_USAGE
    assert b"no recipients: give them on the command line or use -t" in result.stderr


def test_t_recipients_from_header(queue_host):
    original = (b"To: Alice <alice@example.test>, bob@example.test\n"
                b"Cc: carol@example.test\n"
                b"Bcc: secret@example.test,\n\thidden@example.test\n"
                b"Subject: -t\n\nbody\n")
    envelope, message = submit(queue_host, "-t", input=original)
    assert envelope["recipients"] == ["alice@example.test", "bob@example.test",
                                      "carol@example.test", "secret@example.test",
                                      "hidden@example.test"]
    assert b"Bcc" not in message
    assert b"hidden@example.test" not in message
    assert message.endswith(b"To: Alice <alice@example.test>, bob@example.test\n"
                            b"Cc: carol@example.test\nSubject: -t\n\nbody\n")


def test_t_adds_command_line_recipients(queue_host):
    envelope, _ = submit(queue_host, "-t", "demo@example.test",
                         input=b"To: alice@example.test\n\nbody\n")
    assert envelope["recipients"] == ["demo@example.test", "alice@example.test"]


def test_t_many_recipients(queue_host):
    addresses = ["user%d@example.test" % i for i in range(300)]
    original = b"To: " + ",\n ".join(addresses).encode() + b"\nSubject: many\n\nbody\n"
    envelope, _ = submit(queue_host, "-t", input=original)
    assert envelope["recipients"] == addresses


def test_t_resent_fields_win(queue_host):
    original = (b"Resent-To: bob@example.test\nResent-Bcc: secret@example.test\n"
                b"To: alice@example.test\nSubject: resent\n\nbody\n")
    envelope, message = submit(queue_host, "-t", input=original)
    assert envelope["recipients"] == ["bob@example.test", "secret@example.test"]
    assert b"Resent-Bcc" not in message
    assert b"\nTo: alice@example.test\n" in message


def test_t_without_recipients_rejected(queue_host):
    result = queue_host.run("sendmail", "-t", input=b"Subject: nobody\n\nbody\n")
    assert result.returncode == EX_USAGE
    assert b"no recipient addresses found in the message header" in result.stderr
    assert queue_ids(queue_host) == []


def test_bcc_kept_without_t(queue_host):
    _, message = submit(queue_host, "alice@example.test",
                        input=b"Bcc: secret@example.test\nSubject: x\n\nbody\n")
    assert b"\nBcc: secret@example.test\n" in message


def test_lone_dot_ends_input(queue_host):
    _, message = submit(queue_host, "alice@example.test",
                        input=b"Subject: dot\n\nfirst\n.\nafter the dot\n")
    assert message.endswith(b"\n\nfirst\n")


@pytest.mark.parametrize("option", ["-i", "-oi"])
def test_lone_dot_kept_with_i(queue_host, option):
    _, message = submit(queue_host, option, "alice@example.test",
                        input=b"Subject: dot\n\nfirst\n.\nafter the dot\n")
    assert message.endswith(b"\n\nfirst\n.\nafter the dot\n")


def test_leading_dots_not_unstuffed(queue_host):
    _, message = submit(queue_host, "alice@example.test",
                        input=b"Subject: dots\n\n..two\n.one and text\n")
    assert message.endswith(b"\n\n..two\n.one and text\n")


def test_crlf_input_stored_as_lf(queue_host):
    _, message = submit(queue_host, "-i", "alice@example.test",
                        input=b"Subject: crlf\r\n\r\nline one\r\nbare\rcr\r\n.\r\nend\r\n")
    assert message.endswith(b"Subject: crlf\n\nline one\nbare\rcr\n.\nend\n")
    assert b"\r\n" not in message


def test_missing_final_newline_added(queue_host):
    _, message = submit(queue_host, "alice@example.test", input=b"Subject: x\n\nno newline")
    assert message.endswith(b"\n\nno newline\n")


def test_leading_from_line_dropped(queue_host):
    _, message = submit(queue_host, "-i", "alice@example.test",
                        input=b"From someone@example.test Mon Jan  1 00:00:00 2024\n"
                              b"Subject: mbox\n\nFrom the body stays\n")
    assert b"From someone" not in message
    assert message.endswith(b"Subject: mbox\n\nFrom the body stays\n")


def test_body_without_header_separated(queue_host):
    _, message = submit(queue_host, "alice@example.test", input=b"just a body line\n")
    assert re.search(rb"\nFrom: [^\n]*\n\njust a body line\n$", message)


def test_body_starting_with_space_separated(queue_host):
    _, message = submit(queue_host, "alice@example.test", input=b"  indented first line\n")
    assert re.search(rb"\nFrom: [^\n]*\n\n  indented first line\n$", message)


def test_header_without_separator_unchanged(queue_host):
    original = b"From: a@example.test\nSubject: no empty line\nthis line ends the header\n"
    _, message = submit(queue_host, "alice@example.test", input=original)
    assert message.endswith(b"\nMessage-ID: <%s@mail.example.test>\n" % queue_ids(queue_host)[0].encode()
                            + original)


def test_empty_message(queue_host):
    _, message = submit(queue_host, "alice@example.test", input=b"")
    assert field_names(message) == [b"received", b"date", b"message-id", b"from"]
    assert message.endswith(b"\n\n")


def test_cron_invocation(queue_host):
    """Debian cron 3.0pl1 runs: sendmail -FCronDaemon -i -B8BITMIME -oem USER."""
    original = (b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> true\n"
                b"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
                b"Content-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9\n")
    envelope, message = submit(queue_host, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root",
                               input=original)
    assert envelope["recipients"] == ["root@mail.example.test"]
    assert envelope["sender"] == "%s@mail.example.test" % LOGIN
    assert message.endswith(original)


def test_cronie_invocation(queue_host):
    """cronie runs: sendmail -FCronDaemon -i -odi -oem -oi -t -f USER."""
    original = b"From: root (Cron Daemon)\nTo: alice@example.test\nSubject: cronie\n\nout\n"
    envelope, message = submit(queue_host, "-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t",
                               "-f", "root", input=original)
    assert envelope["sender"] == "root@mail.example.test"
    assert envelope["recipients"] == ["alice@example.test"]
    assert message.endswith(original)


def test_php_mail_invocation(queue_host):
    """PHP's mail() pipes to sendmail_path, by default "sendmail -t -i"."""
    original = (b"To: bob@example.test\nSubject: from PHP\nX-PHP-Originating-Script: 0:x.php\n"
                b"\r\nline\r\n.\r\nlast\r\n")
    envelope, message = submit(queue_host, "-t", "-i", input=original)
    assert envelope["recipients"] == ["bob@example.test"]
    assert message.endswith(b"X-PHP-Originating-Script: 0:x.php\n\nline\n.\nlast\n")


def test_bsd_mailx(queue_host):
    mailrc = queue_host.dir / "etc" / "mailrc"
    mailrc.write_text("set sendmail=%s\n" % queue_host.bin("sendmail"))
    env = dict(queue_host.env, MAILRC=str(mailrc), HOME=str(queue_host.dir))
    result = subprocess.run(["mail", "-s", "mailx subject", "alice@example.test"],
                            input=b"hello from mailx\n", env=env, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    ids = queue_ids(queue_host)
    assert len(ids) == 1
    envelope, message = show(queue_host, ids[0])
    assert envelope["recipients"] == ["alice@example.test"]
    assert b"\nSubject: mailx subject\n" in message
    assert message.endswith(b"\n\nhello from mailx\n")


@pytest.mark.parametrize("args", [["-B", "7BIT"], ["-B", "8bitmime"], ["-Am"], ["-U"],
                                  ["-N", "never"], ["-R", "hdrs"], ["-V", "envid"], ["-v"],
                                  ["-odi"], ["-oem"], ["-q30m"], ["-n"], ["-x"]])
def test_ignored_options_accepted(queue_host, args):
    envelope, _ = submit(queue_host, *args, "alice@example.test")
    assert envelope["recipients"] == ["alice@example.test"]


def test_double_dash_ends_options(queue_host):
    envelope, _ = submit(queue_host, "--", "alice@example.test")
    assert envelope["recipients"] == ["alice@example.test"]


def test_invalid_body_type(queue_host):
    result = queue_host.run("sendmail", "-B", "BINARY", "alice@example.test", input=b"x\n")
    assert result.returncode == EX_USAGE
    assert b"-B takes 7BIT or 8BITMIME" in result.stderr


def test_unknown_option(queue_host):
    result = queue_host.run("sendmail", "-Z", "alice@example.test", input=b"x\n")
    assert result.returncode == EX_USAGE
    assert b"usage: sendmail" in result.stderr


def test_verbose_prints_queue_id(queue_host):
    result = queue_host.run("sendmail", "-v", "alice@example.test", input=b"x\n")
    assert result.returncode == 0
    assert re.search(rb"queued as [0-9A-F]+", result.stderr)


def test_queued_down_tempfail(queue_host):
    queue_host.stop("queued")
    result = queue_host.run("sendmail", "alice@example.test", input=b"Subject: x\n\nbody\n")
    assert result.returncode == EX_TEMPFAIL
    assert b"cannot queue the message" in result.stderr


def test_message_size_limit(make_mailhost):
    host = make_mailhost(start=False, message_size_limit=2000)
    host.start("authd", "queued")
    result = host.run("sendmail", "alice@example.test", input=b"Subject: big\n\n" + b"x" * 3000 + b"\n")
    assert result.returncode == EX_DATAERR
    assert b"message is larger than message_size_limit (2000 bytes)" in result.stderr
    assert queue_ids(host) == []


def test_config_option_C(queue_host):
    env = {"ESTAFETA_CONFIG": "/nonexistent/estafeta.conf"}
    result = queue_host.run("sendmail", "-C", str(queue_host.config_path), "alice@example.test",
                            input=b"x\n", env=env)
    assert result.returncode == 0, result.stderr
    assert len(queue_ids(queue_host)) == 1


def test_bad_config_exits_ex_config(queue_host):
    result = queue_host.run("sendmail", "alice@example.test", input=b"x\n",
                            env={"ESTAFETA_CONFIG": "/nonexistent/estafeta.conf"})
    assert result.returncode == 78
    assert b"configuration error: /nonexistent/estafeta.conf: cannot open" in result.stderr
