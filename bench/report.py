"""Turn bench/results.json into the tables of doc/benchmarks.md and a plot.

Only the part of doc/benchmarks.md between the BEGIN and END markers is
rewritten, so the prose around it (method, analysis) stays as written.
Each figure is the median over the rounds without errors. The spread is
(max - min) / median over the same rounds.
"""

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BEGIN = "<!-- results: begin (written by bench/run.py) -->"
END = "<!-- results: end -->"
SYSTEMS = ("estafeta", "postfix")

# (key, label, format) of the figures of load workloads. Lower is better
# for all but the rates.
LOAD_FIGURES = [
    ("accepted_per_s", "accepted per s (client)", "%.0f"),
    ("delivered_per_s", "delivered per s (in Maildir)", "%.0f"),
    ("latency_p50_ms", "end of DATA to 250, p50 (ms)", "%.1f"),
    ("latency_p99_ms", "end of DATA to 250, p99 (ms)", "%.1f"),
    ("cpu_s_per_1000", "CPU s per 1,000", "%.2f"),
    ("peak_pss_mb", "peak PSS (MB)", "%.1f"),
]
IDLE_FIGURES = [
    ("pss_per_connection_kb", "PSS per session (KB)", "%.0f"),
    ("rss_per_connection_kb", "RSS per session (KB)", "%.0f"),
    ("open_seconds", "time to open all sessions (s)", "%.1f"),
    ("processes", "processes with the sessions open", "%.0f"),
]


def values(results, workload, system, key):
    return [run[key] for run in results["runs"]
            if run["workload"] == workload and run["system"] == system
            and not run["errors"] and run.get(key) is not None]


def median_and_spread(samples):
    if not samples:
        return None, None
    middle = statistics.median(samples)
    spread = (max(samples) - min(samples)) / middle if middle else 0.0
    return middle, spread


def cell(value, fmt, measured=True):
    if value is None:
        return "failed" if measured else "not run"
    return fmt % value


def was_measured(results, workload, system):
    return any(run["workload"] == workload and run["system"] == system for run in results["runs"])


def figure_rows(results, workload, figures):
    rows = []
    for key, label, fmt in figures:
        medians = {}
        spreads = {}
        rounds = {}
        for system in SYSTEMS:
            samples = values(results, workload, system, key)
            medians[system], spreads[system] = median_and_spread(samples)
            rounds[system] = len(samples)
        if all(value is None for value in medians.values()):
            continue
        ratio = (medians["estafeta"] / medians["postfix"]
                 if medians["estafeta"] is not None and medians["postfix"] else None)
        measured = {system: was_measured(results, workload, system) for system in SYSTEMS}
        spread = " / ".join("-" if spreads[system] is None or rounds[system] < 2
                            else "%.0f%%" % (spreads[system] * 100) for system in SYSTEMS)
        rows.append("| %s | %s | %s | %s | %s |" % (
            label, cell(medians["estafeta"], fmt, measured["estafeta"]),
            cell(medians["postfix"], fmt, measured["postfix"]),
            cell(ratio, "%.2f", all(measured.values())), spread))
    return rows


def load_table(results, spec):
    units = "deliveries" if spec["name"] == "rcpt1000" else "messages"
    lines = [
        "**%s** (`%s`, rates in %s)" % (spec["title"], spec["name"], units),
        "",
        "| figure | Estafeta | Postfix | Estafeta/Postfix | spread E / P |",
        "|---|---:|---:|---:|---:|",
    ]
    return lines + figure_rows(results, spec["name"], LOAD_FIGURES) + [""]


def idle_table(results, spec):
    lines = [
        "**%s** (`%s`)" % (spec["title"], spec["name"]),
        "",
        "| figure | Estafeta | Postfix | Estafeta/Postfix | spread E / P |",
        "|---|---:|---:|---:|---:|",
    ]
    return lines + figure_rows(results, spec["name"], IDLE_FIGURES) + [""]


def fill_table(results):
    fill = results.get("deferred_fill") or {}
    if not fill:
        return []
    lines = [
        "Filling the queue (once per system, before the rounds):",
        "",
        "| figure | Estafeta | Postfix |",
        "|---|---:|---:|",
    ]
    for key, label, fmt in [("deferred", "messages in the queue", "%d"),
                            ("fill_accepted_per_s", "accepted per s while filling", "%.0f"),
                            ("pss_with_queue_mb", "PSS with the queue full, idle (MB)", "%.1f")]:
        cells = [cell(fill.get(system, {}).get(key), fmt, system in fill) for system in SYSTEMS]
        lines.append("| %s | %s | %s |" % (label, *cells))
    return lines + [""]


