"""SMTP AUTH (RFC 4954) and the submission policy of smtpd, against the
real authd: mechanisms, refusals, sender ownership of the envelope and
the From: header, relaying after AUTH, and the per-address rate limits.

Hosts set mynetworks to a documentation network, so that 127.0.0.1 is
an ordinary client that may relay only after AUTH. Tests on the plain
listener allow AUTH there (smtpd_sasl_auth_enable = all) and without
TLS from loopback (smtpd_plaintext_auth = loopback).
"""

import base64
import os
import re
import shutil
import smtplib
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TLS_SERVER_NAME, VIRTUAL_USERS, RawSMTP, tls_client_context

ALICE = "alice@example.test"
BOB = "bob@example.test"
REMOTE = "someone@remote.example"
OUTSIDE_NETWORKS = "198.51.100.0/24"


def b64(data):
    return base64.b64encode(data).decode()


def plain_response(user, password, authzid=""):
    return b64(("%s\0%s\0%s" % (authzid, user, password)).encode())


def wait_for_mechanisms(host):
    """Wait until smtpd has authd's mechanism list, which it fetches
    without blocking after start-up; EHLO lists AUTH only from then on."""
    assert host.wait_for_log(r"smtpd\[\d+\]: auth: mechanisms of ")
    return host


@pytest.fixture
def plain_host(make_mailhost):
    """A host that offers AUTH on its plain listener to loopback clients."""
    def start(**settings):
        settings.setdefault("mynetworks", OUTSIDE_NETWORKS)
        settings.setdefault("smtpd_sasl_auth_enable", "all")
        settings.setdefault("smtpd_plaintext_auth", "loopback")
        settings.setdefault("auth_failure_delay", 1)
        host = make_mailhost(**settings)
        if settings.get("start", True):
            wait_for_mechanisms(host)
        return host
    return start


def ehlo_keywords(conn):
    code, text = conn.cmd("EHLO client.example.test")
    assert code == 250
    return text.split("\n")[1:]


def auth_line(keywords):
    lines = [k for k in keywords if k.startswith("AUTH ")]
    return lines[0] if lines else None


def login_plain(conn, user=ALICE, password=None):
    password = VIRTUAL_USERS[user] if password is None else password
    return conn.cmd("AUTH PLAIN " + plain_response(user, password))


def ehlo_session(host):
    """Open a RawSMTP session on HOST's plain port and send EHLO."""
    conn = host.raw()
    ehlo_keywords(conn)
    return conn


def logged_in_session(host, user=ALICE):
    """Open a session as ehlo_session does, then send AUTH PLAIN as USER.
    The AUTH reply is not checked."""
    conn = ehlo_session(host)
    login_plain(conn, user)
    return conn


def start_transaction(conn, sender, recipient):
    """Send MAIL FROM and RCPT TO and assert that both get 250."""
    assert conn.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    assert conn.cmd("RCPT TO:<%s>" % recipient)[0] == 250


def message(sender, recipient, subject="submission test"):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nHello.\r\n"
            % (sender, recipient, subject))


def send_data(conn, text):
    code, _ = conn.cmd("DATA")
    assert code == 354
    return conn.cmd(text.encode() + b".")


# AUTH on the plain listener with the loopback allowance

def test_auth_advertised_with_authd_mechanisms(plain_host):
    host = plain_host()
    conn = host.raw()
    line = auth_line(ehlo_keywords(conn))
    assert line is not None
    mechanisms = line.split()[1:]
    assert "PLAIN" in mechanisms
    assert "LOGIN" in mechanisms
    # Channel binding needs TLS, so no -PLUS mechanism is offered here.
    assert not any(m.endswith("-PLUS") for m in mechanisms)


