"""Test networks for outbound delivery: hosts in network namespaces and a
DNS server that serves the test's own zone.

NetnsBed makes one namespace that contains a bridge, and one namespace per
host with a veth port on that bridge, an address in 198.51.100.0/24 and
one in 2001:db8:100::/64, and no other route. Nothing a host sends can
leave the bridge: a connect to any other address fails with
ENETUNREACH. ZoneServer runs Debian's unbound in one of those hosts. It serves
only the local-data lines that the test writes (MX, A, AAAA, TXT, TLSA,
any type unbound parses), with no recursion and no upstream.

Both need root (CAP_NET_ADMIN) and iproute2; ZoneServer needs unbound.
Everything is removed by close(), which the fixtures call.
"""

import shutil
import subprocess
import time
import uuid
from pathlib import Path

DNS_ADDRESS = "198.51.100.53"
DNS_ADDRESS6 = "2001:db8:100::53"
UNBOUND = "/usr/sbin/unbound"


def available():
    """The reason the harness cannot run here, or None."""
    import os
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2 is not installed"
    return None


def ip(*args):
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class NetnsBed:
    """A bridge and hosts in network namespaces, named with a random tag."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self.bridge = "estbr-" + self.tag
        self.hosts = {}
        self.procs = []
        ip("netns", "add", self.bridge)
        ip("-n", self.bridge, "link", "set", "lo", "up")
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")

    def add_host(self, name, address, address6=None):
        """Make namespace NAME with ADDRESS (and ADDRESS6); returns its netns name."""
        netns = "est%s-%s" % (name, self.tag)
        port = "p%d" % len(self.hosts)
        ip("netns", "add", netns)
        ip("-n", netns, "link", "set", "lo", "up")
        ip("link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", port,
           "netns", self.bridge)
        ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
        ip("-n", netns, "addr", "add", address + "/24", "dev", "eth0")
        if address6:
            ip("-n", netns, "addr", "add", address6 + "/64", "dev", "eth0", "nodad")
        ip("-n", netns, "link", "set", "eth0", "up")
        self.hosts[name] = netns
        return netns

    def prefix(self, name):
        return ["ip", "netns", "exec", self.hosts[name]]

    def run(self, name, *argv, timeout=30, **kwargs):
        return subprocess.run(self.prefix(name) + list(argv), capture_output=True, text=True,
                              timeout=timeout, **kwargs)

    def popen(self, name, argv, **kwargs):
        proc = subprocess.Popen(self.prefix(name) + list(argv), start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def routes(self, name):
        """The IPv4 and IPv6 routes of host NAME, as `ip route` prints them."""
        return (ip("-n", self.hosts[name], "route").stdout +
                ip("-n", self.hosts[name], "-6", "route").stdout)

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for netns in list(self.hosts.values()) + [self.bridge]:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        self.hosts = {}


def zone_lines(records):
    """unbound local-data lines for RECORDS, each a "name ttl IN type data"
    string (the class and TTL may be left out)."""
    lines = []
    for record in records:
        quote = "'" if '"' in record else '"'
        lines.append("    local-data: %s%s%s" % (quote, record, quote))
    return lines


class ZoneServer:
    """unbound on DNS_ADDRESS:53 (and DNS_ADDRESS6) in host `dns` of NET.

    Each name in ZONES becomes a static local zone with an SOA record, so
    a name of that zone that RECORDS leave out is NXDOMAIN.
    """

    def __init__(self, net, directory, zones, records, extra_config=""):
        self.net = net
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory / "unbound.log"
        net.add_host("dns", DNS_ADDRESS, DNS_ADDRESS6)
        config = [
            "server:",
            "    interface: %s" % DNS_ADDRESS,
            "    interface: %s" % DNS_ADDRESS6,
            "    port: 53",
            "    do-daemonize: no",
            '    username: ""',
            '    chroot: ""',
            '    directory: "%s"' % self.directory,
            '    pidfile: ""',
            "    use-syslog: no",
            '    logfile: "%s"' % self.log_path,
            "    verbosity: 1",
            "    log-queries: yes",
            "    num-threads: 1",
            "    access-control: 198.51.100.0/24 allow",
            "    access-control: 2001:db8:100::/64 allow",
            # No recursion and no upstream: unbound replies only from the lines below.
            '    module-config: "iterator"',
            "    do-not-query-address: 0.0.0.0/0",
            "    do-not-query-address: ::/0",
            '    local-zone: "." static',
        ]
        for zone in zones:
            config.append('    local-zone: "%s." static' % zone.rstrip("."))
            config.append('    local-data: "%s. 300 IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300"'
                          % (zone.rstrip("."), zone.rstrip("."), zone.rstrip(".")))
        config += zone_lines(records)
        config.append(extra_config)
        config += ["remote-control:", "    control-enable: no"]
        self.config_path = self.directory / "unbound.conf"
        self.config_path.write_text("\n".join(config) + "\n")
        check = subprocess.run(["unbound-checkconf", str(self.config_path)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = net.popen("dns", [UNBOUND, "-d", "-c", str(self.config_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready(zones[0] if zones else ".")

    def wait_ready(self, zone, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("unbound exited: %s" % self.log())
            result = self.net.run("dns", "dig", "+short", "+time=1", "+tries=1",
                                  "@" + DNS_ADDRESS, zone, "SOA")
            if result.returncode == 0 and result.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError("unbound did not respond within %ss: %s" % (timeout, self.log()))

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def query_sources(self):
        """The client addresses in unbound's query log."""
        sources = set()
        for line in self.log().splitlines():
            if " info: " in line and " IN" in line:
                sources.add(line.split(" info: ", 1)[1].split()[0])
        return sources
