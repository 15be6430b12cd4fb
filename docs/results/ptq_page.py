#!/usr/bin/env python3
"""Writes docs/results/ptq.{md,csv} from the runs of regenerate-ptq.sh.

Usage: ptq_page.py <runs-dir>   (standard library only)
"""
import csv
import json
import os
import re
import sys

import pagekit

runs = sys.argv[1]
here = pagekit.here
MODELS = [
    ("mdsnn-teacher", "MNIST ConvNet, LIF, T = 4 (MD-SNN page's teacher, `mdsnn-versatile`)"),
    ("ds-mnist-teacher", "MNIST ConvNet, 6 epochs, T = 4 (Distilling Spikes, `ds-mnist-sv-teacher`)"),
    ("ds-fmnist-teacher", "Fashion-MNIST ConvNet, 9 epochs, T = 4 (Distilling Spikes, `ds-fmnist-long-teacher`)"),
]


def acc(name):
    return 100.0 * json.load(open(os.path.join(runs, name + ".json")))["accuracy"]


def search_errors(model, bits):
    """The trajectory error at the starting (lsq) scales and after the search, from the quantize log."""
    log = open(os.path.join(runs, f"{model}.q{bits}-search.log")).read()
    m = re.search(r"trajectory\s+error\s+([0-9.]+)\s+at\s+the\s+starting\s+scales,\s+([0-9.]+)\s+after", log)
    return (float(m.group(1)), float(m.group(2))) if m else (None, None)


lines = [
    "# Post-training quantization: MINT's starting scales against the scale search",
    "",
    "Trained full-precision SNNs of the other pages, quantized without any training at 2, 4 and 8 bits",
    "(`snnspec quantize --bits B`, MINT preset: weights, bias and membranes at B bits, batch norm folded,",
    "the first layer in full precision). The weight scales α come either from MINT's starting scale",
    "α₀ = 2·mean|W'|/√Q (`--scales lsq`, the initialisation quantization-aware training learns from) or",
    "from the post-training search (`--scales search`, `QuantTrajectory.fitScales`: per layer, the α of a",
    "16-point grid up to max|tanh W'| that brings the model closest to its float twin); both are",
    "calibrated on the first 128 training images. Accuracy at t = T on the whole test set (10000 images).",
    "Trajectory error: mean relative membrane error over populations and steps plus the mean relative",
    "logit error, against the float model on the 128 calibration images (`QuantTrajectoryReport.Error`).",
    "",
    f"Regenerate: `bash docs/results/regenerate-ptq.sh` (it reads the checkpoints the other pages' scripts",
    f"train); commit {pagekit.commit(os.path.join(runs, 'commit'))}; {pagekit.cpu()}, 2 cores.",
    "",
    "| model | float | bits | α₀ (lsq) | search | trajectory error α₀ → search | quantize time (search) |",
    "|---|---|---|---|---|---|---|",
]
rows = []
for model, label in MODELS:
    if not os.path.exists(os.path.join(runs, model + ".fp.json")):
        continue
    fp = acc(model + ".fp")
    for bits in (2, 4, 8):
        lsq, search = acc(f"{model}.q{bits}-lsq"), acc(f"{model}.q{bits}-search")
        before, after = search_errors(model, bits)
        seconds = float(open(os.path.join(runs, f"{model}.q{bits}-search.seconds")).read())
        err = f"{before:.3f} → {after:.3f}" if before is not None else "—"
        first = bits == 2
        lines.append(f"| {label if first else ''} | {f'{fp:.2f}' if first else ''} | {bits} | {lsq:.2f} | {search:.2f} "
                     f"| {err} | {seconds:.0f} s |")
        rows.append([model, bits, f"{fp:.2f}", f"{lsq:.2f}", f"{search:.2f}", before, after, f"{seconds:.1f}"])

notes = os.path.join(here, "ptq.notes.md")
if os.path.exists(notes):
    lines += ["", open(notes).read().rstrip()]
lines.append("")
open(os.path.join(here, "ptq.md"), "w").write("\n".join(lines))
with open(os.path.join(here, "ptq.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["model", "bits", "float_accuracy", "lsq_accuracy", "search_accuracy", "lsq_trajectory_error",
                "search_trajectory_error", "quantize_seconds_search"])
    w.writerows(rows)
print("wrote docs/results/ptq.md and .csv")
