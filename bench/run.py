#!/usr/bin/python3
"""Benchmark Estafeta against Postfix on this machine: `make bench`.

Each workload runs on both systems in every round, and the system that
goes first alternates. The raw results go to bench/results.json, the
tables and the plot into doc/benchmarks.md and doc/benchmarks.png. Needs root
(Postfix's master refuses to start otherwise), the packages that
tests/tools/ensure-packages.sh bench installs, and a build of Estafeta (`make`).
"""

import argparse
import json
import os
import resource
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
import report  # noqa: E402
import workloads  # noqa: E402
from common import mailbox_names  # noqa: E402
from estafeta_host import EstafetaHost  # noqa: E402
from postfix_host import PostfixHost  # noqa: E402
from workloads import BaselineSpec, DeferredSpec, FilterSpec, IdleSpec, LoadSpec, PROBE_MAILBOX  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = {"estafeta": EstafetaHost, "postfix": PostfixHost}
MAILBOXES = mailbox_names() + [PROBE_MAILBOX]
# Retries of the deferred-queue workload are held off for longer than the
# whole run, so that its figures show the cost of a large queue, not of
# retrying it.
HELD_BACKOFF = "2h"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every workload on each system (default 3)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every message and session count by this factor (default 1)")
    parser.add_argument("--deferred-scale", type=float, default=1.0,
                        help="multiply the 50,000 deferred messages by this factor (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="development run: 1 round, scale 0.05, 2,500 deferred messages")
    parser.add_argument("--only", default="",
                        help="comma-separated workload names to run (default: all)")
    parser.add_argument("--results", help="where to write the raw results (JSON); "
                        "default bench/results.json for a full run, else under /tmp/estafeta-bench")
    parser.add_argument("--doc", help="Markdown page whose results section is rewritten; "
                        "default doc/benchmarks.md for a full run, else under /tmp/estafeta-bench")
    parser.add_argument("--plot", help="PNG plot of the rates per workload; "
                        "default doc/benchmarks.png for a full run, else under /tmp/estafeta-bench")
    parser.add_argument("--systems", default="estafeta,postfix",
                        help="comma-separated systems to measure (default: estafeta,postfix)")
    parser.add_argument("-o", "--estafeta-option", action="append", default=[], metavar="NAME=VALUE",
                        help="extra estafeta.conf setting for every Estafeta host (repeatable)")
    parser.add_argument("--keep", action="store_true",
                        help="keep every host directory under /tmp (default: only those of failed runs)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.scale, args.deferred_scale = 1, 0.05, 0.05
    resolve_outputs(args)
    return args


def resolve_outputs(args):
    """Send the results of a partial or changed run away from the committed ones."""
    full = (args.rounds >= 3 and args.scale == 1.0 and args.deferred_scale == 1.0 and not args.only
            and args.systems == "estafeta,postfix" and not args.estafeta_option)
    if full:
        defaults = (REPO / "bench" / "results.json", REPO / "doc" / "benchmarks.md",
                    REPO / "doc" / "benchmarks.png")
    else:
        folder = Path("/tmp/estafeta-bench")
        folder.mkdir(exist_ok=True)
        defaults = (folder / "results.json", folder / "benchmarks.md", folder / "benchmarks.png")
    args.results = Path(args.results) if args.results else defaults[0]
    args.doc = Path(args.doc) if args.doc else defaults[1]
    args.plot = Path(args.plot) if args.plot else defaults[2]


def log(text):
    print(time.strftime("%H:%M:%S"), text, flush=True)


def summary_line(figures):
    keys = ("accepted_per_s", "delivered_per_s", "latency_p50_ms", "latency_p99_ms",
            "cpu_s_per_1000", "peak_pss_mb", "pss_per_connection_kb",
            "deferred", "fill_accepted_per_s", "pss_with_queue_mb")
    parts = ["%s=%.1f" % (key, figures[key]) for key in keys if figures.get(key) is not None]
    if figures.get("errors"):
        parts.append("errors=%s" % figures["errors"])
    return " ".join(parts)


def network_check(host):
    """Return problems found: sockets to other hosts, or Postfix's SMTP client at work."""
    problems = ["outbound socket: %s" % line for line in workloads.outbound_connections(host.root_pids())]
    if host.name == "postfix":
        for line in host.log().splitlines():
            if "postfix/smtp[" in line or " connect to " in line:
                problems.append("Postfix log: %s" % line)
    return problems


class Benchmark:
    """One run: the chosen systems and workloads, and the results so far."""

    def __init__(self, args, specs):
        self.args = args
        self.systems = args.systems.split(",")
        self.estafeta_settings = dict(option.split("=", 1) for option in args.estafeta_option)
        self.specs = specs
        # Directories of stopped hosts, removed when the run ends. ext4
        # without a journal skips every inode freed in the last minute when
        # it allocates one, so removing tens of thousands of files between
        # measurements would slow both systems unevenly in the next one.
        self.stopped_dirs = []
        self.results = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(["bench/run.py"] + sys.argv[1:]),
            "rounds": args.rounds,
            "scale": args.scale,
            "deferred_scale": args.deferred_scale,
            "estafeta_settings": self.estafeta_settings,
            "machine": machine.describe(),
            "workloads": [{"name": spec.name, "title": spec.title, "kind": type(spec).__name__}
                          for spec in specs],
            "runs": [],
            "deferred_fill": {},
        }

    def order(self, round_index, workload_index):
        """Alternate which system goes first, round by round and workload by workload."""
        if (round_index + workload_index) % 2 == 0:
            return self.systems
        return list(reversed(self.systems))

    def make_host(self, system, **options):
        if system == "estafeta":
            options["settings"] = self.estafeta_settings
        return SYSTEMS[system](MAILBOXES, **options)

    def run(self):
        try:
            return self.run_all()
        finally:
            for path in self.stopped_dirs:
                shutil.rmtree(path, ignore_errors=True)

    def run_all(self):
        started = time.monotonic()
        for round_index in range(self.args.rounds):
            for workload_index, spec in enumerate(self.specs):
                if isinstance(spec, (DeferredSpec, BaselineSpec)):
                    continue
                for system in self.order(round_index, workload_index):
                    if isinstance(spec, FilterSpec) and system != "estafeta":
                        continue
                    log("%s %s round %d: %s" % (spec.name, system, round_index + 1, spec.title))
                    try:
                        figures = self.run_one(system, spec)
                    except Exception:
                        figures = {"errors": [traceback.format_exc()]}
                    self.record(spec, system, round_index, figures)
        for spec in self.specs:
            if isinstance(spec, DeferredSpec):
                self.run_deferred(spec)
        self.results["seconds"] = time.monotonic() - started
        return self.results

    def run_one(self, system, spec):
        """Measure spec on a fresh host of system; return the figures."""
        if isinstance(spec, FilterSpec):
            host = self.make_host(system, scanners=spec.filtered)
        else:
            host = self.make_host(system)
        failed = True
        try:
            host.start()
            if isinstance(spec, IdleSpec):
                figures = workloads.measure_idle(host, spec)
            else:
                mailboxes = mailbox_names(spec.recipients) if spec.recipients > 1 else ["bench"]
                figures = workloads.measure_load(host, spec, mailboxes)
            figures["errors"] += network_check(host)
            failed = bool(figures["errors"])
            return figures
        finally:
            self.destroy(host, failed)

    def run_deferred(self, spec):
        """Start two hosts of each system and fill one of them. Then measure
        new mail on both, round by round, each round into a mailbox of its own.
        Both hosts have run equally long when measured, so the difference
        between them is the cost of the deferred messages."""
        baseline = next((other for other in self.specs if isinstance(other, BaselineSpec)), None)
        full, empty = {}, {}
        try:
            for system in self.systems:
                if baseline is not None:
                    empty[system] = self.make_host(system, backoff=HELD_BACKOFF)
                    empty[system].start()
                full[system] = self.make_host(system, backoff=HELD_BACKOFF)
                full[system].start()
                log("%s %s: filling the queue with %d messages" % (spec.name, system, spec.deferred))
                fill = workloads.fill_deferred(full[system], spec)
                log("%s %s: %s" % (spec.name, system, summary_line(fill)))
                self.results["deferred_fill"][system] = fill
            for round_index in range(self.args.rounds):
                for system in self.order(round_index, 0):
                    pairs = [(spec, spec.load, full[system])]
                    if baseline is not None:
                        pairs.append((baseline, baseline, empty[system]))
                    if round_index % 2:
                        pairs.reverse()
                    for recorded, load, host in pairs:
                        self.measure_on(recorded, load, host, system, round_index)
        finally:
            for system, host in full.items():
                fill_failed = bool(self.results["deferred_fill"].get(system, {}).get("errors", True))
                self.destroy(host, fill_failed or self.any_errors(spec.name, system))
            for system, host in empty.items():
                self.destroy(host, self.any_errors(baseline.name, system))

    def any_errors(self, workload, system):
        """Whether a measurement of WORKLOAD on SYSTEM had errors."""
        return any(run["errors"] for run in self.results["runs"]
                   if run["workload"] == workload and run["system"] == system)

    def measure_on(self, recorded, load, host, system, round_index):
        """Measure LOAD on a running host; record it under RECORDED's name."""
        # A mailbox of its own per round: 2bench, 3bench, ...
        mailbox = "%dbench" % (round_index + 2)
        log("%s %s round %d: %s" % (recorded.name, system, round_index + 1, recorded.title))
        try:
            figures = workloads.measure_load(host, load, [mailbox])
            figures["errors"] += network_check(host)
        except Exception:
            figures = {"errors": [traceback.format_exc()]}
        self.record(recorded, system, round_index, figures)

    def destroy(self, host, failed):
        if failed:
            log("  host directory kept: %s" % host.dir)
        host.destroy(keep=True)
        if not failed and not self.args.keep:
            self.stopped_dirs.append(host.dir)

    def record(self, spec, system, round_index, figures):
        log("%s %s round %d: %s" % (spec.name, system, round_index + 1, summary_line(figures)))
        self.results["runs"].append(dict(figures, workload=spec.name, system=system,
                                         round=round_index + 1))


def main():
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so every host started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("bench/run.py: terminated"))
    if os.geteuid() != 0:
        sys.exit("bench/run.py: must run as root: Postfix's master starts only as root, "
                 "and both systems drop privileges as in production")
    # 1,000 idle sessions need more descriptors than the usual 1024 in
    # this process and in the daemons, which inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    specs = workloads.workloads(args.scale, args.deferred_scale)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {spec.name for spec in specs}
        if unknown:
            sys.exit("bench/run.py: unknown workload %s; known: %s"
                     % (", ".join(sorted(unknown)), ", ".join(spec.name for spec in specs)))
        # The deferred workload is measured beside its baseline: one brings the other.
        pair = {spec.name for spec in specs if isinstance(spec, (DeferredSpec, BaselineSpec))}
        if pair & set(wanted):
            wanted += sorted(pair)
        specs = [spec for spec in specs if spec.name in wanted]

    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        sys.exit("bench/run.py: unknown system %s; known: %s" % (", ".join(unknown), ", ".join(SYSTEMS)))

    results = Benchmark(args, specs).run()
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    log("raw results in %s (%.0f s)" % (args.results, results["seconds"]))
    report.write(results, args.doc, args.plot)
    log("tables in %s, plot in %s" % (args.doc, args.plot))
    failures = sum(1 for run in results["runs"] if run["errors"])
    if failures:
        log("%d measurements had errors; see %s" % (failures, args.results))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
