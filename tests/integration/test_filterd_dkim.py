"""filterd's DKIM checks and `estafeta dkim keygen`, end to end.

Outbound mail (from mynetworks) is signed by filterd and checked with
Debian's dkimpy (python3-dkim) and opendkim-testmsg (opendkim-tools).
Inbound mail signed by dkimpy is verified by filterd, and the
Authentication-Results field of the delivered message is checked. Keys
come from `estafeta dkim keygen`. filterd gets the key records from
unbound on 127.0.0.1, and dkimpy gets them in a dict. opendkim-testmsg
gets them from unbound in a network namespace, because its resolver
reads only that namespace's resolv.conf.
"""

import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import dkim_bed
import netns_dns
from conftest import BIN, is_root

# Inbound tests: 127.0.0.1 must not be in mynetworks, or the mail counts
# as outbound and is signed instead of verified.
INBOUND = {"mynetworks": "127.0.0.254/32"}

pytestmark = pytest.mark.skipif(not is_root() or not os.path.exists(dkim_bed.UNBOUND),
                                reason="needs root (filter_user keys) and unbound")


@pytest.fixture(scope="module")
def keys():
    """Keys made by estafeta dkim keygen, and the records for them, in a
    directory that filter_user can reach (pytest's own is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="est-dkim-", dir="/tmp"))
    os.chmod(directory, 0o755)
    config = directory / "estafeta.conf"
    config.write_text("syslog = no\ndkim_key_directory = %s\n" % (directory / "keys"))
    generated = {}
    for name, domain, selector, options in [
            ("rsa", "example.test", "est", ()),
            ("ed25519", "example.test", "ed", ("--type", "ed25519")),
            ("sender", "sender.test", "ext", ())]:
        path, strings, line = dkim_bed.keygen(str(BIN / "estafeta"), config, domain, selector,
                                              *options)
        generated[name] = {"path": path, "strings": strings, "line": line, "domain": domain,
                      "selector": selector, "name": "%s._domainkey.%s" % (selector, domain)}
    generated["config"] = config
    generated["directory"] = directory
    yield generated
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def records(keys):
    """Key records by name, as dkimpy's dnsfunc and unbound get them."""
    texts = {keys[k]["name"]: "".join(keys[k]["strings"]) for k in ("rsa", "ed25519", "sender")}
    # A key record that cannot be used: an unknown key type.
    texts["bad._domainkey.sender.test"] = "v=DKIM1; k=foo; p=AAAA"
    return texts


@pytest.fixture(scope="module")
def zone(tmp_path_factory, keys, records):
    lines = [dkim_bed.txt_record(name, [text[i:i + 250] for i in range(0, len(text), 250)])
             for name, text in records.items()]
    server = dkim_bed.LoopbackZone(tmp_path_factory.mktemp("dkim-dns"),
                                   ["example.test", "sender.test"], lines, dropped=["down.test"])
    yield server
    server.close()


@pytest.fixture(scope="module")
def testmsg_host(tmp_path_factory, records):
    """A namespace whose resolver is a ZoneServer with the key records,
    for opendkim-testmsg (libopendkim's stock resolver reads resolv.conf)."""
    reason = netns_dns.available()
    if reason or not shutil.which("opendkim-testmsg"):
        pytest.skip(reason or "opendkim-testmsg is not installed")
    net = netns_dns.NetnsBed()
    netns = None
    try:
        lines = [dkim_bed.txt_record(name, [text[i:i + 250] for i in range(0, len(text), 250)])
                 for name, text in records.items()]
        netns_dns.ZoneServer(net, tmp_path_factory.mktemp("testmsg-dns"),
                             ["example.test", "sender.test"], lines)
        netns = net.add_host("verifier", "198.51.100.30")
        # ip netns exec mounts this file over /etc/resolv.conf; it must
        # exist before the first command runs in the namespace.
        netns_etc = Path("/etc/netns") / netns
        netns_etc.mkdir(parents=True)
        (netns_etc / "resolv.conf").write_text(
            "nameserver %s\noptions timeout:1 attempts:1\n" % netns_dns.DNS_ADDRESS)
        yield net
    finally:
        net.close()
        if netns:
            shutil.rmtree(Path("/etc/netns") / netns, ignore_errors=True)


