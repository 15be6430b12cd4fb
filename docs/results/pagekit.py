"""Shared pieces of the results-page generators in docs/results (standard library only)."""
import json
import math
import os
import re
import platform
import subprocess

here = os.path.dirname(os.path.abspath(__file__))


def cpu():
    """The CPU model of this machine."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit(recorded=None):
    """The commit the runs were made with, as the regenerate script recorded it in the file
    `recorded`; else the checkout's."""
    if recorded and os.path.exists(recorded):
        return open(recorded).read().strip()
    try:
        return subprocess.check_output(["git", "-C", here, "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(runs, name):
    """A run of runs/<name>: its test accuracy (%) at every t by model name, and its wall time in
    seconds (NaN when not recorded); None when the run has no report."""
    path = os.path.join(runs, name, "report.json")
    if not os.path.exists(path):
        return None
    report = json.load(open(path))
    seconds_path = os.path.join(runs, name + ".seconds")
    seconds = float(open(seconds_path).read()) if os.path.exists(seconds_path) else math.nan
    acc = {a["name"]: [100 * v for v in a["accuracy"]] for a in report["accuracy"]}
    return {"name": name, "acc": acc, "seconds": seconds}


def validation(runs, name):
    """Validation accuracy (%) per student epoch, from the log runs/<name>.log (empty when absent)."""
    path = os.path.join(runs, name + ".log")
    if not os.path.exists(path):
        return []
    text = re.sub(r"\s+", " ", open(path, errors="replace").read())
    return [100 * float(m.group(1))
            for m in re.finditer(r"student epoch \d+: train loss [\d.]+, train acc [\d.]+, validation acc ([\d.]+)", text)]


def validation_exact(runs, name):
    """Validation accuracy (%) of the saved student from runs/<name>.validation.json (written by
    `snnspec eval … --validation N --json`), unrounded; else the best epoch's from the training log
    (printed to 0.1 %); None when neither exists."""
    path = os.path.join(runs, name + ".validation.json")
    if os.path.exists(path):
        return 100 * json.load(open(path))["accuracy"]
    v = validation(runs, name)
    return max(v) if v else None


def seed_mean(acc, seeds, keys):
    """The mean over `seeds` of acc[seed][key] at every t, for each key (acc: seed → key → accuracies)."""
    return {k: [sum(acc[s][k][i] for s in seeds) / len(seeds) for i in range(len(acc[seeds[0]][k]))] for k in keys}


def gap_closed(teacher, rows, key):
    """The share of the teacher's lead over the student alone that rows[key] closes at the last t,
    (student − alone) / (teacher − alone), with rows["alone"] the student alone; None when undefined."""
    if teacher is None or "alone" not in rows or key not in rows or teacher == rows["alone"][-1]:
        return None
    return (rows[key][-1] - rows["alone"][-1]) / (teacher - rows["alone"][-1])


def fmt_gap(g):
    """A gap_closed share as a whole percentage, or a dash."""
    return "—" if g is None else f"{100 * g:.0f} %"
