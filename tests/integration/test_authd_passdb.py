"""authd's password checks on auth_socket, driven with the Dovecot
authentication protocol as Postfix's dovecot SASL client speaks it:
VERSION and CPID, then AUTH with an initial response or CONT rounds.
"""

import base64
import hashlib
import os
import socket
import time
import warnings

import pytest

with warnings.catch_warnings():
    # Python 3.11 (Debian 12) still has crypt(3) bindings; 3.13 removes them.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

PASSWORD = "s3cret pass"


class AuthClient:
    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.sock.sendall(b"VERSION\t1\t0\nCPID\t%d\n" % os.getpid())
        self.handshake = []
        while True:
            line = self.readline()
            self.handshake.append(line)
            if line == "DONE":
                break

    def readline(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by authd; pending %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def plain(self, request_id, user, password, authzid=""):
        resp = base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()
        self.send("AUTH\t%d\tPLAIN\tservice=smtp\tnologin\trip=127.0.0.1\tsecured\tresp=%s"
                  % (request_id, resp))
        return self.readline().split("\t")

    def closed_by_server(self):
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def b64(text):
    return base64.b64encode(text.encode()).decode()


def ssha(digest, password, salt):
    return base64.b64encode(digest(password.encode() + salt).digest() + salt).decode()


def passwd_line(address, stored):
    return "%s:%s::::/srv/mail/%s::\n" % (address, stored, address.split("@")[0])


SCHEMES = {
    "plain@example.test": "{PLAIN}" + PASSWORD,
    "clear@example.test": "{CLEAR}" + PASSWORD,
    "sha512crypt@example.test": "{SHA512-CRYPT}" + crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_SHA512)),
    "sha256crypt@example.test": "{SHA256-CRYPT}" + crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_SHA256)),
    "blfcrypt@example.test": "{BLF-CRYPT}" + crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH)),
    "md5crypt@example.test": "{MD5-CRYPT}" + crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_MD5)),
    "bare-crypt@example.test": crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_SHA512)),
    "sha256@example.test": "{SHA256}" + base64.b64encode(hashlib.sha256(PASSWORD.encode()).digest()).decode(),
    "sha512@example.test": "{SHA512}" + base64.b64encode(hashlib.sha512(PASSWORD.encode()).digest()).decode(),
    "ssha256@example.test": "{SSHA256}" + ssha(hashlib.sha256, PASSWORD, b"saltsalt"),
    "ssha512@example.test": "{SSHA512}" + ssha(hashlib.sha512, PASSWORD, b"pepper12"),
}


@pytest.fixture
def auth_host(make_mailhost):
    def start(users=None, **settings):
        settings.setdefault("auth_failure_delay", 0)
        host = make_mailhost(start=False, **settings)
        if users is not None:
            path = host.dir / "etc" / "passwd-file"
            path.write_text("".join(passwd_line(a, s) for a, s in users.items()))
        host.start("authd")
        return host
    return start


def connect(host):
    return AuthClient(str(host.dir / "sock" / "auth-client"))


def test_handshake(auth_host):
    host = auth_host()
    client = connect(host)
    assert client.handshake[0] == "VERSION\t1\t3"
    assert "MECH\tPLAIN\tplaintext" in client.handshake
    assert "MECH\tLOGIN\tplaintext" in client.handshake
    assert "MECH\tSCRAM-SHA-256\tmutual-auth" in client.handshake
    assert "SPID\t%d" % host.procs["authd"].pid in client.handshake
    assert any(line.startswith("CUID\t") for line in client.handshake)
    assert any(len(line) == len("COOKIE\t") + 32 for line in client.handshake
               if line.startswith("COOKIE\t"))


def test_plain_ok(auth_host):
    host = auth_host()
    assert connect(host).plain(1, "demo@example.test", "demo") == ["OK", "1", "user=demo@example.test"]
    assert host.wait_for_log(r"auth: method=PLAIN, user=<demo@example\.test>, service=smtp, "
                             r"rip=127\.0\.0\.1, status=ok")