def run_testmsg(net, message):
    """Run opendkim-testmsg in verify mode in the verifier namespace."""
    assert (Path("/etc/netns") / net.hosts["verifier"] / "resolv.conf").exists()
    return net.run("verifier", "opendkim-testmsg", input=message.decode("utf-8", "replace"),
                   timeout=30)


def signing_host(make_mailhost, zone, keys, key_name):
    table = Path(keys["directory"]) / ("table-%s" % key_name)
    table.write_text("# estafeta dkim keygen output\n%s\n" % keys[key_name]["line"])
    os.chmod(table, 0o644)
    host = make_mailhost(**dkim_bed.filter_settings(zone, dkim_signing_table=table))
    host.start("filterd")
    return host


def send_outbound(host, subject):
    body = dkim_bed.message(sender="demo@example.test", subject=subject,
                            extra="Cc: bob@example.test\r\n")
    with host.smtp() as client:
        client.sendmail("demo@example.test", ["demo@example.test"], body)
    found = host.wait_for_messages("demo@example.test", 1)
    assert found, host.log()
    return found[0]


def altered(message):
    return message.replace(b"Hello from the DKIM tests.", b"Hello from someone else.")


@pytest.mark.parametrize("key_name,algorithm", [("rsa", b"a=rsa-sha256"),
                                                ("ed25519", b"a=ed25519-sha256")])
def test_sign_verifies(make_mailhost, zone, keys, records, testmsg_host, key_name, algorithm):
    host = signing_host(make_mailhost, zone, keys, key_name)
    stored = send_outbound(host, "signed with %s" % key_name)

    assert b"DKIM-Signature:" in stored
    assert algorithm in stored
    assert b"c=relaxed/relaxed" in stored
    assert dkim_bed.dkimpy_verify(stored, records)
    assert not dkim_bed.dkimpy_verify(altered(stored), records)

    good = run_testmsg(testmsg_host, stored)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run_testmsg(testmsg_host, altered(stored))
    assert bad.returncode != 0, bad.stdout + bad.stderr


def test_sign_authenticated_submission(make_mailhost, zone, keys, records):
    """A client outside mynetworks that logs in gets its mail signed."""
    table = Path(keys["directory"]) / "table-auth"
    table.write_text(keys["rsa"]["line"] + "\n")
    os.chmod(table, 0o644)
    host = make_mailhost(**dkim_bed.filter_settings(
        zone, dkim_signing_table=table, smtpd_sasl_auth_enable="all",
        smtpd_plaintext_auth="loopback", **INBOUND))
    host.start("filterd")
    assert host.wait_for_log(r"smtpd\[\d+\]: auth: mechanisms of ")

    body = dkim_bed.message(sender="demo@example.test", subject="submitted")
    with host.smtp() as client:
        client.login("demo@example.test", "demo")
        client.sendmail("demo@example.test", ["demo@example.test"], body)
    stored = host.wait_for_messages("demo@example.test", 1)

    assert len(stored) == 1, host.log()
    assert b"DKIM-Signature:" in stored[0]
    assert dkim_bed.dkimpy_verify(stored[0], records)
    assert dkim_bed.authres_fields(stored[0]) == []


def test_sign_oversigns_from(make_mailhost, zone, keys, records):
    host = signing_host(make_mailhost, zone, keys, "rsa")
    stored = send_outbound(host, "oversigned")
    header = stored.split(b"\n\n", 1)[0].replace(b"\n\t", b" ")
    signed = header.split(b" h=", 1)[1].split(b";", 1)[0].lower()

    assert signed.count(b"from") == 2
    assert b"subject" in signed
    assert b"cc" in signed.split(b":")
    # A second From: field added in transit breaks the signature.
    forged = stored.replace(b"From: Alice", b"From: Mallory <m@evil.test>\nFrom: Alice", 1)
    assert not dkim_bed.dkimpy_verify(forged, records)


