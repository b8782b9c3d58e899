"""smtpd MAIL and RCPT: command order, paths, parameters, recipient
policy (users, aliases, postmaster, relay) and limits."""

import signal
import time

import pytest


def session(host, source=None):
    conn = host.raw(source=source)
    assert conn.cmd("EHLO client.example.test")[0] == 250
    return conn


def assert_reply(reply, code, enhanced):
    assert reply[0] == code, reply
    assert reply[1].startswith(enhanced + " "), reply


@pytest.mark.parametrize("length", [65, 300, 3000])
def test_huge_local_part_rejected(shared_mailhost, length):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd("MAIL FROM:<%s@b.test>" % ("a" * length)), 501, "5.1.7")
    assert_reply(conn.cmd("MAIL FROM:<sender@b.test>"), 250, "2.1.0")
    assert_reply(conn.cmd("RCPT TO:<%s@example.test>" % ("a" * length)), 501, "5.1.3")
    assert_reply(conn.cmd("RCPT TO:<demo@example.test>"), 250, "2.1.5")
    conn.close()

    # smtpd is one process for all sessions: it must still be serving.
    other = session(shared_mailhost)
    assert_reply(other.cmd("NOOP"), 250, "2.0.0")
    other.close()


def test_rcpt_before_mail(shared_mailhost):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd("RCPT TO:<demo@example.test>"), 503, "5.5.1")
    conn.close()


def test_data_without_mail(shared_mailhost):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd("DATA"), 503, "5.5.1")
    conn.close()


def test_data_without_rcpt(shared_mailhost):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("DATA"), 503, "5.5.1")
    conn.close()


def test_data_after_rejected_rcpt(shared_mailhost):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<nobody@example.test>")[0] == 550
    assert_reply(conn.cmd("DATA"), 503, "5.5.1")
    conn.close()


def test_nested_mail(shared_mailhost):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("MAIL FROM:<other@example.net>"), 503, "5.5.1")
    conn.close()


def test_rset_clears_transaction(shared_mailhost):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RSET")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<demo@example.test>"), 503, "5.5.1")
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    conn.close()


def test_null_sender_accepted(shared_mailhost):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd("MAIL FROM:<>"), 250, "2.1.0")
    conn.close()


def test_space_after_colon_accepted(shared_mailhost):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM: <sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO: <demo@example.test>")[0] == 250
    conn.close()


@pytest.mark.parametrize("path", [
    "sender@example.net",
    "<sender@example.net",
    "<sender@@example.net>",
    "<send er@example.net>",
    "<.sender@example.net>",
    "<sen..der@example.net>",
    "<sender.@example.net>",
    "<sender@-example.net>",
    "<sender@example-.net>",
    "<sender@example.net.>",
    "<sender@example..net>",
    "<sender@[300.1.1.1]>",
    "<sender@[IPv6:zz::1]>",
    "<sender>",
    "<\"unterminated@example.net>",
    "<" + "x" * 65 + "@example.net>",
    "<sender@" + "a" * 64 + ".example.net>",
    "<sender@example.net>junk",
])
def test_bad_sender_address(shared_mailhost, path):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd("MAIL FROM:" + path), 501, "5.1.7")
    assert conn.cmd("NOOP")[0] == 250
    conn.close()


@pytest.mark.parametrize("path", [
    "<\"john doe\"@example.net>",
    "<sender@[192.0.2.1]>",
    "<sender@[IPv6:2001:db8::1]>",
    "<@relay.example.net,@other.example.net:sender@example.net>",
    "<" + "x" * 64 + "@example.net>",
    "<first.last+tag@sub.example.net>",
])
def test_good_sender_address(shared_mailhost, path):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd("MAIL FROM:" + path), 250, "2.1.0")
    conn.close()


@pytest.mark.parametrize("path", [
    "<demo@example.test",
    "<demo@@example.test>",
    "<demo>",
    "<>",
    "demo@example.test",
    "<demo@example.test@example.test>",
])
def test_bad_recipient_address(shared_mailhost, path):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:" + path), 501, "5.1.3")
    conn.close()


def test_unknown_mail_parameter(shared_mailhost):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd("MAIL FROM:<sender@example.net> FROB=1"), 555, "5.5.4")
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    conn.close()


def test_unknown_rcpt_parameter(shared_mailhost):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<demo@example.test> FROB=1"), 555, "5.5.4")
    conn.close()


@pytest.mark.parametrize("params", [
    "SIZE=1000", "BODY=7BIT", "BODY=8BITMIME", "BODY=BINARYMIME", "SMTPUTF8",
    "size=10 body=8bitmime smtputf8",
])
def test_known_mail_parameters(shared_mailhost, params):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net> " + params)[0] == 250
    conn.close()


@pytest.mark.parametrize("params", ["SIZE=abc", "SIZE=", "BODY=9BIT", "SMTPUTF8=yes"])
def test_bad_mail_parameter_value(shared_mailhost, params):
    conn = session(shared_mailhost)
    code, text = conn.cmd("MAIL FROM:<sender@example.net> " + params)
    assert code in (501, 555)
    assert text.startswith("5.5.4 ")
    conn.close()


