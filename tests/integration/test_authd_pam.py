"""authd's pam passdb: system users authenticate through PAM in authd's
root worker. Each test creates a throwaway system user (useradd, password
set with chpasswd) and a throwaway PAM service file made from
etc/pam.d/estafeta, and removes both at the end. Root only.
"""

import os
import pwd
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, is_root
from test_authd_passdb import AuthClient, b64
from test_authd_userdb import AuthMaster

pytestmark = pytest.mark.skipif(not is_root(), reason="creating system users needs root")

PASSWORD = "Pam-test 9 pass"


@pytest.fixture
def system_user():
    name = "estpam%s" % secrets.token_hex(4)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True)
    try:
        subprocess.run(["chpasswd"], input="%s:%s\n" % (name, PASSWORD), text=True, check=True)
        yield name
    finally:
        subprocess.run(["userdel", name], check=True)


@pytest.fixture
def pam_service():
    name = "estafeta-test-%s" % secrets.token_hex(4)
    path = Path("/etc/pam.d") / name
    path.write_text((REPO / "etc" / "pam.d" / "estafeta").read_text())
    try:
        yield name
    finally:
        path.unlink()


@pytest.fixture
def pam_host(make_mailhost, pam_service):
    def start(**settings):
        settings.setdefault("auth_failure_delay", 0)
        settings.setdefault("pam_service", pam_service)
        host = make_mailhost(start=False, **settings)
        host.start("authd")
        return host
    return start


def connect(host):
    return AuthClient(str(host.dir / "sock" / "auth-client"))


def test_pam_login_ok(pam_host, system_user):
    host = pam_host()
    assert connect(host).plain(1, system_user, PASSWORD) == ["OK", "1", "user=" + system_user]
    assert host.wait_for_log(r"auth: method=PLAIN, user=<%s>, service=smtp, rip=127\.0\.0\.1, "
                             r"status=ok" % system_user)


def test_pam_wrong_password(pam_host, system_user):
    host = pam_host()
    assert connect(host).plain(1, system_user, "wrong") == ["FAIL", "1", "user=" + system_user]
    assert host.wait_for_log(r"user=<%s>.*status=failed \(PAM authentication failed\)"
                             % system_user)


def test_pam_local_domain_address(pam_host, system_user):
    host = pam_host()
    reply = connect(host).plain(1, system_user + "@localhost", PASSWORD)
    assert reply == ["OK", "1", "user=" + system_user]


def test_pam_login_mechanism(pam_host, system_user):
    host = pam_host()
    client = connect(host)
    client.send("AUTH\t2\tLOGIN\tservice=imap")
    client.readline()
    client.send("CONT\t2\t" + b64(system_user))
    client.readline()
    client.send("CONT\t2\t" + b64(PASSWORD))
    assert client.readline() == "OK\t2\tuser=" + system_user


def test_pam_root_refused(pam_host):
    host = pam_host()
    assert connect(host).plain(1, "root", "x") == ["FAIL", "1", "user=root"]
    assert host.wait_for_log(r"user=<root>.*status=failed \(unknown user\)")


def test_pam_unknown_user(pam_host):
    host = pam_host()
    assert connect(host).plain(1, "nosuchuser" + secrets.token_hex(3), "x")[0] == "FAIL"
    assert host.wait_for_log(r"status=failed \(unknown user\)")


def test_pam_locked_account_fails(pam_host, system_user):
    subprocess.run(["usermod", "--lock", system_user], check=True)
    host = pam_host()
    assert connect(host).plain(1, system_user, PASSWORD)[0] == "FAIL"


def test_pam_not_in_passdb_list(pam_host, system_user):
    host = pam_host(passdb="passwd-file")
    assert connect(host).plain(1, system_user, PASSWORD)[0] == "FAIL"
    assert host.wait_for_log(r"user=<%s>.*status=failed \(unknown user\)" % system_user)
    # Virtual users still log in.
    assert connect(host).plain(2, "demo@example.test", "demo")[0] == "OK"


def test_pam_only_passdb(pam_host, system_user):
    host = pam_host(passdb="pam")
    client = connect(host)
    assert client.plain(1, system_user, PASSWORD)[0] == "OK"
    assert client.plain(2, "demo@example.test", "demo")[0] == "FAIL"


def test_pam_handoff(pam_host, system_user):
    host = pam_host()
    client = connect(host)
    assert client.plain(3, system_user, PASSWORD)[0] == "OK"
    cookie = next(line.split("\t")[1] for line in client.handshake if line.startswith("COOKIE\t"))
    master = AuthMaster(str(host.dir / "sock" / "auth-userdb"))
    master.sock.sendall(("REQUEST\t1\t%d\t3\t%s\n" % (os.getpid(), cookie)).encode())
    reply = master.readline().split("\t")
    assert reply[:3] == ["USER", "1", system_user]
    assert "uid=%d" % pwd.getpwnam(system_user).pw_uid in reply


def test_pam_password_never_logged(pam_host, system_user):
    host = pam_host()
    client = connect(host)
    client.plain(1, system_user, PASSWORD)
    client.plain(2, system_user, "Other-Secret-77")
    host.stop("authd")
    assert PASSWORD not in host.log()
    assert "Other-Secret-77" not in host.log()


def test_pam_worker_keeps_root_alone(pam_host):
    host = pam_host()
    match = host.wait_for_log(r"pam worker: started as pid (\d+)")
    assert match
    worker = int(match.group(1))
    with open("/proc/%d/status" % worker) as status:
        assert re.search(r"^Uid:\s+0\s", status.read(), re.M)
    with open("/proc/%d/status" % host.procs["authd"].pid) as status:
        assert not re.search(r"^Uid:\s+0\s", status.read(), re.M)
    # The worker has neither listening socket open.
    sockets = [os.readlink("/proc/%d/fd/%s" % (worker, fd))
               for fd in os.listdir("/proc/%d/fd" % worker)]
    assert sum(1 for target in sockets if target.startswith("socket:")) == 1


def test_pam_worker_exit_is_temporary_failure(pam_host, system_user):
    host = pam_host()
    match = host.wait_for_log(r"pam worker: started as pid (\d+)")
    assert match
    worker = int(match.group(1))
    os.kill(worker, signal.SIGKILL)
    assert host.wait_for_log(r"pam worker exited")
    assert host.wait_for_log(r"pam worker pid %d killed by signal 9" % worker)
    with open("/proc/%d/task/%d/children" % (host.procs["authd"].pid,
                                             host.procs["authd"].pid)) as children:
        assert str(worker) not in children.read().split()
    reply = connect(host).plain(1, system_user, PASSWORD)
    assert reply == ["FAIL", "1", "user=" + system_user, "temp",
                     "reason=Temporary authentication failure"]
    # Virtual users do not need the worker.
    assert connect(host).plain(2, "demo@example.test", "demo")[0] == "OK"


def test_pam_worker_exits_with_authd(pam_host):
    host = pam_host()
    match = host.wait_for_log(r"pam worker: started as pid (\d+)")
    assert match
    worker = int(match.group(1))
    host.stop("authd")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists("/proc/%d" % worker):
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % worker)