def test_sign_covers_spam_edits(make_mailhost, zone, keys, records):
    """spamd tags the Subject: and replaces X-Spam-Flag; the signature
    covers both as stored."""
    import scanners
    if not shutil.which("spamd"):
        pytest.skip("spamd is not installed")
    spamd = scanners.Spamd()
    try:
        spamd.start()
        table = Path(keys["directory"]) / "table-spam"
        table.write_text(keys["rsa"]["line"] + "\n")
        os.chmod(table, 0o644)
        host = make_mailhost(**dkim_bed.filter_settings(
            zone, dkim_signing_table=table, filterd_checks="spamassassin dkim_sign authres",
            spamd_socket=spamd.socket, spam_scan_outbound="yes", spam_reject_score=0,
            dkim_sign_headers="From Subject Date To X-Spam-Flag"))
        host.start("filterd")
        body = dkim_bed.message(sender="demo@example.test", subject="spam test",
                                body="%s\n" % scanners.GTUBE, extra="X-Spam-Flag: NO\r\n")
        with host.smtp() as client:
            client.sendmail("demo@example.test", ["demo@example.test"], body)
        stored = host.wait_for_messages("demo@example.test", 1)
    finally:
        spamd.destroy()

    assert len(stored) == 1, host.log()
    assert b"Subject: *****SPAM***** spam test" in stored[0]
    assert b"X-Spam-Flag: YES" in stored[0]
    assert b"X-Spam-Flag: NO" not in stored[0]
    header = stored[0].split(b"\n\n", 1)[0].replace(b"\n\t", b" ")
    assert b"X-Spam-Flag" in header.split(b" h=", 1)[1].split(b";", 1)[0]
    assert dkim_bed.dkimpy_verify(stored[0], records)


def test_sign_reloads_keys(make_mailhost, zone, keys, records):
    host = signing_host(make_mailhost, zone, keys, "rsa")
    table = Path(keys["directory"]) / "table-rsa"
    table.write_text(keys["ed25519"]["line"] + "\n")
    host.procs["filterd"].send_signal(signal.SIGHUP)
    assert host.wait_for_log(r"(?s)DKIM signing keys loaded.*DKIM signing keys loaded")

    stored = send_outbound(host, "after reload")
    assert b"a=ed25519-sha256" in stored
    assert dkim_bed.dkimpy_verify(stored, records)


def test_sign_skips_other_domain(make_mailhost, zone, keys):
    host = signing_host(make_mailhost, zone, keys, "rsa")
    body = dkim_bed.message(sender="someone@other.test", subject="no key")
    with host.smtp() as client:
        client.sendmail("someone@other.test", ["demo@example.test"], body)
    found = host.wait_for_messages("demo@example.test", 1)

    assert found, host.log()
    assert b"DKIM-Signature:" not in found[0]
    assert host.wait_for_log(r"dkim_sign=none \(no key for other\.test\)")


# Subject, how dkimpy signs (None: unsigned), and the expected part.
VERIFY_CASES = [
    ("pass", "ext", "sender.test", False,
     "dkim=pass header.d=sender.test header.s=ext header.b="),
    ("fail", "ext", "sender.test", True,
     "dkim=fail header.d=sender.test header.s=ext header.b="),
    ("none", None, None, False, "dkim=none"),
    ("temperror", "ext", "down.test", False,
     "dkim=temperror header.d=down.test header.s=ext header.b="),
    ("permerror", "bad", "sender.test", False,
     "dkim=permerror header.d=sender.test header.s=bad header.b="),
]


def test_verify_results(make_mailhost, zone, keys):
    host = make_mailhost(**dkim_bed.filter_settings(zone, **INBOUND))
    host.start("filterd")
    key = keys["sender"]["path"].read_bytes()

    for subject, selector, domain, alter, _ in VERIFY_CASES:
        body = dkim_bed.message(subject="verify %s" % subject)
        if selector:
            body = dkim_bed.dkimpy_sign(body, selector, domain, key)
        if alter:
            body = altered(body)
        with host.smtp() as client:
            client.sendmail("alice@sender.test", ["demo@example.test"], body)
    stored = host.wait_for_messages("demo@example.test", len(VERIFY_CASES))
    assert len(stored) == len(VERIFY_CASES), host.log()

    by_subject = {}
    for message in stored:
        subject = message.split(b"Subject: verify ", 1)[1].split(b"\r\n", 1)[0].split(b"\n")[0]
        by_subject[subject.decode()] = dkim_bed.authres_fields(message)
    for subject, _, _, _, expected in VERIFY_CASES:
        fields = by_subject[subject]
        assert len(fields) == 1, (subject, fields)
        assert fields[0].startswith("mail.example.test;"), (subject, fields)
        assert expected in fields[0], (subject, fields)


