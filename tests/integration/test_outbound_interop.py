"""Outbound delivery over STARTTLS to real peers in network namespaces:
another Estafeta host, Debian's Postfix in both directions, and an
Estafeta relayhost that requires AUTH.

Host A (198.51.100.10) sends; 198.51.100.25 is mx1.example.test and
relay.example.test. The Postfix instances are private: their main.cf,
queue and log live in a directory under /tmp, and they listen only
inside their namespace.
"""

import os
import pwd
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

import netns_dns
from conftest import tls_pki

pytestmark = pytest.mark.skipif(netns_dns.available() is not None,
                                reason=netns_dns.available() or "")

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
needs_postfix = pytest.mark.skipif(not os.path.exists(POSTFIX), reason="postfix is not installed")

A_ADDRESS = "198.51.100.10"
B_ADDRESS = "198.51.100.25"
SENDER = "demo@sender.test"
RECORDS = [
    "example.test. MX 10 mx1.example.test.",
    "mx1.example.test. A " + B_ADDRESS,
    "relay.example.test. A " + B_ADDRESS,
]


@pytest.fixture
def net(tmp_path):
    bed = netns_dns.NetnsBed()
    try:
        bed.add_host("a", A_ADDRESS)
        bed.add_host("b", B_ADDRESS)
        bed.dns = netns_dns.ZoneServer(bed, tmp_path / "dns", ["example.test"], RECORDS)
        yield bed
    finally:
        bed.close()


def sender_host(make_mailhost, net, **settings):
    values = dict(
        myhostname="a.sender.test",
        local_domains="localhost a.sender.test",
        virtual_domains="sender.test",
        outbound_delivery="yes",
        dns_resolvers=netns_dns.DNS_ADDRESS,
        dns_trust_anchor_file="",
        smtp_connect_timeout="5s",
    )
    values.update(settings)
    host = make_mailhost(start=False, netns=net.hosts["a"], **values)
    host.write_users({SENDER: "demo-secret"})
    host.newaliases()
    host.start()
    return host


def receiver_host(make_mailhost, net, **settings):
    return make_mailhost(netns=net.hosts["b"], tls=True, smtpd_listen=B_ADDRESS + ":25",
                         myhostname="mx1.example.test", **settings)


def send(host, recipient, subject="interop"):
    message = "From: %s\nTo: %s\nSubject: %s\n\nHello over TLS.\n" % (SENDER, recipient, subject)
    result = host.run("sendmail", "-f", SENDER, recipient, input=message.encode())
    assert result.returncode == 0, result.stderr


def test_starttls_to_estafeta_host(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net)
    sender = sender_host(make_mailhost, net, smtp_tls_security_level="encrypt")

    send(sender, "alice@example.test", subject="over STARTTLS")

    messages = receiver.wait_for_messages("alice@example.test", 1, timeout=20)
    assert len(messages) == 1
    assert b"with ESMTPS" in messages[0]
    assert sender.wait_for_log(r"TLS connection established to mx1\.example\.test\[198\.51\.100\.25\]:25: TLS")
    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=mx1\.example\.test\[198\.51\.100\.25\]:25, "
                               r".*status=sent")


def test_encrypt_level_defers_plaintext_host(make_mailhost, net):
    make_mailhost(netns=net.hosts["b"], smtpd_listen=B_ADDRESS + ":25", myhostname="mx1.example.test")
    sender = sender_host(make_mailhost, net, smtp_tls_security_level="encrypt")

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*dsn=4\.7\.4, status=deferred \(TLS is required "
                               r"\(level encrypt from .*\), but mx1\.example\.test\[198\.51\.100\.25\]:25 does "
                               r"not offer STARTTLS\)", timeout=20)


def relay_host(make_mailhost, net):
    """Start relay.example.test in namespace b with submission on port 587.
    It lets its user demo@example.test send as any sender.test address."""
    relay = make_mailhost(start=False, netns=net.hosts["b"], tls=True, smtpd_listen=B_ADDRESS + ":25",
                          smtpd_submission_listen=B_ADDRESS + ":587", myhostname="relay.example.test")
    logins = relay.dir / "etc" / "sender_logins"
    logins.write_text("@sender.test demo@example.test\n")
    relay.settings["smtpd_sender_login_maps"] = str(logins)
    relay.write_config()
    relay.newaliases()
    relay.start()
    return relay


