#!/usr/bin/python3
"""Compare Estafeta builds or settings on one workload, in alternating runs.

    bench/compare.py --only 4k-c10 --pairs 6 \\
        old=/tmp/old/bin new=build/bin new-fsync=build/bin:maildir_sync_method=fsync

Each round runs every variant once, in the order given, through
bench/run.py (one round, Estafeta only). Before each run it syncs the file
systems and waits a few seconds. Host directories are kept until the end
of the comparison and then removed. On ext4 without a journal, a run that
starts soon after a host directory was removed pays for skipping its
freed inodes, so removing them between runs would make each run slower
than the one before. The figures of each run and the median of each
variant are printed; machine_cpu_s_per_1000 shows whether the machine
itself changed speed meanwhile.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path("/tmp/estafeta-compare")
HOST_PREFIX = "est-"
FIGURES = ("delivered_per_s", "latency_p50_ms", "latency_p99_ms", "machine_cpu_s_per_1000")


def parse_variant(text):
    """Split LABEL=BINDIR[:NAME=VALUE,...] into (label, bin directory, settings)."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise argparse.ArgumentTypeError("invalid variant %r: expected LABEL=BINDIR[:NAME=VALUE,...]"
                                         % text)
    bindir, _, options = rest.partition(":")
    settings = [option for option in options.split(",") if option]
    for setting in settings:
        if "=" not in setting:
            raise argparse.ArgumentTypeError("invalid setting %r: expected NAME=VALUE" % setting)
    return label, str(Path(bindir).resolve()), settings


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", required=True, help="the workload, e.g. 4k-c10")
    parser.add_argument("--pairs", type=int, default=4, help="rounds of all variants (default 4)")
    parser.add_argument("--pause", type=float, default=5.0,
                        help="seconds to wait after the sync before each run (default 5)")
    parser.add_argument("variants", nargs="+", type=parse_variant,
                        help="LABEL=BINDIR[:NAME=VALUE,...]: a build and extra estafeta.conf settings")
    return parser.parse_args()


def host_dirs():
    return {path for path in Path("/tmp").glob(HOST_PREFIX + "*") if path.is_dir()}


def run_once(workload, label, bindir, settings, index, pause):
    """Run bench/run.py once; return the run's figures, or None if it failed."""
    results = RESULTS_DIR / ("%s-%d.json" % (label, index))
    command = [sys.executable, str(REPO / "bench" / "run.py"), "--only", workload,
               "--rounds", "1", "--systems", "estafeta", "--keep", "--results", str(results),
               "--doc", str(RESULTS_DIR / "benchmarks.md"),
               "--plot", str(RESULTS_DIR / "benchmarks.png")]
    for setting in settings:
        command += ["-o", setting]
    os.sync()
    time.sleep(pause)
    env = dict(os.environ, ESTAFETA_BIN=bindir)
    completed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                               timeout=900)
    if completed.returncode != 0 or not results.exists():
        print("%s: run %d failed; the end of its output:\n%s" % (label, index, completed.stdout[-2000:]),
              file=sys.stderr)
        return None
    runs = [run for run in json.loads(results.read_text())["runs"] if "delivered_per_s" in run]
    if not runs or runs[0].get("errors"):
        print("%s: run %d had errors: %s" % (label, index, runs[0].get("errors") if runs else "none"),
              file=sys.stderr)
        return None
    return runs[0]


def main():
    args = parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    before = host_dirs()
    figures = {label: [] for label, _, _ in args.variants}
    try:
        for index in range(1, args.pairs + 1):
            for label, bindir, settings in args.variants:
                run = run_once(args.only, label, bindir, settings, index, args.pause)
                if run is None:
                    continue
                figures[label].append(run)
                print("%s %-12s %s" % (time.strftime("%H:%M:%S"), label, " ".join(
                    "%s=%.3g" % (name, run[name]) for name in FIGURES if name in run)), flush=True)
    finally:
        for path in host_dirs() - before:
            shutil.rmtree(path, ignore_errors=True)

    print("medians over %d rounds:" % args.pairs)
    for label, runs in figures.items():
        if not runs:
            print("%-12s no successful run" % label)
            continue
        print("%-12s %s" % (label, " ".join(
            "%s=%.3g" % (name, statistics.median(run[name] for run in runs))
            for name in FIGURES if name in runs[0])))


if __name__ == "__main__":
    main()
