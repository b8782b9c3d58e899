"""The benchmark's workloads and how one of them is measured on one system.

Every measurement starts a fresh host (except the deferred-queue one,
whose filled queue is reused across rounds), waits until its processes
are idle, runs the load and returns a dict of figures.
"""

import os
import subprocess
import time
from dataclasses import dataclass

import procstat
from common import DOMAIN
from smtp_clients import LatencyProbe, open_idle_connections, run_smtp_source, smtp_source_command

PROBE_MAILBOX = "probe"

# Bounds of every loop that waits for the systems.
SMTP_SOURCE_TIMEOUT = 900
DELIVERY_TIMEOUT = 600
IDLE_TIMEOUT = 120


@dataclass
class LoadSpec:
    """smtp-source sends `count` messages of `size` bytes in `sessions` parallel sessions."""
    name: str
    title: str
    count: int
    size: int
    sessions: int
    recipients: int = 1
    probe_interval: float = 0.05
    probe_size: int = 0  # 0: the load's message size

    @property
    def deliveries(self):
        return self.count * self.recipients


@dataclass
class IdleSpec:
    """`connections` SMTP sessions held open after EHLO."""
    name: str
    title: str
    connections: int


@dataclass
class DeferredSpec:
    """New mail (the `load`) delivered while `deferred` messages wait in the queue."""
    name: str
    title: str
    deferred: int
    load: LoadSpec


@dataclass
class BaselineSpec(LoadSpec):
    """The load of `deferred` on a host of the same age with an empty queue,
    measured round by round beside it (bench/run.py run_deferred)."""


@dataclass
class FilterSpec(LoadSpec):
    """A load on Estafeta alone, with smtpd sending every message through
    filterd to spamd and clamd (`filtered`) or with smtpd_filter off. The
    Postfix side has no content filter to compare with."""
    filtered: bool = True


def scaled(number, scale, minimum=1):
    return max(minimum, int(round(number * scale)))


def workloads(scale=1.0, deferred_scale=1.0):
    """Return the workload list, with message counts multiplied by scale."""
    def n(number, minimum=1):
        return scaled(number, scale, minimum)

    deferred = scaled(50000, deferred_scale, 100)
    return [
        LoadSpec("4k-c1", "%s x 4 KB, 1 session" % f"{n(20000):,}", n(20000), 4096, 1),
        LoadSpec("4k-c10", "%s x 4 KB, 10 sessions" % f"{n(20000):,}", n(20000), 4096, 10),
        LoadSpec("4k-c50", "%s x 4 KB, 50 sessions" % f"{n(20000):,}", n(20000), 4096, 50),
        LoadSpec("100k-c10", "%s x 100 KB, 10 sessions" % f"{n(2000):,}", n(2000), 102400, 10,
                 probe_interval=0.1),
        LoadSpec("10m-c5", "%d x 10 MB, 5 sessions" % n(50, 2), n(50, 2), 10 * 1024 * 1024, 5,
                 probe_interval=0.5),
        LoadSpec("rcpt1000", "%d x 1,000 recipients, 1 session" % n(5), n(5), 4096, 1,
                 recipients=1000, probe_interval=0.05, probe_size=4096),
        IdleSpec("idle1000", "%s idle sessions" % f"{n(1000, 10):,}", n(1000, 10)),
        # spamd took 0.1 to 0.3 s per 4 KB message on the benchmark
        # machine, so fewer messages keep this workload under a minute.
        FilterSpec("filter-off", "%s x 4 KB, 10 sessions, filterd off" % f"{n(200):,}", n(200),
                   4096, 10, probe_interval=0.2, filtered=False),
        FilterSpec("filter-on", "%s x 4 KB, 10 sessions, filterd with spamd and clamd"
                   % f"{n(200):,}", n(200), 4096, 10, probe_interval=0.2, filtered=True),
        # The deferred workload and its baseline: the same load on two hosts
        # started together, one with the deferred messages and one without.
        BaselineSpec("queue-empty", "%s x 4 KB, 10 sessions, empty queue" % f"{n(10000):,}",
                     n(10000), 4096, 10),
        DeferredSpec("deferred", "%s x 4 KB, 10 sessions, %s deferred"
                     % (f"{n(10000):,}", f"{deferred:,}"),
                     deferred, LoadSpec("deferred", "", n(10000), 4096, 10)),
    ]


def count_files(folders):
    total = 0
    for folder in folders:
        try:
            total += len(os.listdir(folder))
        except FileNotFoundError:
            pass
    return total


def last_change(folders):
    """Newest inode change time of the files: when the last one was renamed or linked in."""
    newest = 0.0
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    newest = max(newest, entry.stat().st_ctime)
        except FileNotFoundError:
            pass
    return newest


def wait_for_files(folders, expected, deadline):
    while True:
        found = count_files(folders)
        if found >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def percentile(samples, fraction):
    ordered = sorted(samples)
    if not ordered:
        return None
    index = min(len(ordered) - 1, int(fraction * len(ordered)))
    return ordered[index]


