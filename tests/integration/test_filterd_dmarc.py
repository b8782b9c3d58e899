"""filterd's DMARC check and Authentication-Results field, end to end.

Mail from 127.0.0.1 (kept out of mynetworks, so it counts as inbound)
goes through smtpd and filterd, with the SPF, DKIM and DMARC records of
the sender domains served by unbound on 127.0.0.1. Each case checks the
SMTP reply, the folder the message lands in, and the dmarc= part of the
Authentication-Results field.
"""

import os
import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

import dkim_bed
from conftest import BIN, is_root

INBOUND = {"mynetworks": "127.0.0.254/32"}
# libspf2 passes every client on a loopback address, so SPF would align
# every message here. The chain leaves SPF out except where a test needs it.
WITHOUT_SPF = "dkim_verify dmarc dkim_sign authres"
NEUTRAL_SPF = "v=spf1 ?all"

RECORDS = [
    'reject.test. TXT "%s"' % NEUTRAL_SPF,
    '_dmarc.reject.test. TXT "v=DMARC1; p=reject; adkim=s; aspf=s"',
    'quarantine.test. TXT "%s"' % NEUTRAL_SPF,
    '_dmarc.quarantine.test. TXT "v=DMARC1; p=quarantine"',
    # SPF passes for 127.0.0.1, so mail from there is aligned through SPF.
    'spf.test. TXT "v=spf1 ip4:127.0.0.1 -all"',
    '_dmarc.spf.test. TXT "v=DMARC1; p=reject"',
    'dkim.test. TXT "%s"' % NEUTRAL_SPF,
    '_dmarc.dkim.test. TXT "v=DMARC1; p=reject"',
    # Only the organizational domain publishes, with a weaker sp= policy.
    'mail.sp.test. TXT "%s"' % NEUTRAL_SPF,
    '_dmarc.sp.test. TXT "v=DMARC1; p=reject; sp=none"',
    'broken.test. TXT "%s"' % NEUTRAL_SPF,
    '_dmarc.broken.test. TXT "v=DMARC1; p=maybe"',
    'nopolicy.test. TXT "%s"' % NEUTRAL_SPF,
    # Two policy records: RFC 7489 section 6.6.3 applies neither.
    '_dmarc.twice.test. TXT "v=DMARC1; p=reject"',
    '_dmarc.twice.test. TXT "v=DMARC1; p=quarantine"',
    '_dmarc.shop.co.uk. TXT "v=DMARC1; p=reject"',
]
ZONES = ["reject.test", "quarantine.test", "spf.test", "dkim.test", "sp.test", "broken.test",
         "nopolicy.test", "twice.test", "shop.co.uk", "other.co.uk"]

pytestmark = pytest.mark.skipif(not is_root() or not os.path.exists(dkim_bed.UNBOUND),
                                reason="needs root (filter_user keys) and unbound")


@pytest.fixture(scope="module")
def dkim_key():
    """A key for dkim.test from estafeta dkim keygen: (PEM, record line)."""
    directory = Path(tempfile.mkdtemp(prefix="est-dmarc-", dir="/tmp"))
    config = directory / "estafeta.conf"
    config.write_text("syslog = no\ndkim_key_directory = %s\n" % (directory / "keys"))
    path, strings, _ = dkim_bed.keygen(str(BIN / "estafeta"), config, "dkim.test", "sel")
    # The same key is published for the domains under co.uk, a public
    # suffix of two labels.
    yield path.read_bytes(), [dkim_bed.txt_record("sel._domainkey.%s" % domain, strings)
                              for domain in ("dkim.test", "shop.co.uk", "other.co.uk")]
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def zone(tmp_path_factory, dkim_key):
    server = dkim_bed.LoopbackZone(tmp_path_factory.mktemp("dmarc-dns"), ZONES,
                                   RECORDS + dkim_key[1], dropped=["down.test"])
    yield server
    server.close()


def inbound_host(make_mailhost, zone, **settings):
    settings.setdefault("filterd_checks", WITHOUT_SPF)
    host = make_mailhost(**dkim_bed.filter_settings(zone, **INBOUND, **settings))
    host.start("filterd")
    return host


def send(host, sender, body):
    """Send BODY from SENDER to demo; return the reply to the data."""
    with host.smtp() as client:
        try:
            client.sendmail(sender, ["demo@example.test"], body)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error.decode()
    return 250, ""


def junk_messages(host):
    folder = host.maildir("demo@example.test") / ".Junk"
    return [p.read_bytes() for sub in ("new", "cur") if (folder / sub).is_dir()
            for p in sorted((folder / sub).iterdir())]


def only_authres(message):
    fields = dkim_bed.authres_fields(message)
    assert len(fields) == 1, fields
    return fields[0]