def test_verify_hostile_signatures(make_mailhost, zone, keys):
    """Malformed and too many signatures: the message is accepted, each
    checked signature gets a result, and no value breaks the field."""
    host = make_mailhost(**dkim_bed.filter_settings(zone, **INBOUND))
    host.start("filterd")
    junk = ["DKIM-Signature: garbage\r\n",
            'DKIM-Signature: v=1; a=rsa-sha256; d=ex"ample.test; s=x; h=from; bh=AAAA; b=AAAA\r\n']
    junk += ["DKIM-Signature: v=1; a=rsa-sha256; d=sender.test; s=s%d; h=from; bh=AAAA; "
             "b=AAAAAAAA%d\r\n" % (n, n) for n in range(10)]
    body = dkim_bed.dkimpy_sign(dkim_bed.message(), "ext", "sender.test",
                                keys["sender"]["path"].read_bytes())
    with host.smtp() as client:
        client.sendmail("alice@sender.test", ["demo@example.test"], "".join(junk).encode() + body)
    stored = host.wait_for_messages("demo@example.test", 1)

    assert len(stored) == 1, host.log()
    fields = dkim_bed.authres_fields(stored[0])
    assert len(fields) == 1, fields
    assert "dkim=policy (13 signatures, 8 checked)" in fields[0]
    assert fields[0].count("dkim=permerror (invalid signature)") == 2
    assert 'ex"ample' not in fields[0]
    assert fields[0].count("dkim=") == 9


def test_keygen_modes(keys):
    key = keys["rsa"]["path"]
    key_stat = key.stat()
    directory_stat = key.parent.stat()
    import pwd
    owner = pwd.getpwnam("_estafeta-filter")

    assert stat.S_IMODE(key_stat.st_mode) == 0o600
    assert stat.S_IMODE(directory_stat.st_mode) == 0o750
    assert key_stat.st_uid == owner.pw_uid
    assert directory_stat.st_uid == owner.pw_uid
    assert key.name == "est.pem"
    assert key.parent == Path(keys["directory"]) / "keys" / "example.test"


def test_keygen_refuses_overwrite(keys):
    before = keys["rsa"]["path"].read_bytes()
    result = subprocess.run([str(BIN / "estafeta"), "-c", str(keys["config"]), "dkim", "keygen",
                             "example.test", "est"], capture_output=True, text=True)

    assert result.returncode != 0
    assert "exists; use --force" in result.stderr
    assert keys["rsa"]["path"].read_bytes() == before


def test_keygen_rejects_bad_input(keys):
    for args, expected in [(["example.test"], "usage"),
                           (["bad domain", "s"], "invalid domain"),
                           (["example.test", "s", "--type", "dsa"], "invalid key type"),
                           (["example.test", "s", "--bits", "512"], "invalid --bits")]:
        result = subprocess.run([str(BIN / "estafeta"), "-c", str(keys["config"]), "dkim",
                                 "keygen", *args], capture_output=True, text=True)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)


def test_keygen_record_verifies(keys):
    """The printed record, parsed back, verifies a message signed with the key."""
    for name in ("rsa", "ed25519"):
        key = keys[name]
        record = "".join(key["strings"])
        assert all(len(s) <= 255 for s in key["strings"])
        signed = dkim_bed.dkimpy_sign(dkim_bed.message(sender="demo@example.test"),
                                      key["selector"], key["domain"], key["path"].read_bytes())
        assert dkim_bed.dkimpy_verify(signed, {key["name"]: record}), name
