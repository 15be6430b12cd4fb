"""Shared pieces of the results-page generators in docs/results (standard library only)."""
import json
import math
import os
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
