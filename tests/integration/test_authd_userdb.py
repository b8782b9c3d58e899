"""authd's userdb socket, driven with the Dovecot auth-master protocol.

The client below speaks the protocol as Dovecot's lib-auth does: it
sends "VERSION\t1\t0" without waiting, reads the server's VERSION and
SPID lines, then sends requests and reads the replies with its id.
"""

import grp
import os
import pwd
import signal
import socket
import stat
import time

import pytest


class AuthMaster:
    def __init__(self, path, timeout=5):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.next_id = 0
        self.sock.sendall(b"VERSION\t1\t0\n")
        self.greeting = [self.readline(), self.readline()]

    def readline(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by authd; pending %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def user(self, name, service="lmtp"):
        """Return (command, fields) of the reply to a USER request."""
        self.next_id += 1
        self.sock.sendall(("USER\t%d\t%s\tservice=%s\n" % (self.next_id, name, service)).encode())
        fields = self.readline().split("\t")
        assert fields[1] == str(self.next_id)
        return fields[0], fields[2:]

    def user_fields(self, name):
        command, fields = self.user(name)
        assert command == "USER", (command, fields)
        result = {"name": fields[0]}
        for field in fields[1:]:
            key, _, value = field.partition("=")
            result[key] = value
        return result

    def list(self, *params):
        self.next_id += 1
        line = "\t".join(["LIST", str(self.next_id), *params]) + "\n"
        self.sock.sendall(line.encode())
        names = []
        while True:
            fields = self.readline().split("\t")
            assert fields[1] == str(self.next_id)
            if fields[0] == "DONE":
                return names, fields[2:]
            assert fields[0] == "LIST"
            names.append(fields[2])

    def closed_by_server(self):
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def vmail_ids():
    """The ids a passwd-file entry without uid and gid gets."""
    try:
        entry = pwd.getpwnam("_estafeta-vmail")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return os.getuid(), os.getgid()


@pytest.fixture
def authd_host(make_mailhost):
    def start(**settings):
        host = make_mailhost(start=False, **settings)
        host.start("authd")
        return host
    return start


def connect(host):
    return AuthMaster(host.settings["userdb_socket"])


def write_passwd_file(host, text):
    path = host.dir / "etc" / "passwd-file"
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def test_greeting_version_and_spid(authd_host):
    host = authd_host()
    client = connect(host)
    assert client.greeting[0] == "VERSION\t1\t1"
    assert client.greeting[1] == "SPID\t%d" % host.procs["authd"].pid


def test_virtual_user_found(authd_host):
    host = authd_host()
    client = connect(host)
    fields = client.user_fields("alice@example.test")
    assert fields["name"] == "alice@example.test"
    assert fields["home"] == str(host.dir / "mail" / "alice")


def test_virtual_empty_uid_gets_vmail_user(authd_host):
    host = authd_host()
    uid, gid = vmail_ids()
    fields = connect(host).user_fields("demo@example.test")
    assert fields["uid"] == str(uid)
    assert fields["gid"] == str(gid)


def test_virtual_name_case_insensitive(authd_host):
    host = authd_host()
    fields = connect(host).user_fields("Alice@EXAMPLE.test")
    assert fields["name"] == "alice@example.test"


def test_virtual_user_not_found(authd_host):
    host = authd_host()
    command, fields = connect(host).user("nobody@example.test")
    assert command == "NOTFOUND"
    assert fields == []


def test_virtual_extra_fields(authd_host):
    host = authd_host()
    write_passwd_file(host, (
        "carol@example.test:{PLAIN}x:2001:2002::/srv/carol::"
        "userdb_mail=maildir:~/Mail userdb_quota_rule=*:storage=1G nopassword\n"
        "olga@example.test:{PLAIN}x:2003:2003::/srv/olga:::mbox:~/mail:INBOX=/var/mail/olga\n"))
    client = connect(host)
    carol = client.user_fields("carol@example.test")
    assert carol["uid"] == "2001"
    assert carol["gid"] == "2002"
    assert carol["home"] == "/srv/carol"
    assert carol["mail"] == "maildir:~/Mail"
    assert carol["quota_rule"] == "*:storage=1G"
    assert "nopassword" not in carol
    olga = client.user_fields("olga@example.test")
    assert olga["mail"] == "mbox:~/mail:INBOX=/var/mail/olga"


def test_invalid_uid_is_temporary_failure(authd_host):
    host = authd_host()
    path = write_passwd_file(host, "# users\nbad@example.test:{PLAIN}x:abc:100::/srv/bad::\n")
    command, fields = connect(host).user("bad@example.test")
    assert command == "FAIL"
    assert fields == ['reason=%s:2: invalid uid "abc"' % path]
    assert host.wait_for_log(r"user=<bad@example\.test>, service=lmtp, status=failed")


def test_duplicate_entry_first_wins(authd_host):
    host = authd_host()
    path = write_passwd_file(host, (
        "dup@example.test:{PLAIN}x:2001:2001::/srv/first::\n"
        "dup@example.test:{PLAIN}x:2002:2002::/srv/second::\n"))
    fields = connect(host).user_fields("dup@example.test")
    assert fields["home"] == "/srv/first"
    assert host.wait_for_log(
        r"%s:2: user dup@example\.test is already defined on line 1" % path)


def test_system_user_found(authd_host):
    host = authd_host(first_valid_uid=1)
    daemon = pwd.getpwnam("daemon")
    fields = connect(host).user_fields("daemon")
    assert fields["name"] == "daemon"
    assert fields["uid"] == str(daemon.pw_uid)
    assert fields["gid"] == str(daemon.pw_gid)
    assert fields["home"] == daemon.pw_dir


def test_system_user_in_local_domain(authd_host):
    host = authd_host(first_valid_uid=1)
    fields = connect(host).user_fields("daemon@mail.example.test")
    assert fields["name"] == "daemon"


def test_system_user_below_first_valid_uid(authd_host):
    host = authd_host()
    command, _ = connect(host).user("daemon")
    assert command == "NOTFOUND"


def test_root_never_found(authd_host):
    host = authd_host(first_valid_uid=1, last_valid_uid=0)
    command, _ = connect(host).user("root")
    assert command == "NOTFOUND"


def test_system_user_above_last_valid_uid(authd_host):
    host = authd_host(first_valid_uid=1, last_valid_uid=65533)
    command, _ = connect(host).user("nobody")
    assert command == "NOTFOUND"


def test_reload_after_file_change(authd_host):
    host = authd_host()
    client = connect(host)
    assert client.user("new@example.test")[0] == "NOTFOUND"
    write_passwd_file(host, "new@example.test:{PLAIN}x:3000:3000::/srv/new::\n")
    fields = client.user_fields("new@example.test")
    assert fields["uid"] == "3000"
    assert client.user("alice@example.test")[0] == "NOTFOUND"


def test_reload_on_sighup(authd_host):
    host = authd_host()
    host.procs["authd"].send_signal(signal.SIGHUP)
    assert host.wait_for_log(r"reloading the passwd-file on SIGHUP")
    assert host.wait_for_log(r"SIGHUP\n.*passwd-file .*: loaded 3 users")
    assert connect(host).user("bob@example.test")[0] == "USER"


def test_missing_passwd_file(authd_host):
    host = authd_host(virtual_passwd_file="/nonexistent/passwd-file")
    command, _ = connect(host).user("alice@example.test")
    assert command == "NOTFOUND"
    assert host.wait_for_log(r"passwd-file /nonexistent/passwd-file not found")


def test_list_all_users(authd_host):
    host = authd_host()
    names, status = connect(host).list()
    assert status == []
    for address in ("alice@example.test", "bob@example.test", "demo@example.test"):
        assert address in names


def test_list_with_mask(authd_host):
    host = authd_host()
    names, _ = connect(host).list("user=b*@example.test")
    assert names == ["bob@example.test"]


def test_pass_lookup_rejected(authd_host):
    host = authd_host()
    client = connect(host)
    client.sock.sendall(b"PASS\t7\tdemo@example.test\tservice=smtp\n")
    line = client.readline()
    assert line.startswith("FAIL\t7\treason=")
    assert "demo" not in line.split("reason=")[1]


def test_tab_escaped_name(authd_host):
    host = authd_host()
    write_passwd_file(host, "x@example.test:{PLAIN}x:2001:2001::/srv/a\tb::\n")
    fields = connect(host).user_fields("x@example.test")
    assert fields["home"] == "/srv/a\x01tb"


def test_requests_pipelined(authd_host):
    host = authd_host()
    client = connect(host)
    client.sock.sendall(b"USER\t1\talice@example.test\tservice=lmtp\n"
                        b"USER\t2\tnone@example.test\tservice=lmtp\n"
                        b"USER\t3\tbob@example.test\tservice=lmtp\n")
    assert client.readline().startswith("USER\t1\talice@example.test\t")
    assert client.readline() == "NOTFOUND\t2"
    assert client.readline().startswith("USER\t3\tbob@example.test\t")


def test_wrong_version_closed(authd_host):
    host = authd_host()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(host.settings["userdb_socket"])
    sock.sendall(b"VERSION\t2\t0\nUSER\t1\talice@example.test\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"VERSION\t1\t1\nSPID\t")
    assert b"USER\t1" not in data
    assert host.wait_for_log(r"is not an auth-master client of version 1")


def test_unknown_command_closed(authd_host):
    host = authd_host()
    client = connect(host)
    client.sock.sendall(b"FROB\t1\n")
    assert client.closed_by_server()
    assert host.wait_for_log(r'unknown command "FROB"')


def test_auth_client_handshake_closed(authd_host):
    host = authd_host()
    client = connect(host)
    client.sock.sendall(b"CPID\t1234\n")
    assert client.closed_by_server()
    assert host.wait_for_log(r"an authentication client .* connected to the userdb socket")


def test_overlong_line_closed(authd_host):
    host = authd_host()
    client = connect(host)
    client.sock.sendall(b"USER\t1\t" + b"a" * 20000)
    assert client.closed_by_server()
    assert host.wait_for_log(r"request line longer than 8192 bytes")
    assert connect(host).user("alice@example.test")[0] == "USER"


def test_nul_byte_closed(authd_host):
    host = authd_host()
    client = connect(host)
    client.sock.sendall(b"USER\t1\talice\x00@example.test\n")
    assert client.closed_by_server()
    assert host.wait_for_log(r"NUL byte in a request")


def test_malformed_user_request_closed(authd_host):
    host = authd_host()
    client = connect(host)
    client.sock.sendall(b"USER\tnot-a-number\talice@example.test\n")
    assert client.closed_by_server()
    assert host.wait_for_log(r"malformed USER request")


def test_reply_sent_after_half_close(authd_host):
    host = authd_host()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(host.settings["userdb_socket"])
    sock.sendall(b"VERSION\t1\t0\nUSER\t1\tbob@example.test\tservice=lmtp\n")
    sock.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert b"\nUSER\t1\tbob@example.test\t" in data


def test_many_connections(authd_host):
    host = authd_host()
    clients = [connect(host) for _ in range(50)]
    for client in clients:
        assert client.user("alice@example.test")[0] == "USER"
    for client in clients:
        client.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="socket ownership needs root")
def test_socket_mode_and_group(authd_host):
    host = authd_host()
    info = os.stat(host.settings["userdb_socket"])
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_uid == 0
    assert info.st_gid == pwd.getpwnam("_estafeta").pw_gid


@pytest.mark.skipif(os.geteuid() != 0, reason="socket ownership needs root")
def test_socket_group_setting(authd_host):
    group = grp.getgrnam("_estafeta-queue")
    host = authd_host(userdb_socket_group="_estafeta-queue", userdb_socket_mode="0600")
    info = os.stat(host.settings["userdb_socket"])
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_gid == group.gr_gid


def test_invalid_socket_mode_rejected(make_mailhost):
    host = make_mailhost(start=False, userdb_socket_mode="rw")
    result = host.run("authd", "-f", "-c", str(host.config_path), timeout=10)
    assert result.returncode != 0
    assert b'invalid value "rw" for userdb_socket_mode' in result.stderr


def test_stops_on_sigterm(authd_host):
    host = authd_host()
    proc = host.procs["authd"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    deadline = time.monotonic() + 5
    while "stopped" not in host.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "stopping on signal 15" in host.log()
