"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS on authd's auth_socket.

The client side is GNU SASL's gsasl command (Debian's gsasl package),
an implementation that shares no code with authd. It reads the server's
challenges on standard input and writes its responses on standard
output, and for -PLUS it reads the channel binding data there too. The
tests carry its messages over the Dovecot authentication protocol
(version 1.3, as Dovecot 2.4 speaks it) to authd, and gsasl's exit
status shows whether authd's server-final signature was right.
"""

import base64
import hashlib
import hmac
import os
import select
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from conftest import TLS_SERVER_NAME, is_root, tls_client_context
from test_authd_pam import PASSWORD as PAM_PASSWORD
from test_authd_pam import pam_service, system_user  # noqa: F401 (fixtures)
from test_authd_passdb import AuthClient, passwd_line

PASSWORD = "pencil and paper"
EXPORTER = bytes(range(32))
UNIQUE = bytes(range(100, 112))

pytestmark = pytest.mark.skipif(shutil.which("gsasl") is None,
                                 reason="gsasl is not installed (Debian package gsasl)")


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text).decode()


class Gsasl:
    """One gsasl client exchange, driven through its standard input and output."""

    def __init__(self, mechanism, user, password=PASSWORD, exporter=None, unique=None,
                 no_cb=False, timeout=10):
        args = ["gsasl", "--client", "--quiet", "--mechanism=" + mechanism,
                "--authentication-id=" + user, "--password=" + password]
        if no_cb:
            args.append("--no-cb")
        self.timeout = timeout
        self.buffer = b""
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.first = None
        while self.first is None:
            item = self.read_item()
            if item == mechanism:
                continue
            if item.endswith("tls-exporter channel binding: "):
                self.write(b64(exporter) if exporter is not None else "")
            elif item.endswith("tls-unique channel binding: "):
                self.write(b64(unique) if unique is not None else "")
            else:
                self.first = item

    def read_item(self):
        """The next output line, or a prompt that waits for input."""
        deadline = time.monotonic() + self.timeout
        while True:
            if b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                return line.decode()
            if self.buffer.endswith(b": "):
                prompt, self.buffer = self.buffer, b""
                return prompt.decode()
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("gsasl wrote %r and then nothing" % self.buffer)
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise EOFError("gsasl exited: %s" % self.proc.stderr.read().decode())
            self.buffer += chunk

    def write(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def step(self, challenge):
        self.write(challenge)
        return self.read_item()

    def finish(self, server_final):
        """Feed server-final; gsasl's exit status is 0 when its signature verified.

        gsasl 2.2 replies to a verified server-final with an empty response
        and then reads one more line before it exits. A wrong signature
        makes it exit at once with a mechanism error.
        """
        self.write(server_final)
        try:
            if self.read_item() == "":
                self.write("")
        except EOFError:
            pass
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout=self.timeout)
        finally:
            self.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        if not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass


class Auth13(AuthClient):
    """An auth client of protocol version 1.MINOR (1.3 passes channel binding data)."""

    def __init__(self, path, minor=3, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.sock.sendall(b"VERSION\t1\t%d\nCPID\t%d\n" % (minor, os.getpid()))
        self.handshake = []
        while True:
            line = self.readline()
            self.handshake.append(line)
            if line == "DONE":
                break

    def request(self, line):
        self.send(line)
        return self.readline().split("\t")


def field(fields, name):
    for item in fields:
        if item.startswith(name + "="):
            return item[len(name) + 1:]
    return None


class Exchange:
    """The replies of one SCRAM exchange that gsasl's messages drove."""

    def __init__(self, client, request_id, gsasl, mechanism, params="secured=tls",
                 cbind=None, final_resp_ok=False):
        self.gsasl = gsasl
        self.server_first = self.server_final = None
        self.cbind_type = None
        self.gsasl_status = None
        extra = "\tfinal-resp-ok" if final_resp_ok else ""
        self.reply = client.request("AUTH\t%d\t%s\tservice=imap\trip=127.0.0.1\t%s%s\tresp=%s"
                                    % (request_id, mechanism, params, extra, gsasl.first))
        if self.reply[0] != "CONT":
            return
        self.server_first = unb64(self.reply[2])
        self.cbind_type = field(self.reply[3:], "channel_binding")
        client_final = gsasl.step(self.reply[2])
        line = "CONT\t%d\t%s" % (request_id, client_final)
        if cbind is not None:
            line += "\tchannel_binding=" + b64(cbind)
        self.reply = client.request(line)
        if self.reply[0] == "OK" and field(self.reply, "resp") is not None:
            self.server_final = unb64(field(self.reply, "resp"))
            self.gsasl_status = gsasl.finish(field(self.reply, "resp"))
            return
        if self.reply[0] != "CONT":
            return
        self.server_final = unb64(self.reply[2])
        self.gsasl_status = gsasl.finish(self.reply[2])
        self.reply = client.request("CONT\t%d\t" % request_id)

    def error(self):
        """The e= value of a FAIL's server-final, or None."""
        resp = field(self.reply, "resp")
        return unb64(resp) if resp is not None else None