def test_plain_wrong_password(auth_host):
    host = auth_host()
    assert connect(host).plain(1, "demo@example.test", "wrong") == ["FAIL", "1", "user=demo@example.test"]
    assert host.wait_for_log(r"user=<demo@example\.test>.*status=failed \(password mismatch\)")
    assert "wrong" not in host.log()


def test_plain_unknown_user(auth_host):
    host = auth_host()
    assert connect(host).plain(1, "nobody@example.test", "x") == ["FAIL", "1", "user=nobody@example.test"]
    assert host.wait_for_log(r"user=<nobody@example\.test>.*status=failed \(unknown user\)")


def test_plain_user_case_insensitive(auth_host):
    host = auth_host()
    assert connect(host).plain(1, "Demo@Example.TEST", "demo") == ["OK", "1", "user=demo@example.test"]


def test_plain_system_user_refused(auth_host):
    host = auth_host()
    reply = connect(host).plain(1, "root", "x")
    assert reply[0] == "FAIL"
    assert host.wait_for_log(r"user=<root>.*status=failed \(unknown user\)")


@pytest.mark.parametrize("address", sorted(SCHEMES))
def test_password_schemes(auth_host, address):
    host = auth_host(users=SCHEMES)
    client = connect(host)
    assert client.plain(1, address, PASSWORD)[0] == "OK"
    assert client.plain(2, address, PASSWORD + "x")[0] == "FAIL"


def test_unknown_scheme_fails(auth_host):
    host = auth_host(users={"odd@example.test": "{ROT13}frperg"})
    assert connect(host).plain(1, "odd@example.test", "secret")[0] == "FAIL"
    assert host.wait_for_log(r"passwd-file:1: the password of odd@example\.test has an "
                             r"unsupported scheme or format")


def test_plain_authzid_same_user(auth_host):
    host = auth_host()
    reply = connect(host).plain(1, "demo@example.test", "demo", authzid="demo@example.test")
    assert reply[0] == "OK"


def test_plain_authzid_other_user_refused(auth_host):
    host = auth_host()
    reply = connect(host).plain(1, "demo@example.test", "demo", authzid="alice@example.test")
    assert reply == ["FAIL", "1", "reason=Authorization identity not allowed"]


def test_plain_without_initial_response(auth_host):
    host = auth_host()
    client = connect(host)
    client.send("AUTH\t5\tPLAIN\tservice=smtp")
    assert client.readline() == "CONT\t5\t"
    client.send("CONT\t5\t" + b64("\0demo@example.test\0demo"))
    assert client.readline() == "OK\t5\tuser=demo@example.test"


def test_login_mechanism(auth_host):
    host = auth_host()
    client = connect(host)
    client.send("AUTH\t7\tLOGIN\tservice=smtp")
    assert client.readline() == "CONT\t7\t" + b64("Username:")
    client.send("CONT\t7\t" + b64("alice@example.test"))
    assert client.readline() == "CONT\t7\t" + b64("Password:")
    client.send("CONT\t7\t" + b64("alice-secret"))
    assert client.readline() == "OK\t7\tuser=alice@example.test"


def test_login_initial_response_is_user(auth_host):
    host = auth_host()
    client = connect(host)
    client.send("AUTH\t8\tLOGIN\tservice=smtp\tresp=" + b64("bob@example.test"))
    assert client.readline() == "CONT\t8\t" + b64("Password:")
    client.send("CONT\t8\t" + b64("wrong"))
    assert client.readline() == "FAIL\t8\tuser=bob@example.test"


def test_unsupported_mechanism(auth_host):
    host = auth_host()
    client = connect(host)
    client.send("AUTH\t3\tCRAM-MD5\tservice=smtp")
    assert client.readline() == "FAIL\t3\treason=Unsupported authentication mechanism"


def test_invalid_base64(auth_host):
    host = auth_host()
    client = connect(host)
    client.send("AUTH\t4\tPLAIN\tservice=smtp\tresp=!!!notbase64")
    assert client.readline() == "FAIL\t4\treason=Invalid base64 data"


def test_malformed_plain_response(auth_host):
    host = auth_host()
    client = connect(host)
    client.send("AUTH\t4\tPLAIN\tservice=smtp\tresp=" + b64("no-nul-bytes"))
    assert client.readline() == "FAIL\t4\treason=Invalid PLAIN response"


