"""deliverd alias expansion: files, commands, :include:, self references,
loops, +detail and resubmission of addresses on other hosts."""

import os
import smtplib
import stat

import pytest

BASE_ALIASES = (
    "postmaster: demo@example.test\n"
    "team@example.test: alice@example.test, bob@example.test\n"
)

CAPTURE_SCRIPT = """#!/bin/sh
out={dir}/out.$$
env > $out.env
cat > $out.tmp
mv $out.tmp $out.msg
exit {status}
"""


def deliver(host, rcpt, body=b"Subject: alias test\r\n\r\nFrom the start\r\nbody\r\n",
            sender="sender@example.org"):
    """One LMTP transaction to RCPT; returns (RCPT reply, DATA reply or None)."""
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=60)
    client.ehlo("client.example.test")
    assert client.docmd("MAIL FROM:<%s>" % sender)[0] == 250
    rcpt_reply = client.docmd("RCPT TO:<%s>" % rcpt)
    data_reply = None
    if rcpt_reply[0] == 250:
        assert client.docmd("DATA")[0] == 354
        client.send(body + b".\r\n")
        data_reply = client.getreply()
    client.quit()
    return rcpt_reply, data_reply


def shared_dir(host, name):
    """A directory every user (default_privs included) may write."""
    path = host.dir / name
    path.mkdir()
    os.chmod(path, 0o1777)
    return path


def capture_command(host, status=0):
    outdir = shared_dir(host, "capture")
    script = host.dir / "etc" / "capture.sh"
    script.write_text(CAPTURE_SCRIPT.format(dir=outdir, status=status))
    os.chmod(script, 0o755)
    return outdir, script


def captured(outdir):
    messages = sorted(outdir.glob("out.*.msg"))
    envs = sorted(outdir.glob("out.*.env"))
    return messages, envs


def test_alias_to_file(make_mailhost):
    host = make_mailhost(start=False)
    files = shared_dir(host, "files")
    host.write_aliases(BASE_ALIASES + "archive: %s/archive.mbox\n" % files)
    host.newaliases()
    host.start()

    for _ in range(2):
        rcpt_reply, data_reply = deliver(host, "archive@mail.example.test")
        assert rcpt_reply[0] == 250
        assert data_reply[0] == 250
        assert b"delivered to file" in data_reply[1]

    content = (files / "archive.mbox").read_bytes()
    assert content.startswith(b"From sender@example.org ")
    assert content.count(b"\nFrom sender@example.org ") == 1
    assert b"Return-Path: <sender@example.org>\nDelivered-To: archive@mail.example.test\n" in content
    assert b"\n>From the start\n" in content
    assert content.endswith(b"body\n\n")
    if os.geteuid() == 0:
        assert (files / "archive.mbox").stat().st_uid == 65534
    assert not (files / "archive.mbox.lock").exists()


def test_alias_to_maildir_path(make_mailhost):
    host = make_mailhost(start=False)
    files = shared_dir(host, "files")
    host.write_aliases(BASE_ALIASES + "box: %s/box/\n" % files)
    host.newaliases()
    host.start()

    _, data_reply = deliver(host, "box@mail.example.test")
    assert data_reply[0] == 250
    new = list((files / "box" / "new").iterdir())
    assert len(new) == 1
    assert ",S=%d" % new[0].stat().st_size in new[0].name


def test_alias_to_command(make_mailhost):
    host = make_mailhost(start=False)
    outdir, script = capture_command(host)
    host.write_aliases(BASE_ALIASES + 'pipe: "|%s"\n' % script)
    host.newaliases()
    host.start()

    rcpt_reply, data_reply = deliver(host, "pipe+ext@mail.example.test")
    assert rcpt_reply[0] == 250
    assert data_reply[0] == 250

    messages, envs = captured(outdir)
    assert len(messages) == 1
    message = messages[0].read_bytes()
    assert message.startswith(b"From sender@example.org ")
    assert b"\nReturn-Path: <sender@example.org>\nDelivered-To: pipe+ext@mail.example.test\n" in message
    assert message.endswith(b"\nFrom the start\nbody\n")

    env = dict(line.split("=", 1) for line in envs[0].read_text().splitlines() if "=" in line)
    assert env["SENDER"] == "sender@example.org"
    assert env["RECIPIENT"] == "pipe+ext@mail.example.test"
    assert env["LOCAL"] == "pipe+ext"
    assert env["DOMAIN"] == "mail.example.test"
    assert env["EXTENSION"] == "ext"
    if os.geteuid() == 0:
        assert env["USER"] == "nobody"
        assert messages[0].stat().st_uid == 65534


@pytest.mark.parametrize("status, code, dsn", [
    (75, 451, b"4.3.0"),
    (67, 550, b"5.1.1"),
    (1, 550, b"5.3.0"),
])
def test_command_exit_status(make_mailhost, status, code, dsn):
    host = make_mailhost(start=False)
    outdir, script = capture_command(host, status)
    host.write_aliases(BASE_ALIASES + "pipe: |%s\n" % script)
    host.newaliases()
    host.start()

    _, data_reply = deliver(host, "pipe@mail.example.test")
    assert data_reply[0] == code
    assert data_reply[1].startswith(dsn)
    assert b"exit status %d" % status in data_reply[1]