def test_size_over_limit(make_mailhost):
    host = make_mailhost(message_size_limit=10000)
    conn = session(host)
    assert_reply(conn.cmd("MAIL FROM:<sender@example.net> SIZE=10001"), 552, "5.3.4")
    assert conn.cmd("MAIL FROM:<sender@example.net> SIZE=10000")[0] == 250
    conn.close()


def test_utf8_needs_smtputf8(shared_mailhost):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd("MAIL FROM:<jos\u00e9@example.net>".encode()), 553, "5.6.7")
    assert conn.cmd("MAIL FROM:<jos\u00e9@example.net> SMTPUTF8".encode())[0] == 250
    conn.close()


def test_invalid_utf8_rejected(shared_mailhost):
    conn = session(shared_mailhost)
    assert_reply(conn.cmd(b"MAIL FROM:<jos\xff@example.net> SMTPUTF8"), 501, "5.1.7")
    conn.close()


@pytest.mark.parametrize("rcpt", [
    "demo@example.test",
    "DEMO@Example.Test",
    "demo+tag@example.test",
    "team@example.test",
    "postmaster",
    "Postmaster",
    "postmaster@mail.example.test",
    "POSTMASTER@localhost",
])
def test_recipient_accepted(shared_mailhost, rcpt):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<%s>" % rcpt), 250, "2.1.5")
    conn.close()


@pytest.mark.parametrize("rcpt", [
    "nobody@example.test",
    "demo.x@example.test",
    "no-such-user@mail.example.test",
    "no-such-user@localhost",
])
def test_unknown_user(shared_mailhost, rcpt):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<%s>" % rcpt), 550, "5.1.1")
    assert shared_mailhost.wait_for_log(
        r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 550 5\.1\.1 <%s>" % rcpt.replace(".", r"\."))
    conn.close()


def test_alias_map_reopened(mailhost):
    conn = session(mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<sales@example.test>")[0] == 550

    mailhost.write_aliases("postmaster: demo@example.test\n"
                           "sales@example.test: bob@example.test\n")
    mailhost.newaliases()
    assert conn.cmd("RCPT TO:<sales@example.test>")[0] == 250
    conn.close()


def test_userdb_unreachable(mailhost):
    mailhost.stop("authd")
    conn = session(mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<demo@example.test>"), 451, "4.3.0")
    conn.close()


def test_relay_from_mynetworks(shared_mailhost):
    conn = session(shared_mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<someone@remote.example>")[0] == 250
    # Nothing is sent: the transaction is dropped before DATA.
    assert conn.cmd("RSET")[0] == 250
    conn.close()


def test_relay_denied_outside_mynetworks(make_mailhost):
    host = make_mailhost(mynetworks="127.0.0.1/32")
    conn = session(host, source="127.0.0.2")
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<someone@remote.example>"), 554, "5.7.1")
    # Local recipients are still accepted from anywhere.
    assert conn.cmd("RCPT TO:<demo@example.test>")[0] == 250
    conn.close()
    assert host.wait_for_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 554 5\.7\.1 "
                             r"<someone@remote\.example>: Relay access denied; "
                             r"from=<sender@example\.net> to=<someone@remote\.example> "
                             r"proto=ESMTP helo=<client\.example\.test>")


def test_too_many_recipients(make_mailhost):
    host = make_mailhost(smtpd_recipient_limit=3)
    conn = session(host)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    for _ in range(3):
        assert conn.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert_reply(conn.cmd("RCPT TO:<alice@example.test>"), 452, "4.5.3")
    conn.close()


def test_slow_userdb_blocks_one_session(make_mailhost):
    host = make_mailhost(smtpd_userdb_timeout="2s")
    authd = host.procs["authd"]
    # A stopped authd accepts connections (the kernel queues them) but never replies.
    authd.send_signal(signal.SIGSTOP)
    try:
        waiting = session(host)
        assert waiting.cmd("MAIL FROM:<sender@example.net>")[0] == 250
        waiting.send(b"RCPT TO:<demo@example.test>\r\n")
        started = time.monotonic()

        # Another session is served while the lookup waits.
        other = session(host)
        assert other.cmd("NOOP") == (250, "2.0.0 Ok")
        assert time.monotonic() - started < 1.5
        other.close()

        assert_reply(waiting.reply(), 451, "4.3.0")
        assert time.monotonic() - started >= 1.5
        assert waiting.cmd("NOOP") == (250, "2.0.0 Ok")
    finally:
        authd.send_signal(signal.SIGCONT)

    # Once authd runs again, lookups work on the same session.
    assert waiting.cmd("RCPT TO:<demo@example.test>")[0] == 250
    waiting.close()


def test_rcpt_counted_in_disconnect_line(mailhost):
    conn = session(mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert conn.cmd("RCPT TO:<nobody@example.test>")[0] == 550
    assert conn.cmd("QUIT")[0] == 221
    conn.close()
    assert mailhost.wait_for_log(r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 "
                                 r"rcpt=1/2 quit=1 commands=4/5")


def test_userdb_reconnect_after_restart(mailhost):
    conn = session(mailhost)
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<demo@example.test>")[0] == 250
    mailhost.restart("authd")
    assert conn.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert conn.cmd("RCPT TO:<nobody@example.test>")[0] == 550
    conn.close()