def test_relayhost_with_auth(make_mailhost, net):
    relay = relay_host(make_mailhost, net)
    password_file = Path(tempfile.mkdtemp(prefix="est-relay-", dir="/tmp")) / "relay_passwords"
    password_file.write_text("[relay.example.test]:587 demo@example.test:demo\n")
    os.chmod(password_file, 0o600)
    try:
        sender = sender_host(make_mailhost, net, relayhost="[relay.example.test]:587",
                             relayhost_password_file=str(password_file),
                             smtp_tls_security_level="encrypt")

        send(sender, "friend@elsewhere.test", subject="through the relayhost")

        assert sender.wait_for_log(r"to=<friend@elsewhere\.test>, relay=relay\.example\.test\[198\.51\.100\.25\]:587, "
                                   r".*status=sent", timeout=20)
        assert relay.wait_for_log(r"sasl_method=PLAIN, sasl_username=demo@example\.test")
        listing = relay.run("estafeta", "queue", "list").stdout.decode()
        assert "friend@elsewhere.test" in listing
        assert ":demo" not in sender.log()
        assert "ZGVtb0BleGFtcGxlLnRlc3QAZGVtbw" not in sender.log()
    finally:
        shutil.rmtree(password_file.parent, ignore_errors=True)


def test_root_only_password_file_kept_on_sighup(make_mailhost, net):
    relay = relay_host(make_mailhost, net)
    password_file = Path(tempfile.mkdtemp(prefix="est-relay-", dir="/tmp")) / "relay_passwords"
    password_file.write_text("[relay.example.test]:587 demo@example.test:demo\n")
    os.chmod(password_file, 0o600)
    try:
        sender = sender_host(make_mailhost, net, relayhost="[relay.example.test]:587",
                             relayhost_password_file=str(password_file),
                             smtp_tls_security_level="encrypt")

        # queued runs as its queue user by now, so it cannot read the
        # root-only file again and keeps the credentials it read as root.
        sender.procs["queued"].send_signal(signal.SIGHUP)
        assert sender.wait_for_log(r"reloading relayhost_password_file failed: relayhost_password_file "
                                   r".*: Permission denied; the credentials read before stay in use")
        send(sender, "friend@elsewhere.test", subject="after SIGHUP")

        assert sender.wait_for_log(r"to=<friend@elsewhere\.test>, relay=relay\.example\.test\[198\.51\.100\.25\]:587, "
                                   r".*status=sent", timeout=20)
        assert relay.wait_for_log(r"sasl_method=PLAIN, sasl_username=demo@example\.test")
        assert ":demo" not in sender.log()
    finally:
        shutil.rmtree(password_file.parent, ignore_errors=True)


def test_relayhost_password_file_mode_checked(make_mailhost, net, tmp_path):
    password_file = tmp_path / "relay_passwords"
    password_file.write_text("[relay.example.test]:587 demo@example.test:demo\n")
    os.chmod(password_file, 0o644)
    sender = sender_host(make_mailhost, net, relayhost="[relay.example.test]:587",
                         relayhost_password_file=str(password_file))

    send(sender, "friend@elsewhere.test")

    assert sender.wait_for_log(r"to=<friend@elsewhere\.test>, relay=none, .*status=deferred \(outbound delivery "
                               r"is off: relayhost_password_file .* is readable by group or others")


# Postfix peers.

POSTFIX_MAIN_CF = """\
# Private Postfix instance of tests/integration/test_outbound_interop.py.
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = example.test
mydestination =
inet_interfaces = {address}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8 {address}/32
smtpd_peername_lookup = no
alias_maps =
alias_database =
biff = no
maillog_file = {dir}/log/maillog
maillog_file_prefixes = {dir}
smtpd_tls_cert_file = {tls}/server.pem
smtpd_tls_key_file = {tls}/server.key
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_tls_CAfile = {tls}/ca.pem
virtual_mailbox_domains = example.test
virtual_mailbox_base = {dir}/vmail
virtual_mailbox_maps = texthash:{dir}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
{extra}
"""