def test_auth_plain_initial_response(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, text = login_plain(conn)
    assert code == 235
    assert text.startswith("2.7.0")
    assert host.wait_for_log(r"sasl_method=PLAIN, sasl_username=alice@example\.test")
    assert VIRTUAL_USERS[ALICE] not in host.log()


def test_auth_plain_empty_challenge(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    conn.send(b"AUTH PLAIN\r\n")
    assert conn.readline() == "334 "
    code, _ = conn.cmd(plain_response(ALICE, VIRTUAL_USERS[ALICE]))
    assert code == 235


def test_auth_login_exchange(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, text = conn.cmd("AUTH LOGIN")
    assert code == 334
    assert base64.b64decode(text) == b"Username:"
    code, text = conn.cmd(b64(BOB.encode()))
    assert code == 334
    assert base64.b64decode(text) == b"Password:"
    code, _ = conn.cmd(b64(VIRTUAL_USERS[BOB].encode()))
    assert code == 235
    assert host.wait_for_log(r"sasl_method=LOGIN, sasl_username=bob@example\.test")


def test_auth_login_with_initial_response(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, text = conn.cmd("AUTH LOGIN " + b64(BOB.encode()))
    assert code == 334
    assert base64.b64decode(text) == b"Password:"
    code, _ = conn.cmd(b64(VIRTUAL_USERS[BOB].encode()))
    assert code == 235


def test_auth_mechanism_case_insensitive(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("auth plain " + plain_response(ALICE, VIRTUAL_USERS[ALICE]))
    assert code == 235


def test_auth_unknown_mechanism(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, text = conn.cmd("AUTH CRAM-MD5")
    assert code == 504
    assert text.startswith("5.5.4")
    code, text = conn.cmd("AUTH X" * 40)
    assert code == 504
    # The session goes on.
    code, _ = login_plain(conn)
    assert code == 235


def test_auth_missing_mechanism(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, text = conn.cmd("AUTH")
    assert code == 501
    assert text.startswith("5.5.4")


def test_auth_cancelled_exchange(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("AUTH LOGIN")
    assert code == 334
    code, text = conn.cmd("*")
    assert code == 501
    assert text.startswith("5.7.0")
    # A cancelled exchange leaves the session unauthenticated and usable.
    code, _ = conn.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 250
    code, _ = conn.cmd("RCPT TO:<%s>" % REMOTE)
    assert code == 554
    code, _ = conn.cmd("RSET")
    assert code == 250
    code, _ = login_plain(conn)
    assert code == 235


def test_auth_cancel_as_initial_response(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("AUTH PLAIN *")
    assert code == 501


def test_auth_malformed_base64(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, text = conn.cmd("AUTH PLAIN not*base64!")
    assert code == 501
    assert text.startswith("5.5.2")
    code, text = conn.cmd("AUTH PLAIN YWJj")  # valid base64, but not a PLAIN message
    assert code == 535
    code, _ = conn.cmd("AUTH LOGIN")
    assert code == 334
    code, text = conn.cmd("%%%")
    assert code == 501
    assert text.startswith("5.5.2")
    code, _ = conn.cmd("NOOP")
    assert code == 250


def test_auth_empty_initial_response(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    # "=" is an empty initial response (RFC 4954 4), which PLAIN rejects.
    code, _ = conn.cmd("AUTH PLAIN =")
    assert code == 535


def test_auth_mechanism_with_invalid_characters(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, text = conn.cmd("AUTH PL%AIN")
    assert code == 504
    assert text.startswith("5.5.4")
    assert conn.cmd("NOOP")[0] == 250


def test_auth_client_timeout_closes_session(plain_host):
    # While smtpd waits for the client's response, smtpd_timeout applies
    # (421 as after any command), not smtpd_auth_timeout.
    host = plain_host(smtpd_timeout=2, smtpd_auth_timeout=1)
    conn = ehlo_session(host)
    code, _ = conn.cmd("AUTH LOGIN")
    assert code == 334
    start = time.monotonic()
    code, text = conn.reply()
    assert code == 421, text
    assert text.startswith("4.4.2")
    assert time.monotonic() - start > 1.5
    assert conn.closed_by_server()
    assert host.wait_for_log(r"timeout after AUTH from unknown\[127\.0\.0\.1\]")


def test_unrecognized_command_logged_by_verb(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("XYZZY argument-text")
    assert code == 500
    assert host.wait_for_log(r"unrecognized command: XYZZY\n")
    assert "argument-text" not in host.log()


def test_unrecognized_line_after_auth_not_logged(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("AUTH PLAIN " + plain_response(ALICE, "wrong"))
    assert code == 535
    # A short base64 word that looks like a verb: logged only by length.
    code, _ = conn.cmd("cGFzcw")
    assert code == 500
    assert host.wait_for_log(r"unrecognized command of 6 bytes")
    assert "cGFzcw" not in host.log()


def test_late_auth_responses_after_authd_exit_not_logged(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("AUTH LOGIN")
    assert code == 334
    host.stop("authd")
    code, text = conn.reply()
    assert code == 454, text
    # The client goes on with the exchange that smtpd ended. Both lines
    # are base64 ("alice" without its padding, "secret") and short words
    # of letters, which smtpd would otherwise log as verbs.
    assert conn.cmd("YWxpY2U")[0] == 500
    assert conn.cmd("c2VjcmV0")[0] == 500
    assert conn.cmd("QUIT")[0] == 221
    assert host.wait_for_log(r"disconnect from \S+ ehlo=")
    log = host.log()
    assert "YWxpY2U" not in log
    assert "c2VjcmV0" not in log


def test_auth_before_ehlo(plain_host):
    host = plain_host()
    conn = host.raw()
    code, text = login_plain(conn)
    assert code == 503
    assert text.startswith("5.5.1")


def test_auth_twice_rejected(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = login_plain(conn)
    assert code == 235
    code, text = login_plain(conn, BOB)
    assert code == 503
    assert "already authenticated" in text


def test_auth_during_transaction(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 250
    code, text = login_plain(conn)
    assert code == 503
    assert "transaction" in text


def test_auth_wrong_password_delay_grows(plain_host):
    host = plain_host(auth_failure_delay=1, auth_failure_delay_max=8)
    conn = ehlo_session(host)
    # Two failures show the growth; test_authd_throttle checks the doubling.
    delays = []
    for _ in range(2):
        start = time.monotonic()
        code, text = login_plain(conn, ALICE, "wrong")
        delays.append(time.monotonic() - start)
        assert code == 535
        assert text.startswith("5.7.8")
    assert 0.9 <= delays[0] < 1.8, delays
    assert 1.9 <= delays[1] < 2.8, delays
    assert host.wait_for_log(r"SASL PLAIN authentication failed")
    assert "wrong" not in re.sub(r"wrong password|password mismatch", "", host.log())
    # The right password still works afterwards.
    code, _ = login_plain(conn)
    assert code == 235


def test_auth_delay_does_not_block_others(plain_host):
    host = plain_host(auth_failure_delay=2)
    slow = ehlo_session(host)
    slow.send(b"AUTH PLAIN " + plain_response(ALICE, "wrong").encode() + b"\r\n")
    time.sleep(0.2)

    start = time.monotonic()
    other = ehlo_session(host)
    code, _ = other.cmd("NOOP")
    assert code == 250
    assert time.monotonic() - start < 1.5

    code, _ = slow.reply()
    assert code == 535


def test_auth_client_disconnects_during_delay(plain_host):
    host = plain_host(auth_failure_delay=1)
    conn = ehlo_session(host)
    conn.send(b"AUTH PLAIN " + plain_response(ALICE, "wrong").encode() + b"\r\n")
    conn.close()
    time.sleep(1.5)
    # smtpd is still serving.
    conn = ehlo_session(host)
    code, _ = login_plain(conn)
    assert code == 235


def test_auth_authzid_of_other_user(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("AUTH PLAIN " + plain_response(ALICE, VIRTUAL_USERS[ALICE], BOB))
    assert code == 535


def test_auth_authd_down(plain_host):
    host = plain_host()
    host.stop("authd")
    conn = ehlo_session(host)
    code, text = login_plain(conn)
    assert code == 454
    assert text.startswith("4.7.0")


def test_auth_when_authd_starts_late(plain_host):
    host = plain_host(start=False)
    host.newaliases()
    host.start("deliverd", "queued", "smtpd")
    assert host.wait_for_log(r"auth: cannot fetch the mechanism list")
    conn = host.raw()
    assert auth_line(ehlo_keywords(conn)) is None
    assert host.wait_for_log(r"AUTH not advertised to unknown\[127\.0\.0\.1\]")

    # Without a list, authd decides: the exchange works once authd is up,
    # and its handshake gives smtpd the list for the next EHLO.
    host.start("authd")
    code, _ = conn.cmd("AUTH CRAM-MD5")
    assert code == 504
    assert login_plain(conn)[0] == 235
    assert auth_line(ehlo_keywords(conn)) is not None


# Where AUTH is offered

def test_auth_not_offered_on_port_25_by_default(make_mailhost):
    host = wait_for_mechanisms(
        make_mailhost(mynetworks=OUTSIDE_NETWORKS, smtpd_plaintext_auth="always"))
    conn = host.raw()
    assert auth_line(ehlo_keywords(conn)) is None
    code, text = login_plain(conn)
    assert code == 503
    assert "not enabled" in text


def test_auth_without_tls_rejected(make_mailhost):
    host = wait_for_mechanisms(
        make_mailhost(mynetworks=OUTSIDE_NETWORKS, smtpd_sasl_auth_enable="all"))
    conn = host.raw()
    assert auth_line(ehlo_keywords(conn)) is None
    code, text = login_plain(conn)
    assert code == 538
    assert text.startswith("5.7.11")


# Relay and sender ownership

def test_relay_without_auth_rejected(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = conn.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 250
    code, text = conn.cmd("RCPT TO:<%s>" % REMOTE)
    assert code == 554
    assert "Relay access denied" in text


def spool_files(host, queue_id):
    """The contents of QUEUE_ID's files in the spool. queued may move
    them into deferred/ while they are read, so a file that goes away
    between the listing and the read makes the listing start again."""
    for _ in range(20):
        try:
            return [path.read_bytes() for path in (host.dir / "spool").rglob(queue_id + "*")
                    if path.is_file()]
        except FileNotFoundError:
            time.sleep(0.05)
    return []


def test_relay_after_auth_accepted(plain_host):
    host = plain_host()
    conn = ehlo_session(host)
    code, _ = login_plain(conn)
    assert code == 235
    code, _ = conn.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 250
    code, _ = conn.cmd("RCPT TO:<%s>" % REMOTE)
    assert code == 250
    code, text = send_data(conn, message(ALICE, REMOTE, "relayed"))
    assert code == 250
    queue_id = text.split()[-1]

    # The message waits for outbound delivery, marked with the login for
    # filterd: queued's envelope has sasl_user.
    envelopes = spool_files(host, queue_id)
    assert any(b"\nsasl_user=alice@example.test\n" in b"\n" + data for data in envelopes)


def test_envelope_sender_of_other_user(plain_host):
    host = plain_host()
    conn = logged_in_session(host)
    code, text = conn.cmd("MAIL FROM:<%s>" % BOB)
    assert code == 553
    assert text == ("5.7.1 <bob@example.test>: Sender address rejected: "
                    "not owned by user alice@example.test")
    assert host.wait_for_log(r"reject: MAIL from .*not owned by user alice@example\.test")
    # The own address, with a detail and in another case, is accepted.
    code, _ = conn.cmd("MAIL FROM:<Alice+lists@Example.TEST>")
    assert code == 250


def test_null_sender_after_auth(plain_host):
    host = plain_host()
    conn = logged_in_session(host)
    code, _ = conn.cmd("MAIL FROM:<>")
    assert code == 250


def test_from_header_of_other_user(plain_host):
    host = plain_host()
    conn = logged_in_session(host)
    start_transaction(conn, ALICE, BOB)
    code, text = send_data(conn, message("Bob <%s>" % BOB, BOB))
    assert code == 550
    assert text == ("5.7.1 <bob@example.test>: From: address rejected: "
                    "not owned by user alice@example.test")
    # The own address in a folded field with a display name is accepted.
    start_transaction(conn, ALICE, BOB)
    code, _ = send_data(conn, message('"Alice A."\r\n <%s>' % ALICE, BOB))
    assert code == 250
    assert len(host.wait_for_messages(BOB, 1)) == 1


def test_from_header_list_with_foreign_address(plain_host):
    host = plain_host()
    conn = logged_in_session(host)
    start_transaction(conn, ALICE, BOB)
    code, text = send_data(conn, message("%s, %s" % (ALICE, REMOTE), BOB))
    assert code == 550
    assert REMOTE in text


def test_from_header_checked_with_bdat(plain_host):
    host = plain_host()
    conn = logged_in_session(host)
    start_transaction(conn, ALICE, BOB)
    body = message(BOB, BOB).encode()
    code, text = conn.cmd(b"BDAT %d LAST\r\n" % len(body) + body[:-2])
    assert code == 550
    assert "From: address rejected" in text


def test_malformed_header_line_rejected(plain_host):
    host = plain_host()
    conn = logged_in_session(host)
    start_transaction(conn, ALICE, BOB)
    text = "Subject: test\r\nno colon here\r\n" + message(ALICE, BOB)
    code, reply = send_data(conn, text)
    assert code == 550
    assert reply == "5.6.0 Error: header line 2 is neither a header field nor a continuation"
    # The session goes on, and the message without that line passes.
    start_transaction(conn, ALICE, BOB)
    code, _ = send_data(conn, message(ALICE, BOB))
    assert code == 250


def test_header_without_empty_line_accepted(plain_host):
    host = plain_host()
    conn = logged_in_session(host)
    start_transaction(conn, ALICE, BOB)
    code, _ = send_data(conn, "From: %s\r\nSubject: header only\r\n" % ALICE)
    assert code == 250


def test_malformed_header_line_accepted_without_auth(plain_host):
    # Only authenticated submission checks From:, so MX mail keeps its header.
    host = plain_host()
    conn = ehlo_session(host)
    start_transaction(conn, REMOTE, BOB)
    code, _ = send_data(conn, "Subject: test\r\nno colon here\r\n" + message(REMOTE, BOB))
    assert code == 250
    assert len(host.wait_for_messages(BOB, 1)) == 1


def test_sender_login_map(plain_host, tmp_path):
    host = plain_host(start=False)
    maps = host.dir / "etc" / "sender_logins"
    maps.write_text("# shared addresses\n"
                    "sales@example.test alice@example.test, demo@example.test\n"
                    "@partner.example bob@example.test\n"
                    "bob@example.test bob@example.test\n")
    host.settings["smtpd_sender_login_maps"] = str(maps)
    host.write_config()
    host.start()
    wait_for_mechanisms(host)

    conn = logged_in_session(host)
    assert conn.cmd("MAIL FROM:<sales@example.test>")[0] == 250
    assert conn.cmd("RSET")[0] == 250
    code, text = conn.cmd("MAIL FROM:<anyone@partner.example>")
    assert code == 553
    assert conn.cmd("MAIL FROM:<bob@example.test>")[0] == 553
    conn.cmd("QUIT")

    conn = logged_in_session(host, BOB)
    assert conn.cmd("MAIL FROM:<anyone@partner.example>")[0] == 250
    assert conn.cmd("RSET")[0] == 250
    assert conn.cmd("MAIL FROM:<sales@example.test>")[0] == 553

    # The map is reread when it changes.
    time.sleep(0.05)
    maps.write_text("sales@example.test bob@example.test\n")
    assert conn.cmd("MAIL FROM:<sales@example.test>")[0] == 250


def write_cdb(path, items):
    """Write ITEMS (key, value) as a constant database in D. J. Bernstein's
    cdb format, which tinycdb reads."""
    def cdb_hash(data):
        h = 5381
        for byte in data:
            h = (((h << 5) + h) & 0xFFFFFFFF) ^ byte
        return h

    records = b""
    tables = [[] for _ in range(256)]
    for key, value in items:
        key, value = key.encode(), value.encode()
        tables[cdb_hash(key) & 255].append((cdb_hash(key), 2048 + len(records)))
        records += struct.pack("<II", len(key), len(value)) + key + value
    header = b""
    hash_tables = b""
    for entries in tables:
        slots = [(0, 0)] * (2 * len(entries))
        for h, position in entries:
            slot = (h >> 8) % len(slots)
            while slots[slot][1] != 0:
                slot = (slot + 1) % len(slots)
            slots[slot] = (h, position)
        header += struct.pack("<II", 2048 + len(records) + len(hash_tables), len(slots))
        hash_tables += b"".join(struct.pack("<II", h, position) for h, position in slots)
    Path(path).write_bytes(header + records + hash_tables)
    os.chmod(path, 0o644)


def test_sender_login_map_cdb(plain_host):
    host = plain_host(start=False)
    maps = host.dir / "etc" / "sender_logins.cdb"
    write_cdb(maps, [("sales@example.test", "alice@example.test,demo@example.test"),
                     ("@partner.example", "bob@example.test")])
    host.settings["smtpd_sender_login_maps"] = str(maps)
    host.write_config()
    host.newaliases()
    host.start()
    wait_for_mechanisms(host)

    conn = logged_in_session(host)
    assert conn.cmd("MAIL FROM:<sales@example.test>")[0] == 250
    assert conn.cmd("RSET")[0] == 250
    assert conn.cmd("MAIL FROM:<x@partner.example>")[0] == 553
    assert conn.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250


def test_sender_login_map_missing(plain_host):
    host = plain_host(smtpd_sender_login_maps="/nonexistent/sender_logins")
    conn = logged_in_session(host)
    code, text = conn.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 451
    assert text.startswith("4.3.0")
    assert host.wait_for_log(r"smtpd_sender_login_maps /nonexistent/sender_logins: "
                             r"No such file or directory")


def test_authenticated_message_arrives(plain_host):
    host = plain_host()
    conn = logged_in_session(host)
    start_transaction(conn, ALICE, BOB)
    code, text = send_data(conn, message(ALICE, BOB, "arrives"))
    assert code == 250
    queue_id = text.split()[-1]
    conn.cmd("QUIT")
    messages = host.wait_for_messages(BOB, 1)
    assert len(messages) == 1
    assert b"Subject: arrives" in messages[0]
    assert re.search(rb"with ESMTPA id ", messages[0].split(b"\n\n", 1)[0])
    assert host.wait_for_log(r"%s: client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN, "
                             r"sasl_username=alice@example\.test" % queue_id)


# Rate limits per client address

def test_connection_rate_limit(plain_host):
    host = plain_host(smtpd_client_connection_rate_limit=3)
    # The harness's readiness probe connected already, so fewer than
    # three sessions may be left in this window.
    accepted = 0
    for _ in range(4):
        conn = RawSMTP(host.smtp_port)
        code, text = conn.reply()
        if code != 220:
            break
        accepted += 1
        conn.cmd("QUIT")
        conn.close()
    assert accepted < 3
    assert code == 421
    assert text.startswith("4.7.0")
    assert conn.closed_by_server()
    assert host.wait_for_log(r"Connection rate limit exceeded: 4 from unknown\[127\.0\.0\.1\]")


def test_auth_rate_limit(plain_host):
    host = plain_host(smtpd_client_auth_rate_limit=2, auth_failure_delay=0)
    conn = ehlo_session(host)
    assert login_plain(conn, ALICE, "wrong")[0] == 535
    assert login_plain(conn, ALICE, "wrong")[0] == 535
    code, text = login_plain(conn)
    assert code == 454
    assert text.startswith("4.7.0")
    assert host.wait_for_log(r"AUTH command rate limit exceeded: 3 from unknown\[127\.0\.0\.1\]")
    # A new connection from the same address is limited too.
    conn = ehlo_session(host)
    assert login_plain(conn)[0] == 454


def test_rate_window_ages_out(plain_host):
    host = plain_host(smtpd_client_connection_rate_limit=2, smtpd_client_rate_time_unit=2)
    refused = False
    for _ in range(3):
        conn = RawSMTP(host.smtp_port)
        code, _ = conn.reply()
        conn.close()
        refused = refused or code == 421
    assert refused
    time.sleep(2.2)
    conn = RawSMTP(host.smtp_port)
    code, _ = conn.reply()
    assert code == 220


def test_rate_limits_exempt_mynetworks(plain_host):
    host = plain_host(mynetworks="127.0.0.0/8", smtpd_client_connection_rate_limit=1)
    for _ in range(3):
        conn = host.raw()
        assert conn.cmd("QUIT")[0] == 221


# Real clients

def test_smtplib_login_plaintext_loopback(plain_host):
    host = plain_host()
    with host.smtp() as client:
        client.ehlo()
        assert client.has_extn("auth")
        client.login(ALICE, VIRTUAL_USERS[ALICE])
        refused = client.sendmail(ALICE, [REMOTE, BOB], message(ALICE, BOB, "smtplib"))
        assert refused == {}
    assert len(host.wait_for_messages(BOB, 1)) == 1


def test_smtplib_wrong_password(plain_host):
    host = plain_host(auth_failure_delay=0)
    with host.smtp() as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            client.login(ALICE, "wrong")
        assert failure.value.smtp_code == 535


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_auth_plaintext_loopback(plain_host, mechanism):
    host = plain_host()
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(host.smtp_port),
         "--helo", "client.example.test", "--from", ALICE, "--to", BOB,
         "--auth", mechanism, "--auth-user", ALICE, "--auth-password", VIRTUAL_USERS[ALICE],
         "--header", "Subject: swaks " + mechanism, "--timeout", "30"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0" in result.stdout
    assert len(host.wait_for_messages(BOB, 1)) == 1


# Submission over TLS: STARTTLS on the submission port, implicit TLS on smtps

@pytest.fixture
def tls_host(make_mailhost):
    """A host with the test certificate, submission and smtps listeners."""
    def start(**settings):
        settings.setdefault("mynetworks", OUTSIDE_NETWORKS)
        settings.setdefault("auth_failure_delay", 1)
        return wait_for_mechanisms(make_mailhost(tls=True, **settings))
    return start


def ca_file(host):
    return str(host.dir / "etc" / "tls" / "ca.pem")


def raw_starttls(host, port):
    """A RawSMTP client on PORT after EHLO, STARTTLS and the second EHLO."""
    conn = RawSMTP(port)
    assert conn.reply()[0] == 220
    ehlo_keywords(conn)
    assert conn.cmd("STARTTLS")[0] == 220
    context = tls_client_context()
    conn.sock = context.wrap_socket(conn.sock, server_hostname=TLS_SERVER_NAME)
    return conn


def test_submission_auth_before_starttls(tls_host):
    host = tls_host()
    conn = RawSMTP(host.submission_port)
    assert conn.reply()[0] == 220
    keywords = ehlo_keywords(conn)
    assert "STARTTLS" in keywords
    assert auth_line(keywords) is None
    code, text = login_plain(conn)
    assert code == 538
    assert text.startswith("5.7.11")
    code, text = conn.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 530
    assert text == "5.7.0 Must issue a STARTTLS command first"


def test_submission_mail_needs_auth(tls_host):
    host = tls_host()
    conn = raw_starttls(host, host.submission_port)
    mechanisms = auth_line(ehlo_keywords(conn)).split()[1:]
    assert "PLAIN" in mechanisms
    assert "LOGIN" in mechanisms
    code, text = conn.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 530
    assert text == "5.7.0 Authentication required"
    assert host.wait_for_log(r"reject: MAIL from .*530 5\.7\.0 Authentication required")
    code, _ = login_plain(conn)
    assert code == 235
    assert conn.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    assert conn.cmd("RCPT TO:<%s>" % REMOTE)[0] == 250


def test_submission_starttls_forgets_plaintext_auth(tls_host):
    host = tls_host(smtpd_plaintext_auth="loopback")
    conn = RawSMTP(host.submission_port)
    assert conn.reply()[0] == 220
    ehlo_keywords(conn)
    assert login_plain(conn)[0] == 235
    assert conn.cmd("STARTTLS")[0] == 220
    conn.sock = tls_client_context().wrap_socket(conn.sock, server_hostname=TLS_SERVER_NAME)
    ehlo_keywords(conn)
    # RFC 3207 4.2: the login from before TLS is gone.
    assert conn.cmd("MAIL FROM:<%s>" % ALICE)[0] == 530


def test_mx_port_no_auth_after_starttls(tls_host):
    host = tls_host()
    conn = raw_starttls(host, host.smtp_port)
    assert auth_line(ehlo_keywords(conn)) is None
    code, text = login_plain(conn)
    assert code == 503
    assert "not enabled" in text
    # Port 25 takes mail for local users without AUTH, and relays nothing.
    start_transaction(conn, REMOTE, BOB)
    assert conn.cmd("RCPT TO:<other@remote.example>")[0] == 554


def test_mx_port_auth_when_enabled(tls_host):
    host = tls_host(smtpd_sasl_auth_enable="all")
    conn = raw_starttls(host, host.smtp_port)
    assert auth_line(ehlo_keywords(conn)) is not None
    assert login_plain(conn)[0] == 235


def test_smtplib_starttls_login(tls_host):
    host = tls_host()
    with host.submission() as client:
        client.starttls(context=tls_client_context())
        client.ehlo()
        client.login(ALICE, VIRTUAL_USERS[ALICE])
        client.sendmail(ALICE, [BOB], message(ALICE, BOB, "smtplib starttls"))
    messages = host.wait_for_messages(BOB, 1)
    assert len(messages) == 1
    received = messages[0].split(b"\n\n", 1)[0]
    assert re.search(rb"with ESMTPSA id ", received), received


def test_smtplib_smtps_login(tls_host):
    host = tls_host()
    with host.smtps() as client:
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"].split()
        client.login(BOB, VIRTUAL_USERS[BOB])
        client.sendmail(BOB, [ALICE], message(BOB, ALICE, "smtplib smtps"))
    assert len(host.wait_for_messages(ALICE, 1)) == 1


def test_smtps_mail_needs_auth(tls_host):
    host = tls_host()
    with host.smtps() as client:
        client.ehlo()
        code, text = client.mail(ALICE)
        assert code == 530
        assert text == b"5.7.0 Authentication required"


def test_submission_sender_of_other_user(tls_host):
    host = tls_host()
    with host.submission() as client:
        client.starttls(context=tls_client_context())
        client.ehlo()
        client.login(ALICE, VIRTUAL_USERS[ALICE])
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(BOB, [BOB], message(BOB, BOB))
        assert refused.value.smtp_code == 553
        with pytest.raises(smtplib.SMTPDataError) as rejected:
            client.sendmail(ALICE, [BOB], message(BOB, BOB))
        assert rejected.value.smtp_code == 550


def swaks(host, port, tls_option, mechanism, user=ALICE, password=None, sender=None):
    password = VIRTUAL_USERS[user] if password is None else password
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(port), tls_option,
         "--tls-verify", "--tls-ca-path", ca_file(host), "--tls-sni", TLS_SERVER_NAME,
         "--helo", "client.example.test", "--from", sender or user, "--to", BOB,
         "--auth", mechanism, "--auth-user", user, "--auth-password", password,
         "--header", "Subject: swaks %s %s" % (tls_option, mechanism), "--timeout", "30"],
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth_587(tls_host, mechanism):
    host = tls_host()
    result = swaks(host, host.submission_port, "--tls", mechanism)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0 Authentication successful" in result.stdout
    assert "250 2.0.0 Ok: queued as" in result.stdout
    assert len(host.wait_for_messages(BOB, 1)) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_tls_on_connect_465(tls_host, mechanism):
    host = tls_host()
    result = swaks(host, host.smtps_port, "--tlsc", mechanism)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0 Authentication successful" in result.stdout
    assert len(host.wait_for_messages(BOB, 1)) == 1


def test_swaks_wrong_password(tls_host):
    host = tls_host(auth_failure_delay=0)
    result = swaks(host, host.submission_port, "--tls", "PLAIN", password="wrong")
    assert result.returncode != 0
    assert "535 5.7.8 Error: authentication failed" in result.stdout
    assert "wrong" not in host.log()


def write_msmtprc(host, path, port, starttls, user=ALICE):
    path.write_text(
        "# as in a user's ~/.msmtprc\n"
        "defaults\n"
        "tls on\n"
        "tls_trust_file %s\n"
        "logfile %s\n"
        "\n"
        "account estafeta\n"
        "host 127.0.0.1\n"
        "port %d\n"
        "tls_starttls %s\n"
        "tls_host_override %s\n"
        "auth on\n"
        "user %s\n"
        "password %s\n"
        "from %s\n"
        "\n"
        "account default : estafeta\n"
        % (ca_file(host), path.with_suffix(".log"), port, "on" if starttls else "off",
           TLS_SERVER_NAME, user, VIRTUAL_USERS[user], user))
    os.chmod(path, 0o600)


@pytest.mark.parametrize("starttls", [True, False], ids=["submission", "smtps"])
def test_msmtp_sends_message(tls_host, tmp_path, starttls):
    host = tls_host()
    rc = tmp_path / "msmtprc"
    write_msmtprc(host, rc, host.submission_port if starttls else host.smtps_port, starttls)
    result = subprocess.run(
        ["msmtp", "--file", str(rc), "--read-recipients"],
        input=message(ALICE, BOB, "msmtp").replace("\r\n", "\n"),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    messages = host.wait_for_messages(BOB, 1)
    assert len(messages) == 1
    assert b"Subject: msmtp" in messages[0]
    assert host.wait_for_log(r"sasl_method=\S+, sasl_username=alice@example\.test")


def test_msmtp_other_users_address(tls_host, tmp_path):
    host = tls_host()
    rc = tmp_path / "msmtprc"
    write_msmtprc(host, rc, host.submission_port, True)
    result = subprocess.run(
        ["msmtp", "--file", str(rc), "--from", BOB, BOB],
        input=message(BOB, BOB).replace("\r\n", "\n"),
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "553" in result.stderr
    assert host.messages(BOB) == []


# SCRAM-SHA-256 through smtpd, with GNU SASL's gsasl as the client

needs_gsasl = pytest.mark.skipif(shutil.which("gsasl") is None,
                                 reason="gsasl is not installed (Debian package gsasl)")


def require_mechanism(host, mechanism):
    """Skip unless authd offers MECHANISM, as smtpd lists what authd offers."""
    conn = raw_starttls(host, host.submission_port)
    offered = auth_line(ehlo_keywords(conn)).split()[1:]
    conn.cmd("QUIT")
    if mechanism not in offered:
        pytest.skip("authd does not offer %s" % mechanism)


def gsasl_smtp(host, port, mechanism, password, extra=()):
    require_mechanism(host, mechanism)
    return subprocess.run(
        ["gsasl", "--client", "--smtp", "--connect", "127.0.0.1:%d" % port,
         "--starttls", "--x509-ca-file", ca_file(host), "--mechanism", mechanism,
         "--authentication-id", ALICE, "--password", password, *extra],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@needs_gsasl
def test_scram_plus_channel_binding(tls_host):
    host = tls_host()
    result = gsasl_smtp(host, host.submission_port, "SCRAM-SHA-256-PLUS",
                        VIRTUAL_USERS[ALICE])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0" in result.stdout
    assert host.wait_for_log(r"sasl_method=SCRAM-SHA-256-PLUS, sasl_username=alice@example\.test")


@needs_gsasl
def test_scram_without_channel_binding(tls_host):
    host = tls_host()
    result = gsasl_smtp(host, host.submission_port, "SCRAM-SHA-256", VIRTUAL_USERS[ALICE],
                        ["--no-cb"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0" in result.stdout


@needs_gsasl
def test_scram_wrong_password(tls_host):
    host = tls_host(auth_failure_delay=0)
    result = gsasl_smtp(host, host.submission_port, "SCRAM-SHA-256-PLUS", "wrong")
    assert result.returncode != 0
    assert "535 5.7.8" in result.stdout


def test_scram_plus_not_offered_without_tls(plain_host):
    host = plain_host()
    conn = host.raw()
    line = auth_line(ehlo_keywords(conn))
    assert "SCRAM-SHA-256-PLUS" not in line.split()
    code, _ = conn.cmd("AUTH SCRAM-SHA-256-PLUS")
    assert code == 504


def test_submission_without_tls_warns(make_mailhost):
    host = make_mailhost(start=False, mynetworks=OUTSIDE_NETWORKS)
    port = host.submission_port
    host.settings["smtpd_submission_listen"] = "127.0.0.1:%d" % port
    host.write_config()
    host.newaliases()
    host.start()
    assert host.wait_for_log(r"smtpd_submission_listen is set without tls_cert_file")
    conn = RawSMTP(port)
    assert conn.reply()[0] == 220
    keywords = ehlo_keywords(conn)
    assert "STARTTLS" not in keywords
    assert auth_line(keywords) is None
    code, text = conn.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 530
    assert text == "5.7.0 Authentication required"
