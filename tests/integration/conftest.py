"""Integration test harness: starts a complete Estafeta host per test.

Every host lives in its own directory under /tmp with its own
configuration, spool, sockets and mailboxes, and smtpd listens on a free
port on 127.0.0.1. Nothing is sent anywhere else. When the tests run as
root (as in CI) the daemons start as root and drop to their own users,
exactly as in production.
"""

import imaplib
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ports import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ESTAFETA_BIN", REPO / "build" / "bin"))
SANITIZED = os.environ.get("ESTAFETA_SANITIZED") == "1"

# Start order: user lookups first, the queue last before smtpd, so that
# each daemon finds its peers' sockets.
DAEMONS = ("authd", "deliverd", "queued", "smtpd")
# Started only when a test names them: host.start("imapd").
OPTIONAL_DAEMONS = ("imapd", "filterd")
# Daemons that log this line once they are serving, after any recovery.
STARTED_LINE = {"queued": b": started: ", "authd": b": started: ",
                "filterd": b": listening on "}

VIRTUAL_USERS = {
    "demo@example.test": "demo",
    "alice@example.test": "alice-secret",
    "bob@example.test": "bob-secret",
}

SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer")


# The test PKI, made once per test session by tls_pki().
TLS_SERVER_NAME = "mail.example.test"
TLS_OTHER_NAME = "smtp.other.test"
_PKI = None


def make_certificate(directory, stem, names, ca_dir):
    """Write STEM.pem and STEM.key (0600) in DIRECTORY: a P-256 certificate
    for NAMES (DNS names or IPv4 addresses, the first also the CN), signed
    by the CA in CA_DIR."""
    directory = Path(directory)
    key = directory / (stem + ".key")
    csr = directory / (stem + ".csr")
    cert = directory / (stem + ".pem")
    ext = directory / (stem + ".ext")
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = %s\n" % ", ".join(
            ("IP:" if n.replace(".", "").isdigit() else "DNS:") + n for n in names))
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=%s" % names[0]],
        check=True, capture_output=True)
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(Path(ca_dir) / "ca.pem"),
         "-CAkey", str(Path(ca_dir) / "ca.key"), "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
         "-days", "30", "-extfile", str(ext), "-out", str(cert)],
        check=True, capture_output=True)
    csr.unlink()
    ext.unlink()
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    return cert, key


def tls_pki():
    """The test CA and two server certificates, made once per session:
    ca.pem; server.pem/.key for mail.example.test (also localhost and
    127.0.0.1); other.pem/.key for smtp.other.test. Returns the directory."""
    global _PKI
    if _PKI is not None:
        return _PKI
    directory = Path(tempfile.mkdtemp(prefix="est-pki-", dir="/tmp"))
    os.chmod(directory, 0o755)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"),
         "-days", "30", "-subj", "/CN=Estafeta Test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        check=True, capture_output=True)
    make_certificate(directory, "server", [TLS_SERVER_NAME, "localhost", "127.0.0.1"], directory)
    make_certificate(directory, "other", [TLS_OTHER_NAME], directory)
    _PKI = directory
    return directory


def tls_client_context():
    """An ssl.SSLContext that trusts only the test CA."""
    import ssl
    context = ssl.create_default_context(cafile=str(tls_pki() / "ca.pem"))
    return context