def measure_load(host, spec, mailboxes):
    """Run spec's load against host; the load goes to mailboxes (local parts)."""
    roots = host.root_pids()
    idle_before = procstat.wait_until_idle(roots, timeout=IDLE_TIMEOUT)
    folders = [host.maildir(local) / "new" for local in mailboxes]
    already = count_files(folders)
    expected = already + spec.deliveries

    command = smtp_source_command(host.smtp_port, spec.count, spec.sessions, spec.size,
                                  "%s@%s" % (mailboxes[0], DOMAIN), spec.recipients)
    probe = LatencyProbe(host.smtp_port, spec.probe_size or spec.size,
                         "%s@%s" % (PROBE_MAILBOX, DOMAIN), interval=spec.probe_interval)
    cpu_before = procstat.tree_cpu_seconds(roots)
    machine_before = procstat.machine_busy_seconds()
    start = time.time()
    with procstat.MemorySampler(roots) as memory:
        probe.start()
        client_seconds, result = run_smtp_source(command, SMTP_SOURCE_TIMEOUT)
        probe.stop()
        found = wait_for_files(folders, expected, time.monotonic() + DELIVERY_TIMEOUT)
        idle_after = procstat.wait_until_idle(roots, timeout=IDLE_TIMEOUT)
    cpu_seconds = procstat.tree_cpu_seconds(roots) - cpu_before
    machine_seconds = procstat.machine_busy_seconds() - machine_before

    errors = []
    if result is None:
        errors.append("smtp-source timed out after %ds" % SMTP_SOURCE_TIMEOUT)
    elif result.returncode != 0:
        errors.append("smtp-source exited with %d: %s" % (result.returncode, result.stderr[-500:]))
    if found < expected:
        errors.append("%d of %d deliveries in the mailboxes after %ds"
                      % (found - already, spec.deliveries, DELIVERY_TIMEOUT))
    errors += ["latency probe: %s" % error for error in probe.errors]
    if not idle_before or not idle_after:
        errors.append("processes not idle %s the load" % ("before" if not idle_before else "after"))

    delivered_seconds = max(last_change(folders) - start, 1e-6)
    # The probe's messages cost the system work as well, so they count in
    # the CPU time per message.
    work_units = spec.deliveries + len(probe.samples)
    return {
        "units": "deliveries" if spec.recipients > 1 else "messages",
        "count": spec.deliveries,
        "accepted_per_s": spec.deliveries / client_seconds,
        "delivered_per_s": (found - already) / delivered_seconds,
        "latency_p50_ms": ms(percentile(probe.samples, 0.50)),
        "latency_p99_ms": ms(percentile(probe.samples, 0.99)),
        "latency_samples": len(probe.samples),
        "cpu_s_per_1000": cpu_seconds / work_units * 1000,
        "machine_cpu_s_per_1000": machine_seconds / work_units * 1000,
        "peak_pss_mb": memory.peak_pss_kb / 1024,
        "peak_rss_mb": memory.peak_rss_kb / 1024,
        "client_seconds": client_seconds,
        "delivered_seconds": delivered_seconds,
        "errors": errors,
    }


def ms(seconds):
    return None if seconds is None else seconds * 1000


def measure_idle(host, spec):
    roots = host.root_pids()
    idle = procstat.wait_until_idle(roots, timeout=IDLE_TIMEOUT)
    rss_before, pss_before = procstat.tree_memory_kb(roots)
    start = time.monotonic()
    sockets = open_idle_connections(host.smtp_port, spec.connections)
    try:
        open_seconds = time.monotonic() - start
        # Let process start-up (Postfix forks one smtpd per session) settle.
        time.sleep(2)
        rss_after, pss_after = procstat.tree_memory_kb(roots)
        processes = len(procstat.tree_pids(roots))
    finally:
        for sock in sockets:
            sock.close()
    return {
        "connections": spec.connections,
        "open_seconds": open_seconds,
        "processes": processes,
        "pss_before_mb": pss_before / 1024,
        "pss_after_mb": pss_after / 1024,
        "rss_after_mb": rss_after / 1024,
        "pss_per_connection_kb": (pss_after - pss_before) / spec.connections,
        "rss_per_connection_kb": (rss_after - rss_before) / spec.connections,
        "errors": [] if idle else ["processes not idle before the sessions were opened"],
    }


def fill_deferred(host, spec):
    """Queue spec.deferred messages for a remote domain, which both systems hold as deferred."""
    roots = host.root_pids()
    command = smtp_source_command(host.smtp_port, spec.deferred, 10, 4096, "deferred@remote.test")
    client_seconds, result = run_smtp_source(command, SMTP_SOURCE_TIMEOUT)
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while host.queue_size() < spec.deferred and time.monotonic() < deadline:
        time.sleep(0.5)
    idle = procstat.wait_until_idle(roots, timeout=DELIVERY_TIMEOUT)
    # Write the filled queue back now, so that the first round does not
    # share the disk with the writeback of 50,000 new files.
    os.sync()
    errors = []
    if result is None or result.returncode != 0:
        errors.append("smtp-source failed while filling the queue: %s"
                      % ("timeout" if result is None else result.stderr[-500:]))
    if host.queue_size() < spec.deferred:
        errors.append("only %d of %d messages in the queue" % (host.queue_size(), spec.deferred))
    if not idle:
        errors.append("processes still busy %ds after filling the queue" % DELIVERY_TIMEOUT)
    rss, pss = procstat.tree_memory_kb(roots)
    return {
        "deferred": host.queue_size(),
        "fill_accepted_per_s": spec.deferred / client_seconds,
        "pss_with_queue_mb": pss / 1024,
        "rss_with_queue_mb": rss / 1024,
        "errors": errors,
    }


def outbound_connections(roots):
    """TCP and UDP sockets of the trees whose peer is not on 127.0.0.0/8."""
    pids = set(procstat.tree_pids(roots))
    result = subprocess.run(["ss", "-tunpH"], capture_output=True, text=True, timeout=60)
    found = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) < 7:
            continue
        peer = fields[5]
        owners = [int(part[4:]) for part in fields[6].replace(")", ",").split(",")
                  if part.startswith("pid=")]
        if any(pid in pids for pid in owners) and not peer.startswith("127.") and peer != "*:*":
            found.append(line)
    return found