def test_command_time_limit(make_mailhost):
    host = make_mailhost(start=False, command_time_limit=1)
    host.write_aliases(BASE_ALIASES + "slow: |/bin/sleep 30\n")
    host.newaliases()
    host.start()

    _, data_reply = deliver(host, "slow@mail.example.test")
    assert data_reply[0] == 550
    assert b"time limit" in data_reply[1]


def test_include_file(make_mailhost):
    host = make_mailhost(start=False)
    staff = host.dir / "etc" / "staff"
    staff.write_text("# staff\nalice@example.test\nbob@example.test, demo@example.test\n")
    os.chmod(staff, 0o644)
    host.write_aliases(BASE_ALIASES + "staff: :include:%s\n" % staff)
    host.newaliases()
    host.start()

    _, data_reply = deliver(host, "staff@mail.example.test")
    assert data_reply[0] == 250
    for user in ("alice@example.test", "bob@example.test", "demo@example.test"):
        assert len(host.messages(user)) == 1


def test_include_file_writable_by_others(make_mailhost):
    host = make_mailhost(start=False)
    staff = host.dir / "etc" / "staff"
    staff.write_text("alice@example.test\n")
    os.chmod(staff, 0o666)
    host.write_aliases(BASE_ALIASES + "staff: :include:%s\n" % staff)
    host.newaliases()
    host.start()

    rcpt_reply, _ = deliver(host, "staff@mail.example.test")
    assert rcpt_reply[0] == 550
    assert rcpt_reply[1].startswith(b"5.3.5")
    assert host.messages("alice@example.test") == []


def test_alias_listing_itself(make_mailhost):
    host = make_mailhost(aliases=BASE_ALIASES +
                         "alice@example.test: alice@example.test, bob@example.test\n")
    _, data_reply = deliver(host, "alice@example.test")
    assert data_reply[0] == 250
    assert len(host.messages("alice@example.test")) == 1
    assert len(host.messages("bob@example.test")) == 1


def test_alias_loop_ends_at_user(make_mailhost):
    host = make_mailhost(aliases=BASE_ALIASES + "loop1: loop2\nloop2: loop1@localhost\n")
    rcpt_reply, _ = deliver(host, "loop1@mail.example.test")
    assert rcpt_reply[0] == 550
    assert rcpt_reply[1].startswith(b"5.1.1")


def test_alias_nesting_limit(make_mailhost):
    chain = "".join("level%d: level%d\n" % (i, i + 1) for i in range(25))
    host = make_mailhost(aliases=BASE_ALIASES + chain + "level25: alice@example.test\n")
    rcpt_reply, _ = deliver(host, "level0@mail.example.test")
    assert rcpt_reply[0] == 550
    assert rcpt_reply[1].startswith(b"5.4.6")
    rcpt_reply, data_reply = deliver(host, "level10@mail.example.test")
    assert rcpt_reply[0] == 250
    assert data_reply[0] == 250


def test_alias_with_detail(make_mailhost):
    host = make_mailhost(aliases=BASE_ALIASES + "sales: alice@example.test\n")
    _, data_reply = deliver(host, "sales+2024@mail.example.test")
    assert data_reply[0] == 250
    assert len(host.messages("alice@example.test")) == 1


def test_member_unknown(make_mailhost):
    host = make_mailhost(aliases=BASE_ALIASES + "mixed: alice@example.test, ghost@example.test\n")
    rcpt_reply, data_reply = deliver(host, "mixed@mail.example.test")
    assert rcpt_reply[0] == 250
    assert data_reply[0] == 550
    assert b"ghost@example.test" in data_reply[1]
    assert len(host.messages("alice@example.test")) == 1


def test_alias_to_other_host_resubmitted(make_mailhost):
    host = make_mailhost(aliases=BASE_ALIASES +
                         "outside: someone@remote.example, alice@example.test\n")
    _, data_reply = deliver(host, "outside@mail.example.test")
    assert data_reply[0] == 250
    assert len(host.messages("alice@example.test")) == 1
    assert host.wait_for_log(r"to=<someone@remote\.example>, orig_to=<outside@mail\.example\.test>, "
                             r"relay=local, .*status=sent \(forwarded as \w+\)")
    # The message stays deferred in queued, which has no outbound SMTP client yet.
    assert host.wait_for_log(r"to=<someone@remote\.example>, relay=none")


def test_newaliases_seen_without_restart(make_mailhost):
    host = make_mailhost()
    rcpt_reply, _ = deliver(host, "late@mail.example.test")
    assert rcpt_reply[0] == 550
    host.write_aliases(BASE_ALIASES + "late: bob@example.test\n")
    host.newaliases()
    _, data_reply = deliver(host, "late@mail.example.test")
    assert data_reply[0] == 250
    assert len(host.messages("bob@example.test")) == 1


def test_virtual_alias_full_address(mailhost):
    _, data_reply = deliver(mailhost, "TEAM@Example.Test")
    assert data_reply[0] == 250
    assert len(mailhost.messages("alice@example.test")) == 1
    assert len(mailhost.messages("bob@example.test")) == 1
    assert stat.S_IMODE(mailhost.maildir("alice@example.test").stat().st_mode) == 0o700
