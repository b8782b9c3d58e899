"""The quarantine path: a message with filterd's quarantine verdict goes
through queued (quarantine=1 in COMMIT and in the envelope) and over LMTP
(deliverd's private MAIL parameter XQUARANTINE) into the recipient's Junk
folder, which imapd lists with the \\Junk special-use attribute.

The queue side is driven with a raw client of queued's socket, and
deliverd with Python's smtplib.LMTP on its socket.
"""

import os
import re
import smtplib
import time

from test_queue_ipc import QueueClient, as_nobody, message

DEMO = "demo@example.test"
ALICE = "alice@example.test"
FAST_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "1s",
              "queue_run_delay": "1s"}


def lmtp(host):
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=30)
    code, _ = client.ehlo("client.example.test")
    assert code == 250
    return client


def lhlo_keywords(client):
    return client.ehlo_resp.decode().splitlines()[1:]


def folder_files(host, address, folder="Junk"):
    """The message files in the Maildir++ folder FOLDER of ADDRESS."""
    directory = host.maildir(address) / ("." + folder)
    files = []
    for sub in ("new", "cur"):
        if (directory / sub).is_dir():
            files += sorted(p for p in (directory / sub).iterdir() if p.is_file())
    return files


def wait_for_folder(host, address, count, folder="Junk", timeout=15):
    """Wait until FOLDER of ADDRESS contains COUNT messages; return their contents."""
    deadline = time.monotonic() + timeout
    while True:
        found = [p.read_bytes() for p in folder_files(host, address, folder)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def commit(host, rcpts, subject, quarantine="1"):
    """Commit a message through queued's socket; return (reply type, fields, id)."""
    client = QueueClient(host.settings["queued_socket"])
    try:
        extra = [("quarantine", quarantine)] if quarantine is not None else []
        return client.submit("sender@example.org", rcpts, message(subject, to=rcpts[0]),
                             extra=extra, protocol="ESMTP")
    finally:
        client.close()


def lmtp_deliver(client, rcpt, mail_params=" XQUARANTINE", subject="lmtp quarantine"):
    """One transaction on CLIENT; return the end-of-data reply."""
    assert client.docmd("MAIL FROM:<sender@example.org>%s" % mail_params)[0] == 250
    assert client.docmd("RCPT TO:<%s>" % rcpt)[0] == 250
    body = message(subject, to=rcpt).replace(b"\n", b"\r\n")
    code, _ = client.docmd("DATA")
    assert code == 354
    client.send(body + b".\r\n")
    return client.getreply()


def test_lhlo_offers_xquarantine(mailhost):
    client = lmtp(mailhost)
    assert "XQUARANTINE" in lhlo_keywords(client)
    client.quit()


def test_lmtp_parameter_delivers_to_junk(mailhost):
    client = lmtp(mailhost)
    code, text = lmtp_deliver(client, DEMO)
    client.quit()

    assert code == 250
    assert b"delivered to maildir folder Junk" in text
    junk = mailhost.maildir(DEMO) / ".Junk"
    assert len(folder_files(mailhost, DEMO)) == 1
    assert (junk / "maildirfolder").exists()
    assert (junk / "tmp").is_dir()
    assert mailhost.messages(DEMO) == []
    assert b"Subject: lmtp quarantine" in folder_files(mailhost, DEMO)[0].read_bytes()


def test_lmtp_without_parameter_to_inbox(mailhost):
    client = lmtp(mailhost)
    code, text = lmtp_deliver(client, DEMO, mail_params="", subject="plain")
    client.quit()

    assert code == 250
    assert len(mailhost.messages(DEMO)) == 1
    assert folder_files(mailhost, DEMO) == []


def test_flag_cleared_by_next_transaction(mailhost):
    client = lmtp(mailhost)
    assert lmtp_deliver(client, DEMO, subject="first")[0] == 250
    assert lmtp_deliver(client, DEMO, mail_params="", subject="second")[0] == 250
    client.docmd("RSET")
    client.quit()

    junk = folder_files(mailhost, DEMO)
    inbox = mailhost.messages(DEMO)
    assert len(junk) == 1
    assert b"Subject: first" in junk[0].read_bytes()
    assert len(inbox) == 1
    assert b"Subject: second" in inbox[0]


def test_xquarantine_value_rejected(mailhost):
    client = lmtp(mailhost)
    code, text = client.docmd("MAIL FROM:<sender@example.org> XQUARANTINE=1")
    assert code == 501
    assert text.startswith(b"5.5.4")
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    client.quit()


def test_two_local_recipients_both_junk(mailhost):
    msg_type, reply, queue_id = commit(mailhost, [DEMO, ALICE], "two recipients")
    assert msg_type == "COMMIT-OK", reply

    demo = wait_for_folder(mailhost, DEMO, 1)
    alice = wait_for_folder(mailhost, ALICE, 1)
    assert len(demo) == 1
    assert len(alice) == 1
    assert b"Subject: two recipients" in demo[0]
    assert b"Subject: two recipients" in alice[0]
    assert mailhost.messages(DEMO) == []
    assert mailhost.messages(ALICE) == []
    assert mailhost.wait_for_log(queue_id + r": to=<alice@example.test>.*status=sent "
                                 r"\(250 2\.0\.0 <alice@example.test> delivered to maildir folder Junk\)")


def test_alias_members_get_junk(mailhost):
    msg_type, reply, _ = commit(mailhost, ["team@example.test"], "to the team")
    assert msg_type == "COMMIT-OK", reply

    alice = wait_for_folder(mailhost, ALICE, 1)
    bob = wait_for_folder(mailhost, "bob@example.test", 1)
    assert len(alice) == 1
    assert len(bob) == 1
    assert mailhost.messages(ALICE) == []
    assert mailhost.messages("bob@example.test") == []


def test_mbox_user_gets_inbox(make_mailhost):
    host = make_mailhost(mail_location="mbox:~/mail")
    msg_type, reply, queue_id = commit(host, [DEMO], "mbox quarantine")
    assert msg_type == "COMMIT-OK", reply

    assert host.wait_for_log(queue_id + r": to=<demo@example.test>.*status=sent")
    spool = [p.read_bytes() for p in (host.dir / "var-mail").iterdir()]
    assert len(spool) == 1
    assert b"Subject: mbox quarantine" in spool[0]
    assert host.wait_for_log(r"quarantined message for demo@example.test goes to the mbox "
                             r"inbox .*: the quarantine folder needs a Maildir")


def test_commit_without_flag_to_inbox(mailhost):
    msg_type, reply, _ = commit(mailhost, [DEMO], "not quarantined", quarantine=None)
    assert msg_type == "COMMIT-OK", reply

    assert len(mailhost.wait_for_messages(DEMO, 1)) == 1
    assert folder_files(mailhost, DEMO) == []


def test_invalid_quarantine_value_fails(mailhost):
    msg_type, reply, _ = commit(mailhost, [DEMO], "bad flag", quarantine="yes")

    assert msg_type == "COMMIT-FAIL"
    assert reply["reason"] == "invalid quarantine: expected 1"


def test_flag_survives_queued_kill(make_mailhost):
    host = make_mailhost(**FAST_RETRY)
    host.stop("deliverd")
    msg_type, reply, queue_id = commit(host, [DEMO], "survives kill")
    assert msg_type == "COMMIT-OK", reply
    assert host.wait_for_log(queue_id + r": to=<demo@example.test>.*status=deferred")
    envelope_path = host.dir / "spool" / "deferred" / queue_id
    deadline = time.monotonic() + 10
    while not envelope_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    envelope = envelope_path.read_text()
    assert "\nquarantine=1\n" in envelope

    host.kill("queued")
    host.start("deliverd")
    host.start("queued")

    found = wait_for_folder(host, DEMO, 1)
    assert len(found) == 1
    assert b"Subject: survives kill" in found[0]
    assert host.messages(DEMO) == []


def test_ordinary_user_flag_ignored(mailhost):
    def submit_as_nobody(hold, path):
        client = QueueClient(path)
        try:
            return client.submit("", [DEMO], message("from nobody", to=DEMO),
                                 extra=[("quarantine", "1")])
        finally:
            client.close()

    msg_type, _, queue_id = as_nobody(submit_as_nobody, mailhost.settings["queued_socket"])
    assert msg_type == "COMMIT-OK"

    assert len(mailhost.wait_for_messages(DEMO, 1)) == 1
    assert folder_files(mailhost, DEMO) == []
    assert mailhost.wait_for_log(queue_id + r": quarantine from uid \d+ ignored: only smtpd may set them")


def test_imapd_lists_junk_with_message(mailhost):
    msg_type, reply, _ = commit(mailhost, [DEMO], "seen over imap")
    assert msg_type == "COMMIT-OK", reply
    assert len(wait_for_folder(mailhost, DEMO, 1)) == 1

    mailhost.start("imapd")
    imap = mailhost.imap()
    try:
        assert imap.login(DEMO, "demo")[0] == "OK"
        typ, data = imap._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
        assert typ == "OK"
        _, lines = imap._untagged_response(typ, data, "LIST")
        junk = [line for line in lines if line.endswith(b'"Junk"')]
        assert len(junk) == 1
        assert b"\\Junk" in junk[0]

        typ, data = imap.select("Junk", readonly=True)
        assert typ == "OK"
        assert data == [b"1"]
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        assert b"Subject: seen over imap" in data[0][1]
    finally:
        imap.logout()


def write_subscriptions(host, text):
    """Deliver one plain message so that deliverd creates the Maildir as
    its owner, then give the owner a subscriptions file with TEXT."""
    msg_type, reply, _ = commit(host, [DEMO], "creates the maildir", quarantine=None)
    assert msg_type == "COMMIT-OK", reply
    assert len(host.wait_for_messages(DEMO, 1)) == 1
    maildir = host.maildir(DEMO)
    path = maildir / "subscriptions"
    path.write_text(text)
    owner = maildir.stat()
    os.chown(path, owner.st_uid, owner.st_gid)
    return path


def test_existing_subscriptions_get_junk(mailhost):
    path = write_subscriptions(mailhost, "V\t2\n\nSent\n")
    msg_type, reply, _ = commit(mailhost, [DEMO], "subscribed")
    assert msg_type == "COMMIT-OK", reply

    assert len(wait_for_folder(mailhost, DEMO, 1)) == 1
    assert path.read_text() == "V\t2\n\nSent\nJunk\n"


def test_nested_folder_name(make_mailhost):
    host = make_mailhost(deliverd_quarantine_folder="Spam.Quarantine")
    path = write_subscriptions(host, "V\t2\n\n")
    msg_type, reply, _ = commit(host, [DEMO], "nested")
    assert msg_type == "COMMIT-OK", reply

    found = wait_for_folder(host, DEMO, 1, folder="Spam.Quarantine")
    assert len(found) == 1
    assert (host.maildir(DEMO) / ".Spam.Quarantine" / "maildirfolder").exists()
    assert path.read_text() == "V\t2\n\nSpam\tQuarantine\n"


def test_folder_off_not_advertised(make_mailhost):
    host = make_mailhost(deliverd_quarantine_folder="")
    client = lmtp(host)
    assert "XQUARANTINE" not in lhlo_keywords(client)

    code, text = client.docmd("MAIL FROM:<sender@example.org> XQUARANTINE")
    assert code == 555
    assert text.startswith(b"5.5.4")
    client.quit()

    msg_type, reply, queue_id = commit(host, [DEMO], "to the inbox")
    assert msg_type == "COMMIT-OK", reply
    assert len(host.wait_for_messages(DEMO, 1)) == 1
    assert folder_files(host, DEMO) == []
    assert host.wait_for_log(queue_id + r": deliverd\[.*\] does not offer XQUARANTINE; "
                             r"the quarantined message goes to the inbox")


def test_config_check_rejects_folder(make_mailhost):
    host = make_mailhost(start=False)
    for value in ("../outside", ".Junk", "Junk..Spam", "INBOX", "Junk/Spam", "Spam&Ham"):
        with open(host.config_path, "a") as config:
            config.write("deliverd_quarantine_folder = %s\n" % value)
        line = sum(1 for _ in open(host.config_path))

        check = host.run("estafeta", "config", "check")

        assert check.returncode == 1, value
        assert ("%s:%d: invalid value" % (host.config_path, line)) in check.stderr.decode()
        host.write_config()