POSTFIX_MASTER_CF = """\
smtp      inet  n       -       n       -       10      smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class NamespacePostfix:
    """A private Postfix instance started inside host HOST of NET."""

    def __init__(self, net, host, address, hostname, extra=""):
        self.net = net
        self.host = host
        self.dir = Path(tempfile.mkdtemp(prefix="est-postfix-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        for sub in ("etc", "data", "log", "spool", "vmail", "tls"):
            (self.dir / sub).mkdir()
            os.chmod(self.dir / sub, 0o755)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.dir / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.dir / "vmail", nobody.pw_uid, nobody.pw_gid)
        pki = tls_pki()
        for name in ("ca.pem", "server.pem", "server.key"):
            shutil.copy2(pki / name, self.dir / "tls" / name)
        (self.dir / "etc" / "vmailbox").write_text("alice@example.test alice/\n")
        (self.dir / "etc" / "main.cf").write_text(POSTFIX_MAIN_CF.format(
            dir=self.dir, address=address, hostname=hostname, tls=self.dir / "tls",
            uid=nobody.pw_uid, gid=nobody.pw_gid, extra=extra))
        (self.dir / "etc" / "master.cf").write_text(POSTFIX_MASTER_CF)
        self.master_pid = None

    def postfix(self, *args):
        return self.net.run(self.host, POSTFIX, "-c", str(self.dir / "etc"), *args, timeout=120)

    def start(self):
        result = self.postfix("start")
        assert result.returncode == 0, result.stdout + result.stderr
        self.master_pid = int((self.dir / "spool" / "pid" / "master.pid").read_text().split()[0])

    def sendmail(self, sender, recipient, message):
        # Postfix's sendmail checks inet_interfaces, so it runs in the namespace too.
        return self.net.run(self.host, "/usr/sbin/sendmail", "-C", str(self.dir / "etc"), "-f", sender,
                            recipient, input=message)

    def log(self):
        path = self.dir / "log" / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            time.sleep(0.1)
        return False

    def mailbox(self):
        folder = self.dir / "vmail" / "alice" / "new"
        return [p.read_bytes() for p in folder.iterdir()] if folder.is_dir() else []

    def destroy(self):
        if self.master_pid is not None:
            self.postfix("stop")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.kill(self.master_pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            try:
                os.killpg(self.master_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postfix_peers():
    peers = []
    yield peers
    for peer in peers:
        peer.destroy()


@needs_postfix
@pytest.mark.slow
def test_estafeta_to_postfix(make_mailhost, net, postfix_peers):
    postfix = NamespacePostfix(net, "b", B_ADDRESS, "mx1.example.test")
    postfix_peers.append(postfix)
    postfix.start()
    sender = sender_host(make_mailhost, net, smtp_tls_security_level="encrypt")

    send(sender, "alice@example.test", subject="to Postfix")

    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=mx1\.example\.test\[198\.51\.100\.25\]:25, "
                               r".*dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as ", timeout=30)
    assert sender.wait_for_log(r"TLS connection established to mx1\.example\.test")
    assert postfix.wait_for_log("Anonymous TLS connection established from")
    deadline = time.monotonic() + 20
    while not postfix.mailbox() and time.monotonic() < deadline:
        time.sleep(0.1)
    messages = postfix.mailbox()
    assert len(messages) == 1
    assert b"Subject: to Postfix" in messages[0]


@needs_postfix
@pytest.mark.slow
def test_postfix_to_estafeta(make_mailhost, net, postfix_peers):
    receiver = receiver_host(make_mailhost, net)
    postfix = NamespacePostfix(net, "a", A_ADDRESS, "a.sender.test",
                               extra="relayhost = [%s]:25\nvirtual_mailbox_domains =\n"
                                     "smtp_dns_support_level = disabled" % B_ADDRESS)
    postfix_peers.append(postfix)
    postfix.start()

    message = "From: %s\nTo: alice@example.test\nSubject: from Postfix\n\nHello.\n" % SENDER
    result = postfix.sendmail(SENDER, "alice@example.test", message)
    assert result.returncode == 0, result.stderr

    messages = receiver.wait_for_messages("alice@example.test", 1, timeout=30)
    assert len(messages) == 1
    assert b"Subject: from Postfix" in messages[0]
    assert b"with ESMTPS" in messages[0]
    assert postfix.wait_for_log("status=sent")