def test_dmarc_reject_unaligned(make_mailhost, zone):
    host = inbound_host(make_mailhost, zone)
    code, text = send(host, "alice@reject.test", dkim_bed.message(sender="alice@reject.test"))

    assert code == 550
    assert "5.7.1" in text
    assert "DMARC policy of reject.test" in text
    assert host.wait_for_log(r"dmarc=fail/reject")
    assert host.messages("demo@example.test") == []


def test_dmarc_quarantine_to_junk(make_mailhost, zone):
    host = inbound_host(make_mailhost, zone)
    code, _ = send(host, "alice@quarantine.test", dkim_bed.message(sender="alice@quarantine.test"))

    assert code == 250
    assert host.wait_for_log(r"dmarc=fail/quarantine")
    host.wait_for_log(r"Junk", timeout=5)
    junk = junk_messages(host)
    assert len(junk) == 1, host.log()
    assert "dmarc=fail (p=quarantine dis=quarantine) header.from=quarantine.test" in \
        only_authres(junk[0])
    assert host.messages("demo@example.test") == []


def test_dmarc_pass_spf_aligned(make_mailhost, zone):
    host = inbound_host(make_mailhost, zone, filterd_checks=dkim_bed.FILTER_CHECKS)
    code, _ = send(host, "alice@spf.test", dkim_bed.message(sender="alice@spf.test"))
    stored = host.wait_for_messages("demo@example.test", 1)

    assert code == 250
    assert len(stored) == 1, host.log()
    field = only_authres(stored[0])
    assert "spf=pass" in field
    assert "dkim=none" in field
    assert "dmarc=pass (p=reject dis=none) header.from=spf.test" in field


def test_dmarc_pass_dkim_aligned(make_mailhost, zone, dkim_key):
    host = inbound_host(make_mailhost, zone)
    body = dkim_bed.dkimpy_sign(dkim_bed.message(sender="alice@dkim.test"), "sel", "dkim.test",
                                dkim_key[0])
    code, _ = send(host, "alice@dkim.test", body)
    stored = host.wait_for_messages("demo@example.test", 1)

    assert code == 250
    assert len(stored) == 1, host.log()
    field = only_authres(stored[0])
    assert "dkim=pass header.d=dkim.test header.s=sel" in field
    assert "dmarc=pass (p=reject dis=none) header.from=dkim.test" in field


def test_dmarc_relaxed_alignment(make_mailhost, zone, dkim_key):
    """The public suffix list makes shop.co.uk, not co.uk, the
    organizational domain: a subdomain aligns with it, a sibling does not."""
    host = inbound_host(make_mailhost, zone)
    aligned = dkim_bed.dkimpy_sign(dkim_bed.message(sender="alice@mail.shop.co.uk"), "sel",
                                   "shop.co.uk", dkim_key[0])
    sibling = dkim_bed.dkimpy_sign(dkim_bed.message(sender="alice@shop.co.uk"), "sel",
                                   "other.co.uk", dkim_key[0])

    assert send(host, "alice@mail.shop.co.uk", aligned)[0] == 250
    code, text = send(host, "alice@shop.co.uk", sibling)
    assert code == 550, text
    stored = host.wait_for_messages("demo@example.test", 1)
    assert len(stored) == 1, host.log()
    field = only_authres(stored[0])
    assert "dkim=pass header.d=shop.co.uk" in field
    assert "dmarc=pass (p=reject dis=none) header.from=mail.shop.co.uk" in field


def test_dmarc_subdomain_policy(make_mailhost, zone):
    host = inbound_host(make_mailhost, zone)
    code, _ = send(host, "alice@mail.sp.test", dkim_bed.message(sender="alice@mail.sp.test"))
    stored = host.wait_for_messages("demo@example.test", 1)

    assert code == 250
    assert len(stored) == 1, host.log()
    assert "dmarc=fail (p=reject dis=none) header.from=mail.sp.test" in only_authres(stored[0])


def test_dmarc_override_records_only(make_mailhost, zone):
    host = inbound_host(make_mailhost, zone, dmarc_policy_override="yes")
    code, _ = send(host, "alice@reject.test", dkim_bed.message(sender="alice@reject.test"))
    stored = host.wait_for_messages("demo@example.test", 1)

    assert code == 250
    assert len(stored) == 1, host.log()
    assert "dmarc=fail (p=reject dis=none) header.from=reject.test" in only_authres(stored[0])


