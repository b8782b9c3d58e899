"""smtpd and queued connect to the sockets of other daemons without waiting.

filterd_socket and queued_socket let every local user connect, so any
user can fill their listen backlog. A blocking connect() to a socket
with a full backlog waits until the daemon accepts, and smtpd's and
queued's connects run on their event loops, so one user could stall
every SMTP session. They now connect without waiting: a full backlog
fails at once, like a daemon that is down, and the session gets the
usual temporary error.
"""

import signal
import socket

FILTER_SETTINGS = dict(smtpd_filter="yes", filterd_checks="")
BACKLOG_FILL = 300


def fill_backlog(path):
    """Connect to PATH without waiting until the backlog refuses; return
    the open sockets."""
    sockets = []
    for _ in range(BACKLOG_FILL):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            break
        sockets.append(sock)
    return sockets


def transaction_with_full_backlog(host, daemon, socket_setting):
    """Stop DAEMON, fill the backlog of its socket SOCKET_SETTING, and
    start an SMTP transaction up to the first reply that is not 250.
    Return the number of connections the backlog took and that reply."""
    process = host.procs[daemon]
    process.send_signal(signal.SIGSTOP)
    try:
        backlog_sockets = fill_backlog(host.settings[socket_setting])
        client = host.smtp()
        client.ehlo("client.example.test")
        code, text = client.docmd("MAIL FROM:<sender@example.org>")
        if code == 250:
            client.docmd("RCPT TO:<demo@example.test>")
            code, text = client.docmd("DATA")
        client.close()
    finally:
        process.send_signal(signal.SIGCONT)
    for sock in backlog_sockets:
        sock.close()
    return len(backlog_sockets), code, text


def test_full_filterd_backlog_tempfails(make_mailhost):
    host = make_mailhost(**FILTER_SETTINGS)
    host.start("filterd")

    taken, code, text = transaction_with_full_backlog(host, "filterd", "filterd_socket")

    assert taken < BACKLOG_FILL
    assert code == 451, text
    assert text.startswith(b"4.7.0 "), text
    assert host.wait_for_log(r"filterd unavailable: cannot connect to .*: "
                             r"Resource temporarily unavailable")


def test_full_queued_backlog_tempfails(make_mailhost):
    host = make_mailhost()

    taken, code, text = transaction_with_full_backlog(host, "queued", "queued_socket")

    assert taken < BACKLOG_FILL
    assert code == 451, text
    assert host.wait_for_log(r"cannot connect to queued at .*: Resource temporarily unavailable")
