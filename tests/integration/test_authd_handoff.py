"""Login handoff: a login finished on auth_socket is claimed once with
REQUEST on userdb_socket, as Dovecot's master process claims the logins
of its imap-login processes.

The test process is both the login process (its pid is the client pid
authd reads with SO_PEERCRED) and the master process.
"""

import os
import subprocess
import time

import pytest

from conftest import REPO
from test_authd_passdb import AuthClient, b64
from test_authd_userdb import AuthMaster

# A master process built on lib/userdb.c: userdb_request() with the
# values of the command line, printing the result.
REQUEST_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include "userdb.h"

int
main(int argc, char **argv)
{
	struct userdb_client *client = userdb_client_new(argv[1]);
	struct userdb_entry entry;
	char err[256] = "";
	int rc;

	for (int i = 4; i < argc; i++) {
		rc = userdb_request(client, (pid_t)atol(argv[2]), (unsigned)atol(argv[3]), argv[i],
		    5000, &entry, err, sizeof err);
		if (rc == 1)
			printf("%d user=%s uid=%u gid=%u home=%s\n", rc, entry.user,
			    (unsigned)entry.uid, (unsigned)entry.gid, entry.home);
		else
			printf("%d err=%s\n", rc, err);
	}
	userdb_client_free(client);
	return 0;
}
"""


@pytest.fixture
def host(make_mailhost):
    return make_mailhost(start=False, auth_failure_delay=0)


def start(host):
    host.start("authd")
    login = AuthClient(str(host.dir / "sock" / "auth-client"))
    master = AuthMaster(str(host.dir / "sock" / "auth-userdb"))
    return login, master


def cookie_of(login):
    return next(line.split("\t")[1] for line in login.handshake if line.startswith("COOKIE\t"))


def request(master, client_pid, auth_id, cookie, *params):
    """Send REQUEST and return the reply split at TABs."""
    master.next_id += 1
    fields = ["REQUEST", str(master.next_id), str(client_pid), str(auth_id), cookie, *params]
    master.sock.sendall(("\t".join(fields) + "\n").encode())
    reply = master.readline().split("\t")
    assert reply[1] == str(master.next_id)
    return reply


def test_request_returns_user(host):
    login, master = start(host)
    assert login.plain(7, "demo@example.test", "demo")[0] == "OK"

    reply = request(master, os.getpid(), 7, cookie_of(login))
    assert reply[0] == "USER"
    assert reply[2] == "demo@example.test"
    assert reply[3].startswith("uid=")
    assert reply[4].startswith("gid=")
    assert "home=%s" % (host.dir / "mail" / "demo") in reply
    assert host.wait_for_log(r"login handoff: user=<demo@example\.test>, client_pid=%d, "
                             r"auth_id=7" % os.getpid())


def test_request_ignores_extra_params(host):
    login, master = start(host)
    assert login.plain(1, "alice@example.test", "alice-secret")[0] == "OK"
    reply = request(master, os.getpid(), 1, cookie_of(login), "session_pid=12345")
    assert reply[:3] == ["USER", str(master.next_id), "alice@example.test"]


def test_request_after_login_mechanism(host):
    login, master = start(host)
    login.send("AUTH\t3\tLOGIN\tservice=imap\tresp=" + b64("bob@example.test"))
    assert login.readline() == "CONT\t3\t" + b64("Password:")
    login.send("CONT\t3\t" + b64("bob-secret"))
    assert login.readline() == "OK\t3\tuser=bob@example.test"
    assert request(master, os.getpid(), 3, cookie_of(login))[2] == "bob@example.test"


@pytest.mark.parametrize("case", ["pid", "auth_id", "cookie"])
def test_request_wrong_value_fails(host, case):
    login, master = start(host)
    assert login.plain(5, "demo@example.test", "demo")[0] == "OK"
    values = {"pid": os.getpid(), "auth_id": 5, "cookie": cookie_of(login)}
    wrong = dict(values)
    wrong[case] = {"pid": os.getpid() + 1, "auth_id": 6, "cookie": "0" * 32}[case]

    reply = request(master, wrong["pid"], wrong["auth_id"], wrong["cookie"])
    assert reply == ["FAIL", str(master.next_id),
                     "reason=Authentication request not found or expired"]
    # The wrong request left the login in place for the right one.
    assert request(master, values["pid"], values["auth_id"], values["cookie"])[0] == "USER"


def test_second_request_fails(host):
    login, master = start(host)
    assert login.plain(2, "demo@example.test", "demo")[0] == "OK"
    assert request(master, os.getpid(), 2, cookie_of(login))[0] == "USER"
    assert request(master, os.getpid(), 2, cookie_of(login))[0] == "FAIL"


def test_failed_login_not_claimable(host):
    login, master = start(host)
    assert login.plain(4, "demo@example.test", "wrong")[0] == "FAIL"
    assert request(master, os.getpid(), 4, cookie_of(login))[0] == "FAIL"


def test_cookie_of_other_connection_fails(host):
    login, master = start(host)
    other = AuthClient(str(host.dir / "sock" / "auth-client"))
    assert cookie_of(other) != cookie_of(login)
    assert login.plain(9, "demo@example.test", "demo")[0] == "OK"
    assert request(master, os.getpid(), 9, cookie_of(other))[0] == "FAIL"
    assert request(master, os.getpid(), 9, cookie_of(login))[0] == "USER"


def test_request_after_login_connection_closed(host):
    login, master = start(host)
    cookie = cookie_of(login)
    assert login.plain(1, "demo@example.test", "demo")[0] == "OK"
    login.sock.close()
    time.sleep(0.2)
    assert request(master, os.getpid(), 1, cookie)[0] == "USER"


@pytest.mark.parametrize("line", [
    "REQUEST\t1\t123\t4",                   # no cookie
    "REQUEST\tx\t123\t4\t" + "0" * 32,      # id not a number
    "REQUEST\t1\tpid\t4\t" + "0" * 32,      # client pid not a number
    "REQUEST\t1\t123\t-4\t" + "0" * 32,     # auth id not a number
])
def test_malformed_request_closes(host, line):
    _, master = start(host)
    master.sock.sendall(line.encode() + b"\n")
    assert master.closed_by_server()
    assert host.wait_for_log(r"userdb: malformed REQUEST")


@pytest.fixture(scope="module")
def request_program(tmp_path_factory):
    directory = tmp_path_factory.mktemp("userdb-request")
    source = directory / "request.c"
    source.write_text(REQUEST_PROGRAM)
    binary = directory / "request"
    library = REPO / "build" / "libestafeta.a"
    if not library.exists():
        pytest.skip("build/libestafeta.a is missing: run make")
    libs = subprocess.run(["pkg-config", "--libs", "libevent", "openssl", "libsystemd"],
                          capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["cc", "-D_GNU_SOURCE", "-I", str(REPO / "lib"), "-o", str(binary),
                    str(source), str(library), *libs, "-lcdb", "-lcrypt", "-lpthread"],
                   check=True)
    return binary


def test_userdb_request_client(host, request_program):
    login, _ = start(host)
    assert login.plain(11, "demo@example.test", "demo")[0] == "OK"
    cookie = cookie_of(login)

    # Wrong cookie, right cookie, then the same login again.
    result = subprocess.run(
        [str(request_program), str(host.dir / "sock" / "auth-userdb"), str(os.getpid()), "11",
         "0" * 32, cookie, cookie],
        capture_output=True, text=True, timeout=30, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("0 err=lookup failed on ")
    assert lines[0].endswith("Authentication request not found or expired")
    assert lines[1].startswith("1 user=demo@example.test uid=")
    assert lines[1].endswith(" home=%s" % (host.dir / "mail" / "demo"))
    assert lines[2].startswith("0 err=")


def test_userdb_request_client_rejects_bad_cookie(host, request_program):
    start(host)
    result = subprocess.run(
        [str(request_program), str(host.dir / "sock" / "auth-userdb"), "1", "1", "not\thex"],
        capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout == "0 err=invalid cookie\n"


@pytest.mark.slow
def test_request_expires(make_mailhost):
    host = make_mailhost(start=False, auth_failure_delay=0, auth_handoff_lifetime=2)
    login, master = start(host)
    assert login.plain(1, "demo@example.test", "demo")[0] == "OK"
    time.sleep(3)
    assert request(master, os.getpid(), 1, cookie_of(login))[0] == "FAIL"