def test_dmarc_none_and_errors(make_mailhost, zone):
    host = inbound_host(make_mailhost, zone)
    cases = [
        ("alice@nopolicy.test", dkim_bed.message(sender="alice@nopolicy.test", subject="c1"),
         "dmarc=none header.from=nopolicy.test"),
        ("alice@broken.test", dkim_bed.message(sender="alice@broken.test", subject="c2"),
         "dmarc=permerror (invalid record) header.from=broken.test"),
        # Each of two From: addresses is evaluated on its own.
        ("alice@nopolicy.test",
         dkim_bed.message(sender="alice@nopolicy.test", subject="c3").replace(
             b"From: Alice <alice@nopolicy.test>", b"From: alice@nopolicy.test, bob@twice.test"),
         "dmarc=none header.from=nopolicy.test; dmarc=none header.from=twice.test"),
        ("alice@twice.test", dkim_bed.message(sender="alice@twice.test", subject="c4"),
         "dmarc=none header.from=twice.test"),
        # No address with a domain at all.
        ("alice@nopolicy.test",
         dkim_bed.message(sender="alice@nopolicy.test", subject="c5").replace(
             b"From: Alice <alice@nopolicy.test>", b"From: undisclosed-senders:;"),
         "dmarc=permerror (no usable From: address)"),
    ]
    for sender, body, _ in cases:
        reply = send(host, sender, body)
        assert reply[0] == 250, reply
    stored = host.wait_for_messages("demo@example.test", len(cases))
    assert len(stored) == len(cases), host.log()

    by_subject = {m.split(b"Subject: ", 1)[1][:2].decode(): m for m in stored}
    for index, (_, _, expected) in enumerate(cases):
        assert expected in only_authres(by_subject["c%d" % (index + 1)])


# From: forms that name reject.test beside another domain: the strictest
# policy applies, so each is rejected.
TWO_AUTHORS = [
    b"From: alice@nopolicy.test, bob@reject.test",
    b"From: alice@nopolicy.test\r\nFrom: bob@reject.test",
    b"From: bob@reject.test\r\nFrom: alice@nopolicy.test",
]


@pytest.mark.parametrize("from_lines", TWO_AUTHORS, ids=repr)
def test_dmarc_strictest_author_policy(make_mailhost, zone, from_lines):
    host = inbound_host(make_mailhost, zone)
    body = dkim_bed.message(sender="alice@nopolicy.test").replace(
        b"From: Alice <alice@nopolicy.test>", from_lines)

    code, text = send(host, "alice@nopolicy.test", body)

    assert code == 550
    assert "DMARC policy of reject.test" in text
    assert host.wait_for_log(r"from_fields=\d, from_addresses=2")


def test_dmarc_too_many_authors_rejected(make_mailhost, zone):
    host = inbound_host(make_mailhost, zone)
    authors = ", ".join("a@d%d.nopolicy.test" % i for i in range(9))
    body = dkim_bed.message(sender="alice@nopolicy.test").replace(
        b"From: Alice <alice@nopolicy.test>", b"From: " + authors.encode())

    code, text = send(host, "alice@nopolicy.test", body)

    assert code == 550
    assert "more than 8 From: domains" in text


@pytest.mark.parametrize("policy,code", [("accept", 250), ("tempfail", 451)])
def test_dmarc_dns_down(make_mailhost, zone, policy, code):
    """The policy lookup times out: dmarc=temperror, then the check's
    failure policy decides."""
    host = inbound_host(make_mailhost, zone, filterd_dmarc_failure_policy=policy)
    reply = send(host, "alice@down.test", dkim_bed.message(sender="alice@down.test"))

    assert reply[0] == code, reply
    assert host.wait_for_log(r"dmarc=temperror")
    if code == 250:
        stored = host.wait_for_messages("demo@example.test", 1)
        assert len(stored) == 1, host.log()
        assert "dmarc=temperror header.from=down.test" in only_authres(stored[0])
    else:
        assert "4.7.0" in reply[1]


def test_authres_forged_removed(make_mailhost, zone):
    host = inbound_host(make_mailhost, zone)
    forged = ("Authentication-Results: MAIL.example.TEST; dkim=pass header.d=bank.test\r\n"
              "Authentication-Results: (comment) mail.example.test;\r\n"
              "\tspf=pass smtp.mailfrom=bank.test\r\n"
              "Authentication-Results: relay.other.test; spf=pass smtp.mailfrom=nopolicy.test\r\n")
    body = dkim_bed.message(sender="alice@nopolicy.test", extra=forged)
    assert send(host, "alice@nopolicy.test", body)[0] == 250
    stored = host.wait_for_messages("demo@example.test", 1)
    assert len(stored) == 1, host.log()

    fields = dkim_bed.authres_fields(stored[0])
    ours = [f for f in fields if f.lower().startswith("mail.example.test;")]
    others = [f for f in fields if f.startswith("relay.other.test;")]
    assert len(ours) == 1, fields
    assert "bank.test" not in ours[0]
    assert "dmarc=none header.from=nopolicy.test" in ours[0]
    assert len(others) == 1, fields
    assert len(fields) == 2, fields
