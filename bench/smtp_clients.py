"""SMTP clients of the benchmark: smtp-source for load, and two of our own.

smtp-source (from Debian's postfix package) generates every load. It
cannot time single replies, so LatencyProbe, one extra SMTP session,
sends messages of the same size at a fixed pace during the load and
times each from the end of DATA (the CRLF.CRLF is sent) to the 250
reply. open_idle_connections keeps many sessions open after EHLO.
"""

import selectors
import shutil
import socket
import subprocess
import threading
import time

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
CLIENT_NAME = "client.example.test"
SENDER = "load@client.example.test"


def smtp_source_command(port, count, sessions, size, recipient, recipients=1):
    """Build the smtp-source command line; sessions send message after message (-d)."""
    return [
        SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(count), "-l", str(size),
        "-r", str(recipients), "-M", CLIENT_NAME, "-f", SENDER, "-t", recipient,
        "-S", "bench", "127.0.0.1:%d" % port,
    ]


def run_smtp_source(command, timeout):
    """Run smtp-source; return (seconds, CompletedProcess or None on timeout)."""
    start = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.monotonic() - start, None
    return time.monotonic() - start, result


def make_message(size, recipient, number):
    """Build a message of about size bytes in CRLF lines of 76 characters, none starting with '.'."""
    header = ("From: <%s>\r\nTo: <%s>\r\nSubject: bench probe %d\r\n"
              "Message-ID: <probe-%d-%f@%s>\r\n\r\n"
              % (SENDER, recipient, number, number, time.time(), CLIENT_NAME))
    line = "probe " + "x" * 70 + "\r\n"
    lines = max(1, size // len(line))
    return (header + line * lines).encode()


class ReplyReader:
    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def reply(self):
        """Read one possibly multi-line reply; return its code."""
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3])


class LatencyProbe:
    """Time end-of-DATA to 250 for one message every `interval` seconds.

    Runs in a thread until stop() or until max_samples replies. Messages go
    to `recipient`, a mailbox the load does not use, so they are not
    counted as load deliveries.
    """

    def __init__(self, port, size, recipient, interval=0.05, max_samples=2000, max_seconds=900):
        self.port = port
        self.size = size
        self.recipient = recipient
        self.interval = interval
        self.max_samples = max_samples
        self.max_seconds = max_seconds
        self.samples = []
        self.errors = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=120)

    def loop(self):
        try:
            self.session()
        except (OSError, ValueError) as error:
            self.errors.append("%s: %s" % (type(error).__name__, error))

    def expect(self, reader, codes):
        code = reader.reply()
        if code not in codes:
            raise ValueError("expected reply %s, got %d" % ("/".join(map(str, codes)), code))

    def session(self):
        deadline = time.monotonic() + self.max_seconds
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=300)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = ReplyReader(sock)
        self.expect(reader, (220,))
        sock.sendall(b"EHLO %s\r\n" % CLIENT_NAME.encode())
        self.expect(reader, (250,))
        number = 0
        while (not self.stopping.is_set() and len(self.samples) < self.max_samples
               and time.monotonic() < deadline):
            number += 1
            message = make_message(self.size, self.recipient, number)
            sock.sendall(b"MAIL FROM:<%s>\r\n" % SENDER.encode())
            self.expect(reader, (250,))
            sock.sendall(b"RCPT TO:<%s>\r\n" % self.recipient.encode())
            self.expect(reader, (250,))
            sock.sendall(b"DATA\r\n")
            self.expect(reader, (354,))
            sock.sendall(message)
            start = time.perf_counter()
            sock.sendall(b".\r\n")
            self.expect(reader, (250,))
            self.samples.append(time.perf_counter() - start)
            self.stopping.wait(self.interval)
        sock.sendall(b"QUIT\r\n")
        sock.close()


def open_idle_connections(port, count, timeout=180):
    """Open count SMTP sessions and send EHLO on each; return the sockets.

    Raises RuntimeError when not every session got its greeting and EHLO
    reply within timeout seconds.
    """
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    state = {}
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=max(1, deadline - time.monotonic()))
            sock.setblocking(False)
            state[sock] = [b"", 0]  # buffer, replies read
            selector.register(sock, selectors.EVENT_READ)
            poll_replies(selector, state, 0)

        while any(replies < 2 for _, replies in state.values()):
            if time.monotonic() > deadline:
                done = sum(1 for _, replies in state.values() if replies >= 2)
                raise RuntimeError("only %d of %d idle sessions got greeting and EHLO replies in %ds"
                                   % (done, count, timeout))
            poll_replies(selector, state, 0.5)
    except BaseException:
        for sock in state:
            sock.close()
        raise
    finally:
        selector.close()
    return list(state)


def poll_replies(selector, state, wait):
    """Read what arrived, and send EHLO after each 220 greeting."""
    for key, _ in selector.select(wait):
        sock = key.fileobj
        try:
            chunk = sock.recv(4096)
        except BlockingIOError:
            continue
        if not chunk:
            raise RuntimeError("server closed an idle session: %r" % state[sock][0])
        entry = state[sock]
        entry[0] += chunk
        while b"\r\n" in entry[0]:
            line, entry[0] = entry[0].split(b"\r\n", 1)
            if len(line) >= 4 and line[3:4] == b"-":
                continue
            entry[1] += 1
            if entry[1] == 1:
                sock.sendall(b"EHLO %s\r\n" % CLIENT_NAME.encode())
            if entry[1] >= 2:
                selector.unregister(sock)
                break
