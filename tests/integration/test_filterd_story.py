"""The classic setup, end to end: a sender domain with SPF, DKIM and a
DMARC p=reject policy in the test DNS, mail to an Estafeta host.

Every host lives in a network namespace on one bridge (netns_dns): unbound
serving the zone, the Estafeta host, the sender's mail server and a
rogue host. The sender's server signs with dkimpy and sends with
smtplib from inside its namespace, so its connection to Estafeta
comes from its real address.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import dkim_bed
import netns_dns
from conftest import BIN, is_root

MX_ADDRESS = "198.51.100.25"
SENDER_ADDRESS = "198.51.100.10"
ROGUE_ADDRESS = "198.51.100.99"

# Send stdin as one message from inside a namespace; print the reply
# code to the data (or to MAIL FROM) and its text.
SEND_SCRIPT = r"""
import smtplib, sys
sender, recipient, server = sys.argv[1:4]
client = smtplib.SMTP(server, 25, local_hostname="mail.sender.test", timeout=20)
try:
    client.sendmail(sender, [recipient], sys.stdin.buffer.read())
    print("250")
except smtplib.SMTPSenderRefused as error:
    print(error.smtp_code, error.smtp_error.decode())
except smtplib.SMTPDataError as error:
    print(error.smtp_code, error.smtp_error.decode())
finally:
    client.close()
"""


def skip_reason():
    if not is_root():
        return "needs root"
    return netns_dns.available() or (None if os.path.exists(dkim_bed.UNBOUND)
                                      else "unbound is not installed")


pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@pytest.fixture
def story(make_mailhost, tmp_path):
    key_dir = Path(tempfile.mkdtemp(prefix="est-story-", dir="/tmp"))
    config = key_dir / "estafeta.conf"
    config.write_text("syslog = no\ndkim_key_directory = %s\n" % (key_dir / "keys"))
    key_path, strings, _ = dkim_bed.keygen(str(BIN / "estafeta"), config, "sender.test", "mail")

    net = netns_dns.NetnsBed()
    try:
        records = [
            'sender.test. TXT "v=spf1 ip4:%s -all"' % SENDER_ADDRESS,
            '_dmarc.sender.test. TXT "v=DMARC1; p=reject"',
            dkim_bed.txt_record("mail._domainkey.sender.test", strings),
            'rogue.test. TXT "v=spf1 ip4:%s -all"' % ROGUE_ADDRESS,
        ]
        netns_dns.ZoneServer(net, tmp_path / "dns", ["sender.test", "rogue.test"], records)
        mx = net.add_host("mx", MX_ADDRESS)
        net.add_host("sender", SENDER_ADDRESS)
        net.add_host("rogue", ROGUE_ADDRESS)
        host = make_mailhost(
            start=False, netns=mx, smtpd_listen=MX_ADDRESS + ":25", smtpd_filter="yes",
            filterd_checks=dkim_bed.FILTER_CHECKS, dns_resolvers=netns_dns.DNS_ADDRESS,
            dns_trust_anchor_file="", filterd_dns_timeout="2s", authserv_id="mx.example.test")
        host.newaliases()
        host.start()
        host.start("filterd")
        net.key = key_path.read_bytes()
        net.estafeta = host
        yield net
    finally:
        net.close()
        shutil.rmtree(key_dir, ignore_errors=True)


def send_from(net, name, envelope_sender, message):
    result = net.run(name, "/usr/bin/python3", "-c", SEND_SCRIPT, envelope_sender,
                     "demo@example.test", MX_ADDRESS, input=message.decode(), timeout=60)
    assert result.returncode == 0, result.stderr
    code, _, text = result.stdout.strip().partition(" ")
    return int(code), text


def test_story_authenticated_mail_passes(story):
    message = dkim_bed.dkimpy_sign(dkim_bed.message(sender="alice@sender.test"), "mail",
                                   "sender.test", story.key)
    code, text = send_from(story, "sender", "alice@sender.test", message)
    stored = story.estafeta.wait_for_messages("demo@example.test", 1)

    assert code == 250, text
    assert len(stored) == 1, story.estafeta.log()
    fields = dkim_bed.authres_fields(stored[0])
    assert len(fields) == 1, fields
    assert fields[0].startswith("mx.example.test;")
    assert "spf=pass" in fields[0]
    assert "dkim=pass header.d=sender.test header.s=mail" in fields[0]
    assert "dmarc=pass (p=reject dis=none) header.from=sender.test" in fields[0]


def test_story_unauthorised_address_rejected(story):
    message = dkim_bed.message(sender="alice@sender.test")
    code, text = send_from(story, "rogue", "alice@sender.test", message)

    assert code == 550, text
    assert story.estafeta.messages("demo@example.test") == []


def test_story_spoofed_from_rejected(story):
    """SPF passes for the rogue's own envelope domain, but the From:
    domain is not aligned and the message is unsigned, so DMARC rejects."""
    message = dkim_bed.message(sender="alice@sender.test")
    code, text = send_from(story, "rogue", "bounce@rogue.test", message)

    assert code == 550, text
    assert "DMARC policy of sender.test" in text
    assert story.estafeta.wait_for_log(r"dmarc=fail/reject")
    assert story.estafeta.messages("demo@example.test") == []