def pytest_sessionfinish(session, exitstatus):
    if _PKI is not None:
        shutil.rmtree(_PKI, ignore_errors=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, skipped in the sanitizer pass")


def is_root():
    return os.geteuid() == 0


class RawSMTP:
    """A byte-level SMTP client for malformed input and exact replies."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=15):
        self.sock = socket.create_connection(
            (host, port), timeout=timeout,
            source_address=(source, 0) if source else None)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def readline(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by server; pending %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        """Read one reply, multi-line included; return (code, text)."""
        lines = []
        while True:
            line = self.readline()
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_server(self, timeout=5):
        """True when the server has closed the connection (EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


class MailHost:
    """One Estafeta installation under DIR, driven by the tests."""

    def __init__(self, settings=None, netns=None, tls=False):
        self.netns = netns
        self.dir = Path(tempfile.mkdtemp(prefix="est-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.smtp_port = free_port()
        self.imap_port = free_port()
        self.submission_port = free_port()
        self.smtps_port = free_port()
        self.imaps_port = free_port()
        self.tls = tls
        self.procs = {}
        self.logs = {}
        self.log_starts = {}
        self.process_groups = set()
        for sub in ("etc", "sock", "log", "mail", "var-mail"):
            (self.dir / sub).mkdir()
            os.chmod(self.dir / sub, 0o755)
        os.chmod(self.dir / "var-mail", 0o1777)

        self.config_path = self.dir / "etc" / "estafeta.conf"
        self.settings = {
            "myhostname": "mail.example.test",
            "local_domains": "localhost mail.example.test",
            "virtual_domains": "example.test",
            "mynetworks": "127.0.0.0/8 [::1]/128",
            "queue_directory": str(self.dir / "spool"),
            "queued_socket": str(self.dir / "sock" / "queued.sock"),
            "lmtp_socket": str(self.dir / "sock" / "lmtp.sock"),
            "userdb_socket": str(self.dir / "sock" / "auth-userdb"),
            "filterd_socket": str(self.dir / "sock" / "filterd.sock"),
            "alias_database": str(self.dir / "etc" / "aliases"),
            "virtual_passwd_file": str(self.dir / "etc" / "passwd-file"),
            "mail_spool_directory": str(self.dir / "var-mail"),
            "smtpd_listen": "127.0.0.1:%d" % self.smtp_port,
            "imapd_listen": "127.0.0.1:%d" % self.imap_port,
            "syslog": "no",
        }
        if tls:
            self.settings.update(self.tls_settings())
        self.settings.update(settings or {})
        self.write_config()
        self.write_users()
        self.write_aliases(
            "# test aliases\n"
            "postmaster: demo@example.test\n"
            "team@example.test: alice@example.test, bob@example.test\n")
        self.env = dict(os.environ, ESTAFETA_CONFIG=str(self.config_path))

    # Files

    def tls_settings(self):
        """Copy the test certificates into DIR/etc/tls (keys 0600, as on a
        real host) and return the TLS and TLS-listener parameters."""
        pki = tls_pki()
        tls_dir = self.dir / "etc" / "tls"
        tls_dir.mkdir(mode=0o755)
        for name in ("ca.pem", "server.pem", "server.key", "other.pem", "other.key"):
            shutil.copy2(pki / name, tls_dir / name)
        settings = {
            "tls_cert_file": str(tls_dir / "server.pem"),
            "tls_key_file": str(tls_dir / "server.key"),
            "tls_sni_certificates": "%s:%s" % (tls_dir / "other.pem", tls_dir / "other.key"),
            "smtpd_submission_listen": "127.0.0.1:%d" % self.submission_port,
            "smtpd_smtps_listen": "127.0.0.1:%d" % self.smtps_port,
        }
        # imapd's implicit TLS listener, once imapd has the parameter.
        if "imapd_imaps_listen" in (REPO / "lib" / "params_imapd.c").read_text():
            settings["imapd_imaps_listen"] = "127.0.0.1:%d" % self.imaps_port
        return settings

    def write_config(self):
        lines = ["# written by tests/integration/conftest.py"]
        lines += ["%s = %s" % item for item in self.settings.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def write_users(self, users=None):
        users = VIRTUAL_USERS if users is None else users
        lines = []
        for address, password in users.items():
            home = self.dir / "mail" / address.split("@")[0]
            lines.append("%s:{PLAIN}%s::::%s::" % (address, password, home))
        path = self.dir / "etc" / "passwd-file"
        path.write_text("\n".join(lines) + "\n")
        os.chmod(path, 0o644)

    def write_aliases(self, text):
        path = Path(self.settings["alias_database"])
        path.write_text(text)
        os.chmod(path, 0o644)

    def newaliases(self):
        result = self.run("sendmail", "-bi")
        assert result.returncode == 0, result.stderr
        return result

    # Processes

    def bin(self, name):
        return str(BIN / name)

    def start(self, *names):
        names = names or DAEMONS
        for name in DAEMONS + OPTIONAL_DAEMONS:
            if name not in names or name in self.procs:
                continue
            log = open(self.dir / "log" / ("%s.log" % name), "ab")
            self.logs[name] = log
            self.log_starts[name] = log.tell()
            self.procs[name] = subprocess.Popen(
                self.netns_prefix() + [self.bin(name), "-f", "-c", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True)
            self.process_groups.add(self.procs[name].pid)
            self.wait_ready(name)

    def netns_prefix(self):
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def ready_probe(self, name):
        # queued binds its socket before it recovers the spool, so a
        # connect alone does not prove that recovery is over.
        if name in STARTED_LINE and not self.logged_since_start(name, STARTED_LINE[name]):
            return False
        if name == "smtpd":
            return all(self.accepts_connection(address) for address in
                       self.listeners("smtpd_listen", "smtpd_submission_listen",
                                      "smtpd_smtps_listen"))
        if name == "imapd" and self.netns:
            host, port = self.settings["imapd_listen"].split()[0].rsplit(":", 1)
            return self.accepts_connection((host.strip("[]"), int(port)))
        if name == "imapd":
            # imapd binds the IMAPS addresses after the others, and a probe
            # connection would take one of imapd_max_connections for a while,
            # so the log line says when the last listener is up.
            if self.settings.get("imapd_imaps_listen") and \
                    not self.logged_since_start(name, b"(IMAPS)\n"):
                return False
            return self.accepts_connection(("127.0.0.1", self.imap_port))
        path = {"authd": "userdb_socket", "deliverd": "lmtp_socket",
                "queued": "queued_socket", "filterd": "filterd_socket"}[name]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.settings[path])
            return True
        except OSError:
            return False
        finally:
            sock.close()

    def listeners(self, *keys):
        """Return (host, port) for every address in the listener settings
        KEYS, so that a test can connect to any of them once the daemon is
        ready."""
        addresses = []
        for key in keys:
            for item in self.settings.get(key, "").replace(",", " ").split():
                host, port = item.rsplit(":", 1)
                addresses.append((host.strip("[]"), int(port)))
        return addresses

    def accepts_connection(self, address):
        """Return True when ADDRESS accepts a TCP connection, connecting
        from inside the host's network namespace when it has one."""
        if self.netns:
            probe = "import socket; socket.create_connection(%r, timeout=1).close()" % (address,)
            return subprocess.run(self.netns_prefix() + ["/usr/bin/python3", "-c", probe],
                                  capture_output=True).returncode == 0
        try:
            socket.create_connection(address, timeout=1).close()
            return True
        except OSError:
            return False

    def logged_since_start(self, name, text):
        path = self.dir / "log" / ("%s.log" % name)
        with open(path, "rb") as log:
            log.seek(self.log_starts[name])
            return text in log.read()

    def wait_ready(self, name, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError("%s exited with status %s:\n%s"
                                   % (name, proc.returncode, self.log()))
            if self.ready_probe(name):
                return
            time.sleep(0.02)
        raise RuntimeError("%s not ready after %ss:\n%s" % (name, timeout, self.log()))

    def stop(self, *names, timeout=10):
        names = names or tuple(reversed(DAEMONS + OPTIONAL_DAEMONS))
        for name in names:
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.logs.pop(name).close()

    def kill(self, name, sig=signal.SIGKILL):
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait()
        self.logs.pop(name).close()
        # deliverd and queued leave children or sockets behind only as
        # the real daemons would after a crash; nothing is cleaned here.

    def restart(self, name):
        self.stop(name)
        self.start(name)

    def run(self, name, *args, input=None, timeout=60, env=None):
        return subprocess.run(
            [self.bin(name), *args], input=input, capture_output=True,
            timeout=timeout, env=dict(self.env, **(env or {})))

    # Clients

    def smtp(self):
        return smtplib.SMTP("127.0.0.1", self.smtp_port,
                            local_hostname="client.example.test", timeout=30)

    def imap(self):
        return imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)

    def submission(self):
        """smtplib on the submission port, before STARTTLS."""
        return smtplib.SMTP("127.0.0.1", self.submission_port,
                            local_hostname="client.example.test", timeout=30)

    def smtps(self, server_hostname=TLS_SERVER_NAME):
        """smtplib on the implicit TLS port, trusting the test CA."""
        context = tls_client_context()
        client = smtplib.SMTP_SSL(local_hostname="client.example.test", timeout=30,
                                  context=context)
        client._host = server_hostname  # SNI name and certificate check
        client.connect("127.0.0.1", self.smtps_port)
        return client

    def raw(self, source=None):
        conn = RawSMTP(self.smtp_port, source=source)
        code, _ = conn.reply()
        assert code == 220
        return conn

    # Mailboxes

    def maildir(self, address):
        local = address.split("@")[0]
        return self.dir / "mail" / local / "Maildir"

    def message_files(self, address):
        maildir = self.maildir(address)
        files = []
        for sub in ("new", "cur"):
            folder = maildir / sub
            if folder.is_dir():
                files += sorted(p for p in folder.iterdir() if p.is_file())
        return files

    def messages(self, address):
        return [p.read_bytes() for p in self.message_files(address)]

    def wait_for_messages(self, address, count, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(address)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    # Logs

    def log(self):
        text = []
        for path in sorted((self.dir / "log").glob("*.log")):
            text.append(path.read_text(errors="replace"))
        return "".join(text)

    def wait_for_log(self, pattern, timeout=10):
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.log())
            if match:
                return match
            time.sleep(0.05)
        return None

    def sanitizer_reports(self):
        return [line for line in self.log().splitlines() if SANITIZER_REPORT.search(line)]

    def destroy(self, keep):
        self.stop()
        # Children left behind by a daemon killed with SIGKILL, as after a
        # real crash, are cleaned up here so no test leaks processes.
        for group in self.process_groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "report_" + report.when, report)


@pytest.fixture
def make_mailhost(request):
    hosts = []

    def factory(start=True, aliases=None, netns=None, tls=False, **settings):
        host = MailHost({k: str(v) for k, v in settings.items()}, netns=netns, tls=tls)
        hosts.append(host)
        if aliases is not None:
            host.write_aliases(aliases)
        if start:
            host.newaliases()
            host.start()
        return host

    yield factory

    for host in hosts:
        reports = host.sanitizer_reports()
        failed = getattr(request.node, "report_call", None)
        keep = bool(reports) or (failed is not None and failed.failed)
        host.destroy(keep)
        assert not reports, "sanitizer reports in %s:\n%s" % (host.dir, "\n".join(reports))


@pytest.fixture
def mailhost(make_mailhost):
    return make_mailhost()


@pytest.fixture(scope="module")
def shared_mailhost():
    """One started host for all tests of a module that only talk to it:
    replies to commands and bad input, nothing stopped, reconfigured or
    filled. Starting a host per test costs more than most such tests.
    Sanitizer reports are checked once, after the module's last test."""
    host = MailHost({})
    host.newaliases()
    host.start()
    yield host

    reports = host.sanitizer_reports()
    host.destroy(keep=bool(reports))
    assert not reports, "sanitizer reports in %s:\n%s" % (host.dir, "\n".join(reports))
