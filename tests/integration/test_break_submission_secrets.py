"""Credentials must never reach smtpd's log, and an AUTH exchange must
wait for the client as long as any other command does. These tests send
AUTH data where smtpd does not expect it: pipelined behind STARTTLS, and
after smtpd_auth_timeout has passed while smtpd waits for the client."""

import base64
import socket
import ssl
import time


from conftest import TLS_SERVER_NAME, tls_client_context

USER = "alice@example.test"
PASSWORD = "alice-secret"


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Client:
    """A line-oriented SMTP client on a raw socket, which may switch to TLS."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""

    def send(self, text):
        self.sock.sendall(text.encode())

    def reply(self):
        lines = []
        while True:
            while b"\n" not in self.buffer:
                data = self.sock.recv(4096)
                if not data:
                    raise EOFError("connection closed after %r" % lines)
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\n", 1)
            lines.append(line.rstrip(b"\r").decode())
            if len(lines[-1]) < 4 or lines[-1][3] != "-":
                return int(lines[-1][:3]), "\n".join(lines)

    def command(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self):
        self.sock = tls_client_context().wrap_socket(self.sock, server_hostname=TLS_SERVER_NAME)

    def close(self):
        self.sock.close()


def submission_over_tls(host):
    client = Client(host.submission_port)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.example.test")[0] == 250
    assert client.command("STARTTLS")[0] == 220
    client.starttls()
    assert client.command("EHLO client.example.test")[0] == 250
    return client


def assert_no_credentials(log):
    assert PASSWORD not in log
    assert b64(PASSWORD) not in log
    assert b64("\0%s\0%s" % (USER, PASSWORD)) not in log


def test_auth_pipelined_after_starttls_not_logged(make_mailhost):
    host = make_mailhost(tls=True)
    client = Client(host.submission_port)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.example.test")[0] == 250

    client.send("STARTTLS\r\nAUTH PLAIN %s\r\n" % b64("\0%s\0%s" % (USER, PASSWORD)))
    assert client.reply()[0] == 220
    client.close()

    assert host.wait_for_log(r"improper command pipelining after STARTTLS")
    assert_no_credentials(host.log())


def test_slow_auth_response_continues_exchange(make_mailhost):
    host = make_mailhost(tls=True, smtpd_auth_timeout=1)
    client = submission_over_tls(host)
    assert client.command("AUTH LOGIN")[0] == 334

    time.sleep(2)
    code, text = client.command(b64(USER))
    assert code == 334, text
    code, text = client.command(b64(PASSWORD))
    assert code == 235, text
    client.close()


def test_late_auth_response_not_logged(make_mailhost):
    host = make_mailhost(tls=True, smtpd_auth_timeout=1)
    client = submission_over_tls(host)
    assert client.command("AUTH LOGIN")[0] == 334
    code, _ = client.command(b64(USER))
    assert code == 334

    time.sleep(2)
    client.send(b64(PASSWORD) + "\r\n")
    client.command("QUIT")
    client.close()

    assert host.wait_for_log(r"disconnect from \S+ ehlo=")
    assert_no_credentials(host.log())
