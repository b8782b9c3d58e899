"""CPU time and memory of a system's process trees, read from /proc.

A system is the set of processes descending from its root processes
(Postfix's master, Estafeta's four daemons). CPU time is utime + stime
of every live process plus its cutime + cstime, the time of the
children it has already reaped. So processes that come and go during a
run (Postfix's smtpd and cleanup, deliverd's workers) are counted too.
"""

import os
import threading
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(pid):
    """Return (ppid, cpu ticks including reaped children) or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses, so the fields
    # are counted from the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, utime + stime + cutime + cstime


def all_processes():
    """Return {pid: (ppid, cpu ticks)} for every process on the machine."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    return table


def tree_pids(roots, table=None):
    table = all_processes() if table is None else table
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = []
    pending = [pid for pid in roots if pid in table]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(roots):
    table = all_processes()
    return sum(table[pid][1] for pid in tree_pids(roots, table)) / CLOCK_TICKS


def machine_busy_seconds():
    """CPU seconds spent on anything but idle and iowait, all cores together."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def tree_memory_kb(roots):
    """Return (RSS, PSS) in KiB summed over the trees."""
    rss = pss = 0
    for pid in tree_pids(roots):
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return rss, pss


class MemorySampler:
    """Record the peak RSS and PSS of the trees, sampled in a thread."""

    def __init__(self, roots, interval=0.5):
        self.roots = roots
        self.interval = interval
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def sample(self):
        rss, pss = tree_memory_kb(self.roots)
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def loop(self):
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        self.sample()


def wait_until_idle(roots, timeout=60, window=1.0, threshold=0.03):
    """Wait until the trees use less than threshold CPU seconds per second.

    Returns False if they were still busy after timeout seconds.
    """
    deadline = time.monotonic() + timeout
    before = tree_cpu_seconds(roots)
    while time.monotonic() < deadline:
        time.sleep(window)
        after = tree_cpu_seconds(roots)
        if (after - before) / window < threshold:
            return True
        before = after
    return False