def run_facts(results):
    info = results["machine"]
    failed = [run for run in results["runs"] if run["errors"]]
    lines = [
        "Run of %s: `%s`, %d round(s), counts scaled by %g (deferred queue by %g), %.0f minutes."
        % (results["started"], results["command"], results["rounds"], results["scale"],
           results["deferred_scale"], results["seconds"] / 60),
        "",
        "| | |",
        "|---|---|",
        "| machine | %d CPUs (%s), %.1f GiB memory |" % (info["cpus"], info["cpu_model"], info["memory_gib"]),
        "| disk and file system of /tmp | %s, %s |" % (info["disk"], info["file_system"]),
        "| kernel, distribution | Linux %s, Debian %s |" % (info["kernel"], info["debian"]),
        "| Postfix | %s (Debian package) |" % info["postfix"],
        "| Estafeta | commit %s |" % info["estafeta"],
        "| load average at the start | %s |" % ", ".join("%.2f" % x for x in info["load_average"]),
        "",
    ]
    if failed:
        lines += ["%d measurement(s) had errors and are left out of the medians: %s."
                  % (len(failed), "; ".join("%s %s round %d" % (run["workload"], run["system"], run["round"])
                                              for run in failed)), ""]
    return lines


def spread_summary(results):
    spreads = []
    for spec in results["workloads"]:
        for system in SYSTEMS:
            for key in ("accepted_per_s", "delivered_per_s"):
                _, spread = median_and_spread(values(results, spec["name"], system, key))
                if spread is not None and results["rounds"] > 1:
                    spreads.append(spread)
    if not spreads:
        return []
    return ["Spread of the rates between rounds: median %.0f%%, largest %.0f%%." % (
        statistics.median(spreads) * 100, max(spreads) * 100), ""]


def results_section(results, plot_name):
    lines = [BEGIN, ""] + run_facts(results) + spread_summary(results)
    for spec in results["workloads"]:
        if spec["kind"] == "IdleSpec":
            lines += idle_table(results, spec)
        else:
            lines += load_table(results, spec)
            if spec["kind"] == "DeferredSpec":
                lines += fill_table(results)
    lines += ["![Rates per workload](%s)" % plot_name, "", END]
    return "\n".join(lines)


def write(results, doc, plot):
    section = results_section(results, plot.name)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n%s\n%s\n" % (BEGIN, END)
    if BEGIN not in text or END not in text:
        text += "\n%s\n%s\n" % (BEGIN, END)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + section + tail)
    write_plot(results, plot)


def write_plot(results, plot):
    """Plot accepted and delivered rates per workload, both systems, with gnuplot."""
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        print("report: gnuplot not found, no plot written", file=sys.stderr)
        return
    rows = []
    for spec in results["workloads"]:
        if spec["kind"] == "IdleSpec":
            continue
        row = [spec["name"]]
        for key in ("accepted_per_s", "delivered_per_s"):
            for system in SYSTEMS:
                middle, _ = median_and_spread(values(results, spec["name"], system, key))
                # A system that was not measured gets a bar of 0, which
                # the log scale leaves out.
                row.append("%.2f" % (middle or 0))
        rows.append(" ".join(row))
    if not rows:
        return
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "rates.dat"
        # Columns: workload, accepted (Estafeta, Postfix), delivered (Estafeta, Postfix).
        data.write_text("\n".join(rows) + "\n")
        script = PLOT_SCRIPT % {"data": data, "output": plot}
        result = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
    if result.returncode != 0:
        print("report: gnuplot failed, no plot written:\n%s" % result.stderr, file=sys.stderr)


PLOT_SCRIPT = """
set terminal pngcairo size 1000,700 font "sans,10"
set output "%(output)s"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set grid ytics
set key top right
set xtics rotate by -20
set multiplot layout 2,1
set title "Accepted per second (client side; rcpt1000: recipients)"
set ylabel "per second (log scale)"
plot "%(data)s" using 2:xtic(1) lc rgb "#1f77b4" title "Estafeta", \\
     "" using 3 lc rgb "#ff7f0e" title "Postfix"
set title "Delivered per second (until the last file is in the Maildirs; rcpt1000: deliveries)"
plot "%(data)s" using 4:xtic(1) lc rgb "#1f77b4" title "Estafeta", \\
     "" using 5 lc rgb "#ff7f0e" title "Postfix"
unset multiplot
"""


if __name__ == "__main__":
    # Rewrite the doc and the plot from an existing results file:
    #   report.py bench/results.json doc/benchmarks.md doc/benchmarks.png
    results_path, doc_path, plot_path = sys.argv[1:4]
    write(json.loads(Path(results_path).read_text()), Path(doc_path), Path(plot_path))
