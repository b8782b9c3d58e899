"""Description of the machine a run used: hardware, file system, kernel, versions."""

import os
import platform
import subprocess

from estafeta_host import estafeta_commit
from postfix_host import postfix_version


def command_output(*command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def memory_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def describe(path="/tmp"):
    source, fstype, options = (command_output("findmnt", "-no", "SOURCE,FSTYPE,OPTIONS", "--target", path).split()
                               + ["?", "?", "?"])[:3]
    device = os.path.basename(source)
    rotational = command_output("cat", "/sys/block/%s/queue/rotational" % device)
    kind = {"1": "rotational", "0": "non-rotational"}.get(rotational, "of unknown kind")
    with open("/etc/debian_version") as f:
        debian = f.read().strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(memory_gib(), 1),
        "file_system": "%s on %s (%s)" % (fstype, source, options),
        "disk": "%s (the kernel reports it %s)" % (device, kind),
        "kernel": platform.release(),
        "debian": debian,
        "postfix": postfix_version(),
        "estafeta": estafeta_commit(),
        "load_average": os.getloadavg(),
    }
