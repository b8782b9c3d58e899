"""imapd for a system user: PAM login through authd, and a mail process
that runs with the user's uid and supplementary groups. Root only: each
test creates a throwaway user, group and PAM service, as
test_authd_pam.py does, with the home inside the test's directory."""

import os
import pwd
import grp
import secrets
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="creating system users needs root")

PASSWORD = "Imap-test 7 pass"


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
def system_host(make_mailhost, pam_service):
    host = make_mailhost(start=False, pam_service=pam_service, auth_failure_delay=0)
    name = "estimap%s" % secrets.token_hex(4)
    group = name + "g"
    home = host.dir / "home" / name
    home.parent.mkdir()
    os.chmod(home.parent, 0o755)
    subprocess.run(["groupadd", group], check=True)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell",
                    "/usr/sbin/nologin", "--groups", group, name], check=True)
    try:
        subprocess.run(["chpasswd"], input="%s:%s\n" % (name, PASSWORD), text=True, check=True)
        host.newaliases()
        host.start()
        host.start("imapd")
        yield host, name, group, home
    finally:
        host.stop()
        subprocess.run(["userdel", name], check=True)
        subprocess.run(["groupdel", group], check=True)


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(field + ":"):
                return line.split()[1:]
    return None


def test_system_user_session(system_host):
    host, name, group, home = system_host
    imap = host.imap()
    assert imap.login(name, PASSWORD)[0] == "OK"
    typ, data = imap.append("INBOX", None, None, b"Subject: local\r\n\r\nfor a system user\r\n")
    assert typ == "OK"

    match = host.wait_for_log(r"user=<%s>: logged in, mail process (\d+)" % name)
    assert match is not None
    pid = int(match.group(1))
    user = pwd.getpwnam(name)
    assert proc_status(pid, "Uid")[0] == str(user.pw_uid)
    assert str(grp.getgrnam(group).gr_gid) in proc_status(pid, "Groups")

    maildir = home / "Maildir"
    assert maildir.stat().st_uid == user.pw_uid
    assert len(list((maildir / "cur").iterdir())) == 1
    imap.logout()


def test_virtual_user_has_no_supplementary_groups(system_host):
    host, _, _, _ = system_host
    imap = host.imap()
    assert imap.login("demo@example.test", "demo")[0] == "OK"
    match = host.wait_for_log(r"user=<demo@example\.test>: logged in, mail process (\d+)")
    pid = int(match.group(1))
    vmail = pwd.getpwnam("_estafeta-vmail")
    assert proc_status(pid, "Groups") == [str(vmail.pw_gid)]
    imap.logout()