@pytest.fixture
def scram_host(make_mailhost):
    def start(users=None, **settings):
        settings.setdefault("auth_failure_delay", 0)
        settings.setdefault("passdb", "passwd-file")
        host = make_mailhost(start=False, **settings)
        users = users or {"scram@example.test": "{PLAIN}" + PASSWORD}
        (host.dir / "etc" / "passwd-file").write_text(
            "".join(passwd_line(a, s) for a, s in users.items()))
        host.start("authd")
        return host
    return start


def connect(host, minor=3):
    return Auth13(str(host.dir / "sock" / "auth-client"), minor=minor)


def doveadm_scram(password):
    if shutil.which("doveadm") is None:
        pytest.skip("doveadm is not installed (Debian package dovecot-core)")
    result = subprocess.run(["doveadm", "pw", "-s", "SCRAM-SHA-256", "-p", password],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


# The handshake

def test_handshake_offers_plus_to_v13(scram_host):
    client = connect(scram_host())
    assert client.handshake[0] == "VERSION\t1\t3"
    assert "MECH\tSCRAM-SHA-256\tmutual-auth" in client.handshake
    assert "MECH\tSCRAM-SHA-256-PLUS\tmutual-auth\tchannel-binding" in client.handshake


def test_handshake_hides_plus_from_old_clients(scram_host):
    # Postfix speaks 1.0 and could never pass channel binding data.
    client = connect(scram_host(), minor=0)
    assert "MECH\tSCRAM-SHA-256\tmutual-auth" in client.handshake
    assert not any("PLUS" in line for line in client.handshake)


# SCRAM-SHA-256

def test_scram_plain_entry_ok(scram_host):
    host = scram_host()
    exchange = Exchange(connect(host), 1, Gsasl("SCRAM-SHA-256", "scram@example.test",
                                                no_cb=True), "SCRAM-SHA-256")
    assert exchange.reply == ["OK", "1", "user=scram@example.test"]
    assert exchange.server_first.startswith("r=")
    assert ",i=4096" in exchange.server_first
    assert exchange.server_final.startswith("v=")
    assert exchange.gsasl_status == 0
    assert host.wait_for_log(r"auth: method=SCRAM-SHA-256, user=<scram@example\.test>, "
                             r"service=imap, rip=127\.0\.0\.1, status=ok")


def test_scram_doveadm_entry_ok(scram_host):
    stored = doveadm_scram(PASSWORD)
    assert stored.startswith("{SCRAM-SHA-256}4096,")
    host = scram_host(users={"dove@example.test": stored})
    exchange = Exchange(connect(host), 1, Gsasl("SCRAM-SHA-256", "dove@example.test",
                                                no_cb=True), "SCRAM-SHA-256")
    assert exchange.reply == ["OK", "1", "user=dove@example.test"]
    assert exchange.gsasl_status == 0
    salt = stored.split(",")[1]
    assert ",s=%s,i=4096" % salt in exchange.server_first


def test_scram_doveadm_entry_wrong_password(scram_host):
    host = scram_host(users={"dove@example.test": doveadm_scram(PASSWORD)})
    exchange = Exchange(connect(host), 1, Gsasl("SCRAM-SHA-256", "dove@example.test",
                                                password="not it", no_cb=True),
                        "SCRAM-SHA-256")
    exchange.gsasl.close()
    assert exchange.reply[0] == "FAIL"
    assert exchange.error() == "e=invalid-proof"


def gsasl_mkpasswd(password):
    result = subprocess.run(["gsasl", "--mkpasswd", "--mechanism=SCRAM-SHA-256",
                             "--password=" + password],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_scram_gsasl_mkpasswd_entry_ok(scram_host):
    # gsasl derives the keys itself (65536 iterations, a 12-byte salt),
    # so this checks authd's parsing against a second implementation.
    stored = gsasl_mkpasswd(PASSWORD)
    assert stored.startswith("{SCRAM-SHA-256}")
    host = scram_host(users={"gnu@example.test": stored})
    exchange = Exchange(connect(host), 1, Gsasl("SCRAM-SHA-256", "gnu@example.test",
                                                no_cb=True), "SCRAM-SHA-256")
    assert exchange.reply == ["OK", "1", "user=gnu@example.test"]
    assert exchange.gsasl_status == 0
    client = connect(host)
    assert client.plain(2, "gnu@example.test", PASSWORD)[0] == "OK"
    assert client.plain(3, "gnu@example.test", "other")[0] == "FAIL"


@pytest.mark.skipif(not is_root(), reason="creating system users needs root")
def test_scram_pam_user_fails(make_mailhost, system_user, pam_service):
    host = make_mailhost(start=False, auth_failure_delay=0, pam_service=pam_service,
                         debug="yes")
    host.start("authd")
    client = connect(host)
    assert client.plain(1, system_user, PAM_PASSWORD)[0] == "OK"
    gsasl = Gsasl("SCRAM-SHA-256", system_user, password=PAM_PASSWORD, no_cb=True)
    exchange = Exchange(client, 2, gsasl, "SCRAM-SHA-256")
    gsasl.close()
    assert exchange.server_first is None
    assert exchange.reply[:3] == ["FAIL", "2", "user=" + system_user]
    assert host.wait_for_log(r"SCRAM-SHA-256 for %s: PAM keeps no stored password" % system_user)


def test_plain_login_with_doveadm_scram_entry(scram_host):
    # A {SCRAM-SHA-256} entry also serves PLAIN, as in Dovecot.
    host = scram_host(users={"dove@example.test": doveadm_scram(PASSWORD)})
    client = connect(host)
    assert client.plain(1, "dove@example.test", PASSWORD) == ["OK", "1", "user=dove@example.test"]
    assert client.plain(2, "dove@example.test", PASSWORD + "x")[0] == "FAIL"


def test_scram_final_resp_ok(scram_host):
    host = scram_host()
    exchange = Exchange(connect(host), 1, Gsasl("SCRAM-SHA-256", "scram@example.test",
                                                no_cb=True), "SCRAM-SHA-256",
                        final_resp_ok=True)
    assert exchange.reply[:3] == ["OK", "1", "user=scram@example.test"]
    assert exchange.server_final.startswith("v=")
    assert exchange.gsasl_status == 0


def test_scram_wrong_password_delayed(scram_host):
    host = scram_host(auth_failure_delay=1)
    gsasl = Gsasl("SCRAM-SHA-256", "scram@example.test", password="wrong guess", no_cb=True)
    started = time.monotonic()
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256")
    elapsed = time.monotonic() - started
    gsasl.close()
    assert exchange.reply[:3] == ["FAIL", "1", "user=scram@example.test"]
    assert exchange.error() == "e=invalid-proof"
    assert elapsed >= 0.9
    assert host.wait_for_log(r"method=SCRAM-SHA-256, user=<scram@example\.test>.*"
                             r"status=failed \(password mismatch\)")
    assert host.wait_for_log(r"auth: rip=127\.0\.0\.1, failures=1, reply delayed by 1 s")


def test_scram_unknown_user_same_salt(scram_host):
    host = scram_host()
    salts = []
    for request_id in (1, 2):
        gsasl = Gsasl("SCRAM-SHA-256", "nobody@example.test", no_cb=True)
        exchange = Exchange(connect(host), request_id, gsasl, "SCRAM-SHA-256")
        gsasl.close()
        assert exchange.server_first is not None
        assert exchange.reply[0] == "FAIL"
        assert exchange.error() == "e=invalid-proof"
        salts.append(exchange.server_first.split(",")[1])
    # A new salt per attempt would tell that the user does not exist.
    assert salts[0] == salts[1]
    assert host.wait_for_log(r"user=<nobody@example\.test>.*status=failed \(unknown user\)")


def test_scram_crypt_entry_fails(scram_host):
    stored = "{SHA512-CRYPT}$6$saltsalt$" + "a" * 86
    host = scram_host(users={"crypt@example.test": stored}, debug="yes")
    gsasl = Gsasl("SCRAM-SHA-256", "crypt@example.test", no_cb=True)
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256")
    gsasl.close()
    assert exchange.server_first is None
    assert exchange.reply[:3] == ["FAIL", "1", "user=crypt@example.test"]
    assert host.wait_for_log(r"status=failed \(credentials not usable with SCRAM\)")
    assert host.wait_for_log(r"SCRAM-SHA-256 for crypt@example\.test: the password scheme "
                             r"cannot be used with SCRAM")


def test_scram_iterations_parameter(scram_host):
    host = scram_host(scram_iterations=5000)
    exchange = Exchange(connect(host), 1, Gsasl("SCRAM-SHA-256", "scram@example.test",
                                                no_cb=True), "SCRAM-SHA-256")
    assert ",i=5000" in exchange.server_first
    assert exchange.reply[0] == "OK"
    assert exchange.gsasl_status == 0


def test_scram_log_has_no_secrets(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256", "scram@example.test", no_cb=True)
    client_first = unb64(gsasl.first)
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256")
    assert exchange.reply[0] == "OK"
    log = host.log()
    assert PASSWORD not in log
    assert exchange.server_final[2:] not in log
    assert client_first.split("r=")[1] not in log


def test_gsasl_rejects_forged_server_final(scram_host):
    # The check that makes gsasl's exit status worth asserting.
    host = scram_host()
    client = connect(host)
    gsasl = Gsasl("SCRAM-SHA-256", "scram@example.test", no_cb=True)
    reply = client.request("AUTH\t1\tSCRAM-SHA-256\tservice=imap\tresp=" + gsasl.first)
    reply = client.request("CONT\t1\t" + gsasl.step(reply[2]))
    assert unb64(reply[2]).startswith("v=")
    assert gsasl.finish(b64("v=" + b64(bytes(32)))) != 0


# SCRAM-SHA-256-PLUS

def test_plus_exporter_ok(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "scram@example.test", exporter=EXPORTER)
    assert unb64(gsasl.first).startswith("p=tls-exporter,,")
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256-PLUS", cbind=EXPORTER)
    assert exchange.cbind_type == "tls-exporter"
    assert exchange.reply == ["OK", "1", "user=scram@example.test"]
    assert exchange.gsasl_status == 0
    assert host.wait_for_log(r"method=SCRAM-SHA-256-PLUS, user=<scram@example\.test>.*status=ok")


def test_plus_unique_ok(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "scram@example.test", unique=UNIQUE)
    assert unb64(gsasl.first).startswith("p=tls-unique,,")
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256-PLUS", cbind=UNIQUE)
    assert exchange.cbind_type == "tls-unique"
    assert exchange.reply == ["OK", "1", "user=scram@example.test"]
    assert exchange.gsasl_status == 0


def test_plus_cbind_mismatch_fails(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "scram@example.test", exporter=EXPORTER)
    other = bytes(reversed(EXPORTER))
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256-PLUS", cbind=other)
    gsasl.close()
    assert exchange.reply[:3] == ["FAIL", "1", "user=scram@example.test"]
    assert exchange.error() == "e=channel-bindings-dont-match"
    assert host.wait_for_log(r"status=failed \(channel binding mismatch\)")


def test_plus_cbind_one_byte_short_fails(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "scram@example.test", exporter=EXPORTER)
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256-PLUS", cbind=EXPORTER[:-1])
    gsasl.close()
    assert exchange.reply[0] == "FAIL"
    assert exchange.error() == "e=channel-bindings-dont-match"


def test_plus_cbind_missing_fails(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "scram@example.test", exporter=EXPORTER)
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256-PLUS", cbind=None)
    gsasl.close()
    assert exchange.reply[0] == "FAIL"
    assert exchange.error() == "e=channel-bindings-dont-match"
    assert host.wait_for_log(r"the auth client sent no channel binding data")


def test_plus_needs_tls(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "scram@example.test", exporter=EXPORTER)
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256-PLUS", params="secured")
    gsasl.close()
    assert exchange.reply == ["FAIL", "1", "reason=SCRAM-SHA-256-PLUS needs a TLS connection"]


def test_plus_unknown_to_old_clients(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "scram@example.test", exporter=EXPORTER)
    exchange = Exchange(connect(host, minor=2), 1, gsasl, "SCRAM-SHA-256-PLUS")
    gsasl.close()
    assert exchange.reply == ["FAIL", "1", "reason=Unsupported authentication mechanism"]


def y_flag_exchange(client, password=PASSWORD):
    """A SCRAM-SHA-256 login with the "y" flag, computed here with hashlib.

    gsasl 2.2's command line fails by itself when it is given channel
    binding data for SCRAM-SHA-256, so it cannot send "y". This is the
    RFC 5802 client computation for that one case.
    """
    header, bare = "y,,", "n=scram@example.test,r=ynonce"
    reply = client.request("AUTH\t1\tSCRAM-SHA-256\tservice=imap\tsecured=tls\tresp=%s"
                           % b64(header + bare))
    if reply[0] != "CONT":
        return reply
    server_first = unb64(reply[2])
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = "c=%s,r=%s" % (b64(header), attrs["r"])
    auth_message = ",".join((bare, server_first, without_proof)).encode()
    signature = hmac.new(stored_key, auth_message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    reply = client.request("CONT\t1\t" + b64("%s,p=%s" % (without_proof, b64(proof))))
    if reply[0] != "CONT":
        return reply
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    expected = hmac.new(server_key, auth_message, "sha256").digest()
    assert unb64(reply[2]) == "v=" + b64(expected)
    return client.request("CONT\t1\t")


def test_downgrade_y_flag_rejected(scram_host):
    # The flag "y" means that the client could bind but believes the
    # server cannot. authd offered -PLUS on this TLS connection of a 1.3
    # client, so something removed it on the way.
    host = scram_host()
    reply = y_flag_exchange(connect(host))
    assert reply[:3] == ["FAIL", "1", "user=scram@example.test"]
    assert host.wait_for_log(r"status=failed \(client assumes no channel binding, but "
                             r"SCRAM-SHA-256-PLUS was offered\)")


@pytest.mark.parametrize("minor, params", [(0, "secured=tls"), (3, "secured")])
def test_y_flag_ok_without_plus_offer(scram_host, minor, params):
    host = scram_host()
    client = connect(host, minor=minor)
    if params != "secured=tls":
        client.send = lambda line, send=client.send: send(line.replace("secured=tls", params))
    assert y_flag_exchange(client) == ["OK", "1", "user=scram@example.test"]


def test_y_flag_wrong_password_fails(scram_host):
    host = scram_host()
    reply = y_flag_exchange(connect(host, minor=0), password="wrong")
    assert reply[0] == "FAIL"
    assert unb64(field(reply, "resp")) == "e=invalid-proof"


def test_p_flag_with_plain_scram_fails(scram_host):
    host = scram_host()
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "scram@example.test", exporter=EXPORTER)
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256")
    gsasl.close()
    assert exchange.reply[0] == "FAIL"
    assert host.wait_for_log(r"status=failed \(channel binding requested with SCRAM-SHA-256\)")


# Malformed input: each fails cleanly, and authd keeps serving.

MALFORMED_FIRST = {
    "empty": b"",
    "no gs2 header": b"n=scram@example.test,r=abc",
    "bad cbind flag": b"x,,n=scram@example.test,r=abc",
    "no username": b"n,,r=abc",
    "empty username": b"n,,n=,r=abc",
    "bad escape": b"n,,n=scr=41m@example.test,r=abc",
    "invalid utf-8": b"n,,n=\xc3\x28@example.test,r=abc",
    "overlong utf-8": b"n,,n=\xc0\xafx@example.test,r=abc",
    "no nonce": b"n,,n=scram@example.test",
    "empty nonce": b"n,,n=scram@example.test,r=",
    "nonce with space": b"n,,n=scram@example.test,r=a b",
    "nul byte": b"n,,n=scram@example.test,r=ab\x00c",
    "mandatory extension": b"n,,m=ext,n=scram@example.test,r=abc",
    "bad extension": b"n,,n=scram@example.test,r=abc,1=x",
    "unknown cbind type": b"p=tls-server-end-point,,n=scram@example.test,r=abc",
    "cbind type with comma": b"p=tls,unique,,n=scram@example.test,r=abc",
    "other authzid": b"n,a=demo@example.test,n=scram@example.test,r=abc",
    "unterminated gs2": b"n,a=scram@example.test",
}


@pytest.mark.parametrize("name", sorted(MALFORMED_FIRST))
def test_malformed_client_first(scram_host, name):
    host = scram_host()
    client = connect(host)
    mechanism = "SCRAM-SHA-256-PLUS" if b"p=" in MALFORMED_FIRST[name][:2] else "SCRAM-SHA-256"
    resp = b64(MALFORMED_FIRST[name]) if MALFORMED_FIRST[name] else "="
    reply = client.request("AUTH\t1\t%s\tservice=imap\tsecured=tls\tresp=%s" % (mechanism, resp))
    assert reply[0] == "FAIL"
    assert reply[1] == "1"
    # The connection and the daemon go on.
    assert client.plain(2, "scram@example.test", PASSWORD)[0] == "OK"


def test_escaped_username_decoded(scram_host):
    host = scram_host(users={"a,b=c@example.test": "{PLAIN}" + PASSWORD})
    gsasl = Gsasl("SCRAM-SHA-256", "a,b=c@example.test", no_cb=True)
    assert "n=a=2Cb=3Dc@example.test," in unb64(gsasl.first)
    exchange = Exchange(connect(host), 1, gsasl, "SCRAM-SHA-256")
    assert exchange.reply == ["OK", "1", "user=a,b=c@example.test"]
    assert exchange.gsasl_status == 0


def client_first_round(client, nonce="clientnonce"):
    first = "n,,n=scram@example.test,r=" + nonce
    reply = client.request("AUTH\t1\tSCRAM-SHA-256\tservice=imap\tresp=" + b64(first))
    assert reply[0] == "CONT"
    return unb64(reply[2])


@pytest.mark.parametrize("final, error", [
    ("c=biws,r=wrongnonce,p=" + b64(bytes(32)), "e=other-error"),
    ("c=biws,r={nonce}", "e=invalid-encoding"),
    ("c=biws,r={nonce},p=!!!!", "e=invalid-encoding"),
    ("c=biws,r={nonce},p=" + b64(bytes(31)), "e=invalid-proof"),
    ("c=bixx,r={nonce},p=" + b64(bytes(32)), "e=channel-bindings-dont-match"),
    ("c=biws,p=" + b64(bytes(32)), "e=invalid-encoding"),
    ("r={nonce},c=biws,p=" + b64(bytes(32)), "e=invalid-encoding"),
    ("c=biws,r={nonce},p=" + b64(bytes(32)), "e=invalid-proof"),
])
def test_malformed_client_final(scram_host, final, error):
    host = scram_host()
    client = connect(host)
    server_first = client_first_round(client)
    nonce = server_first.split(",")[0][2:]
    reply = client.request("CONT\t1\t" + b64(final.format(nonce=nonce)))
    assert reply[0] == "FAIL"
    assert unb64(field(reply, "resp")) == error
    assert client.plain(2, "scram@example.test", PASSWORD)[0] == "OK"


def test_invalid_base64_response(scram_host):
    host = scram_host()
    client = connect(host)
    client_first_round(client)
    reply = client.request("CONT\t1\t@@@@")
    assert reply == ["FAIL", "1", "reason=Invalid base64 data"]
    assert client.plain(2, "scram@example.test", PASSWORD)[0] == "OK"


def test_invalid_channel_binding_field(scram_host):
    host = scram_host()
    client = connect(host)
    client_first_round(client)
    reply = client.request("CONT\t1\t%s\tchannel_binding=@@" % b64("c=biws,r=x,p=" + b64(bytes(32))))
    assert reply == ["FAIL", "1", "reason=Invalid channel binding data"]


def test_data_after_server_final_fails(scram_host):
    host = scram_host()
    client = connect(host)
    gsasl = Gsasl("SCRAM-SHA-256", "scram@example.test", no_cb=True)
    reply = client.request("AUTH\t1\tSCRAM-SHA-256\tservice=imap\tresp=" + gsasl.first)
    reply = client.request("CONT\t1\t" + gsasl.step(reply[2]))
    assert reply[0] == "CONT"
    assert unb64(reply[2]).startswith("v=")
    gsasl.close()
    reply = client.request("CONT\t1\t" + b64("more"))
    assert reply == ["FAIL", "1", "reason=Unexpected data after server-final"]


def test_scram_without_initial_response(scram_host):
    host = scram_host()
    client = connect(host)
    assert client.request("AUTH\t1\tSCRAM-SHA-256\tservice=imap") == ["CONT", "1", ""]
    gsasl = Gsasl("SCRAM-SHA-256", "scram@example.test", no_cb=True)
    reply = client.request("CONT\t1\t" + gsasl.first)
    reply = client.request("CONT\t1\t" + gsasl.step(reply[2]))
    assert gsasl.finish(reply[2]) == 0
    assert client.request("CONT\t1\t") == ["OK", "1", "user=scram@example.test"]


def test_old_client_still_gets_plain(scram_host):
    host = scram_host()
    client = AuthClient(str(host.dir / "sock" / "auth-client"))
    assert client.plain(1, "scram@example.test", PASSWORD) == ["OK", "1",
                                                               "user=scram@example.test"]


# End to end: imapd's AUTHENTICATE with channel binding from a real TLS session

class ImapSession:
    """A plain IMAP connection that starts TLS 1.2 and keeps its tls-unique value."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""
        assert self.line().startswith("* OK")
        self.send("s STARTTLS")
        assert self.line().startswith("s OK")
        context = tls_client_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.sock = context.wrap_socket(self.sock, server_hostname=TLS_SERVER_NAME)
        # RFC 5929: the first Finished message of the handshake, the client's here.
        self.tls_unique = self.sock.get_channel_binding("tls-unique")

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by imapd; pending %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode()

    def authenticate(self, gsasl):
        """Relay gsasl's SCRAM-SHA-256-PLUS exchange; return the tagged reply."""
        self.send("a AUTHENTICATE SCRAM-SHA-256-PLUS")
        assert self.line() == "+ "
        self.send(gsasl.first)
        reply = self.line()
        if not reply.startswith("+ "):
            return reply
        self.send(gsasl.step(reply[2:]))
        reply = self.line()
        if not reply.startswith("+ "):
            return reply
        assert gsasl.finish(reply[2:]) == 0
        self.send("")
        return self.line()

    def close(self):
        self.sock.close()


@pytest.fixture
def imap_tls_host(make_mailhost):
    host = make_mailhost(tls=True, auth_failure_delay=0)
    host.start("imapd")
    return host


def test_imap_plus_tls_unique_ok(imap_tls_host):
    session = ImapSession(imap_tls_host.imap_port)
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "demo@example.test", password="demo",
                  unique=session.tls_unique)
    assert unb64(gsasl.first).startswith("p=tls-unique,,")
    reply = session.authenticate(gsasl)
    session.close()
    assert reply.startswith("a OK")
    assert imap_tls_host.wait_for_log(r"auth: method=SCRAM-SHA-256-PLUS, "
                                      r"user=<demo@example\.test>, service=imap, .*status=ok")


def test_imap_plus_other_tls_unique_fails(imap_tls_host):
    # Channel binding data other than the session's tls-unique value.
    session = ImapSession(imap_tls_host.imap_port)
    other = bytes(b ^ 0x01 for b in session.tls_unique)
    gsasl = Gsasl("SCRAM-SHA-256-PLUS", "demo@example.test", password="demo", unique=other)
    reply = session.authenticate(gsasl)
    gsasl.close()
    session.close()
    assert reply.startswith("a NO [AUTHENTICATIONFAILED]")
    assert imap_tls_host.wait_for_log(r"status=failed \(channel binding mismatch\)")