def test_several_attempts_on_one_connection(auth_host):
    host = auth_host()
    client = connect(host)
    assert client.plain(1, "demo@example.test", "demo")[0] == "OK"
    assert client.plain(2, "alice@example.test", "bad")[0] == "FAIL"
    assert client.plain(3, "bob@example.test", "bob-secret")[0] == "OK"


def test_failure_is_delayed(auth_host):
    host = auth_host(auth_failure_delay=1)
    client = connect(host)
    start = time.monotonic()
    assert client.plain(1, "demo@example.test", "wrong")[0] == "FAIL"
    assert time.monotonic() - start >= 0.9
    start = time.monotonic()
    assert client.plain(2, "demo@example.test", "demo")[0] == "OK"
    assert time.monotonic() - start < 0.9


def test_temporary_failure_when_file_unreadable(auth_host):
    host = auth_host()
    path = host.dir / "etc" / "passwd-file"
    path.unlink()
    path.mkdir()      # exists but cannot be read as a file
    reply = connect(host).plain(1, "someone@example.test", "x")
    assert reply == ["FAIL", "1", "user=someone@example.test", "temp",
                     "reason=Temporary authentication failure"]


def test_cont_for_unknown_request_closes(auth_host):
    host = auth_host()
    client = connect(host)
    client.send("CONT\t99\tAAAA")
    assert client.closed_by_server()
    assert host.wait_for_log(r"auth: CONT for an unknown request")


def test_replies_sent_before_drop(auth_host):
    host = auth_host()
    client = connect(host)
    # One write, so authd reads the valid requests and the bad one together.
    client.sock.sendall((
        "AUTH\t1\tLOGIN\tservice=smtp\n"
        "CONT\t1\t" + b64("demo@example.test") + "\n"
        "CONT\t1\t" + b64("demo") + "\n"
        "CONT\t1\t" + b64("demo") + "\n").encode())
    assert client.readline() == "CONT\t1\t" + b64("Username:")
    assert client.readline() == "CONT\t1\t" + b64("Password:")
    assert client.readline() == "OK\t1\tuser=demo@example.test"
    assert client.closed_by_server()
    assert host.wait_for_log(r"auth: CONT for an unknown request")


def test_duplicate_request_id_closes(auth_host):
    host = auth_host(auth_failure_delay=5)
    client = connect(host)
    client.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64("\0demo@example.test\0wrong"))
    client.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64("\0demo@example.test\0demo"))
    assert client.closed_by_server()
    assert host.wait_for_log(r"malformed or duplicate AUTH request")


def test_auth_before_version_closes(auth_host):
    host = auth_host()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(host.dir / "sock" / "auth-client"))
    sock.sendall(b"AUTH\t1\tPLAIN\tservice=smtp\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.endswith(b"DONE\n")
    assert host.wait_for_log(r"did not start with VERSION")


def test_unknown_command_closes(auth_host):
    host = auth_host()
    client = connect(host)
    client.send("USER\t1\tdemo@example.test")
    assert client.closed_by_server()
    assert host.wait_for_log(r'auth: unknown command "USER"')


def test_overlong_line_closes(auth_host):
    host = auth_host()
    client = connect(host)
    client.sock.sendall(b"AUTH\t1\tPLAIN\tresp=" + b"A" * 20000)
    assert client.closed_by_server()
    assert host.wait_for_log(r"auth: request line longer than 16384 bytes")


def test_password_never_logged(auth_host):
    host = auth_host(users={"u@example.test": "{PLAIN}Very-Secret-1"})
    client = connect(host)
    client.plain(1, "u@example.test", "Very-Secret-1")
    client.plain(2, "u@example.test", "Other-Secret-2")
    host.stop("authd")
    assert "Very-Secret-1" not in host.log()
    assert "Other-Secret-2" not in host.log()


def test_auth_socket_setting(auth_host):
    path = "/tmp/est-auth-%d.sock" % os.getpid()
    host = auth_host(auth_socket=path)
    try:
        assert AuthClient(path).plain(1, "demo@example.test", "demo")[0] == "OK"
    finally:
        host.stop("authd")
        os.unlink(path)
