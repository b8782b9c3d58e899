"""Real spamd and clamd for the filterd tests, started offline.

spamd (SpamAssassin 4.0 on Debian 12) runs with --local and
`dns_available no`, so it makes no network tests. As root, where the
kernel allows it, spamd also runs in a network namespace of its own with
only a loopback interface. It listens on a Unix socket in its directory.

clamd loads a private database that the harness writes: one signature
for the EICAR test string, so clamd reports "Eicar-Signature.UNOFFICIAL".
freshclam never runs and nothing is downloaded. clamd listens on a Unix
socket and on a port of 127.0.0.1.

FakePeer is a broken scanner, not a replacement for spamd or clamd: it
accepts connections and then sends nothing, or replies bytes the test
chooses.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ports import free_port

# The EICAR anti-virus test file (68 bytes), put together from two halves
# so that this source file does not match its own signature.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Eicar-Signature"
# clamd appends .UNOFFICIAL to the names of signatures outside its official
# database.
EICAR_REPORTED = EICAR_SIGNATURE + ".UNOFFICIAL"

# GTUBE, the Generic Test for Unsolicited Bulk Email: SpamAssassin's rule
# GTUBE gives it 1000 points.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

START_TIMEOUT = 30


def is_root():
    return os.geteuid() == 0


def unshare_works():
    """Return True when this process may create a network namespace (a
    container without CAP_SYS_ADMIN may not)."""
    result = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    return result.returncode == 0


def _wait_until(probe, timeout, proc, name, log_path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with status %s:\n%s"
                               % (name, proc.returncode, _read(log_path)))
        if probe():
            return
        time.sleep(0.05)
    raise RuntimeError("%s not ready after %ss:\n%s" % (name, timeout, _read(log_path)))


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _request(path, data, timeout=5):
    """Send DATA to the Unix socket PATH, half-close, return the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return reply
            reply += chunk


class _Server:
    """A scanner daemon in its own directory under /tmp."""

    name = "server"

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="est-%s-" % self.name, dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.log_path = self.dir / ("%s.log" % self.name)
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.proc = None
        # A stale socket file would refuse connections anyway; removing
        # it makes "scanner down" the same for every test.
        socket_path = Path(self.socket)
        if socket_path.exists():
            socket_path.unlink()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        return _read(self.log_path)

    def _spawn(self, argv, output=None):
        log = open(output or self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()


class Spamd(_Server):
    """spamd with local tests only, listening on DIR/spamd.sock."""

    name = "spamd"

    def __init__(self):
        super().__init__()
        self.socket = str(self.dir / "spamd.sock")
        self.home = self.dir / "home"
        self.home.mkdir(mode=0o755)
        if is_root():
            shutil.chown(self.home, "debian-spamd", "debian-spamd")

    def command(self):
        argv = [
            "spamd", "--local", "--nouser-config",
            "--helper-home-dir=%s" % self.home,
            "--listen=%s" % self.socket, "--socketmode=0666",
            "--max-children=2", "--min-children=1",
            "--pidfile=%s" % (self.dir / "spamd.pid"), "--syslog=stderr",
            "--cf=dns_available no", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0",
            # The original header plus the X-Spam fields, not a report
            # wrapped around the message.
            "--cf=report_safe 0",
        ]
        if not is_root():
            return argv
        argv += ["--username=debian-spamd", "--groupname=debian-spamd"]
        if not unshare_works():
            return argv
        # A namespace with only a loopback interface: no route out, even
        # if a rule tried one.
        return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "spamd"] + argv

    def start(self):
        self._spawn(self.command())
        _wait_until(self.ping, START_TIMEOUT, self.proc, "spamd", self.log_path)

    def ping(self):
        try:
            return _request(self.socket, b"PING SPAMC/1.5\r\n\r\n").startswith(b"SPAMD/1.5 0 PONG")
        except OSError:
            return False


class Clamd(_Server):
    """clamd with a one-signature database, on DIR/clamd.sock and 127.0.0.1:PORT."""

    name = "clamd"

    def __init__(self, stream_max_length="25M"):
        super().__init__()
        self.socket = str(self.dir / "clamd.sock")
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port

        database = self.dir / "db"
        database.mkdir(mode=0o755)
        (self.dir / "tmp").mkdir(mode=0o700)
        # A body signature (.ndb): target type 0 (any file), at any offset.
        (database / "test.ndb").write_text("%s:0:*:%s\n" % (EICAR_SIGNATURE, EICAR.hex()))

        lines = [
            "Foreground yes",
            "LocalSocket %s" % self.socket,
            "LocalSocketMode 666",
            "TCPSocket %d" % self.port,
            "TCPAddr 127.0.0.1",
            "DatabaseDirectory %s" % database,
            "TemporaryDirectory %s" % (self.dir / "tmp"),
            "LogFile %s" % self.log_path,
            "LogTime yes",
            "LogVerbose yes",
            "LogClean yes",
            "MaxThreads 2",
            "SelfCheck 0",
            # Decode MIME parts and unpack archives, as a mail setup does.
            "ScanMail yes",
            "ScanArchive yes",
            "StreamMaxLength %s" % stream_max_length,
        ]
        if is_root():
            lines.append("User clamav")
            for path in (self.dir, self.dir / "tmp"):
                shutil.chown(path, "clamav", "clamav")

        self.config = self.dir / "clamd.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self):
        # clamd writes its log to LogFile and copies it to stdout in the
        # foreground, so stdout goes elsewhere.
        self._spawn(["clamd", "-c", str(self.config)], output=self.dir / "clamd.out")
        _wait_until(self.ping, START_TIMEOUT, self.proc, "clamd", self.log_path)

    def ping(self):
        try:
            return _request(self.socket, b"zPING\0") == b"PONG\0"
        except OSError:
            return False


class FakePeer:
    """A broken scanner on a Unix socket or on 127.0.0.1: every connection
    is accepted and read, and gets REPLY (None: nothing, and the
    connection stays open until the peer closes or the test ends)."""

    def __init__(self, reply=None, unix=True):
        self.reply = reply
        self.dir = Path(tempfile.mkdtemp(prefix="est-fake-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        if unix:
            self.socket = str(self.dir / "fake.sock")
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.socket)
            os.chmod(self.socket, 0o666)
            self.address = ""
        else:
            self.socket = ""
            self.port = free_port()
            self.address = "127.0.0.1:%d" % self.port
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.connections = 0
        self.requests = []
        self.open = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            if self.reply is None:
                self.open.append(conn)
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        # Read the request up to the client's half-close, or until the
        # client pauses (clamd's protocol has no half-close), keep it for
        # the test, then reply and close.
        request = b""
        try:
            conn.settimeout(0.3)
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                request += chunk
        except OSError:
            pass
        self.requests.append(request)
        try:
            conn.sendall(self.reply)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()
        for conn in self.open:
            conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)
