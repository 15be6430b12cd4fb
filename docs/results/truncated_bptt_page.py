#!/usr/bin/env python3
"""Writes docs/results/truncated-bptt.{md,csv} from the runs of regenerate-truncated-bptt.sh.

Usage: truncated_bptt_page.py <runs-dir>   (standard library only)
"""
import csv
import math
import os
import sys

import pagekit

runs = sys.argv[1]
here = pagekit.here
ROWS = [("full", "full BPTT", None), ("k8", "8", 8), ("k4", "4", 4), ("k2", "2", 2), ("k1", "1", 1),
        ("full-s2", "full BPTT, seed 2", None), ("k4-s2", "4, seed 2", 4), ("k2-s2", "2, seed 2", 2)]
MEANS = [("full", "full BPTT"), ("k4", "4"), ("k2", "2")]
SHOWN = [1, 2, 4, 8, 12, 16]


def rss_mb(name):
    path = os.path.join(runs, f"tbptt-{name}.maxrss_kb")
    return float(open(path).read().split()[-1]) / 1024.0 if os.path.exists(path) else math.nan


results = []
for key, label, window in ROWS:
    r = pagekit.run(runs, f"tbptt-{key}")
    if r is None:
        continue
    results.append((key, label, window, r["acc"]["student"], r["seconds"], rss_mb(key),
                    pagekit.validation(runs, f"tbptt-{key}")))

full = next((x for x in results if x[0] == "full"), None)
lines = [
    "# Truncated BPTT on event data",
    "",
    "An SNN reading a long event sequence one frame per step must, under full backpropagation through",
    "time, keep every step's activations until the backward pass. Truncated BPTT",
    "(`TrainConfig.Truncation = Some K`, spec file `training.truncation`) runs each batch in chunks of K",
    "steps: chunk c starts from the membranes chunk c − 1 ended in, detached, so no gradient crosses a",
    "chunk boundary and only one chunk's activations live at a time; the chunk losses are weighted by",
    "their share of T and the optimizer steps once per batch.",
    "",
    "The runs: the half-width ConvNet SNN (LIF) trained alone with cross-entropy on the time-mean logits, on",
    "emulated event-MNIST integrated into **16 frames** (T = 16, about 19 ms of events per step), 19000",
    "training and 1000 validation images (the last 1000 of the first 20000), 2 epochs, batches of 64,",
    "Adam 5e-3 with a cosine schedule, seed 1 (initialisation and training); accuracy at every t on all 10000 test images of the epoch",
    "with the best validation accuracy. The windows (full, 8, 4, 2, 1) were fixed before any run; nothing",
    "was tuned; seed 2 of the full, 4 and 2 rows was added after seed 1, to check its reading. Two runs",
    "shared the 2 cores at a time, so wall times are upper bounds. Peak RSS is the",
    "whole process's (`/usr/bin/time`), the frames of all 30000 images included (uint16 counts,",
    "2.2 GB); `Benchmarks/race/truncation.sh` measures training memory alone.",
    "",
    f"Regenerate: `bash docs/results/regenerate-truncated-bptt.sh` (spec files `Examples/specs/results/tbptt-*.json`);",
    f"commit {pagekit.commit(os.path.join(runs, 'commit'))}; {pagekit.cpu()}, 2 cores.",
    "",
    "| window K | " + " | ".join(f"t = {t}" for t in SHOWN) + " | wall time | peak RSS (MB) | × full BPTT |",
    "|---|" + "---|" * len(SHOWN) + "---|---|---|",
]
for key, label, window, acc, seconds, rss, _ in results:
    ratio = f"{rss / full[5]:.2f}" if full and not math.isnan(rss) else "—"
    lines.append(f"| {label} | " + " | ".join(f"{acc[t - 1]:.2f}" for t in SHOWN)
                 + f" | {seconds / 60:.1f} min | {rss:.0f} | {ratio} |")
lines += ["", "Validation accuracy (%) after each epoch:", "", "| window K | epoch 1 | epoch 2 |", "|---|---|---|"]
for key, label, window, acc, seconds, rss, val in results:
    lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in val) + " |")
by_key = {x[0]: x[3] for x in results}
means = [(label, [(a + b) / 2 for a, b in zip(by_key[k], by_key[k + "-s2"])])
         for k, label in MEANS if k in by_key and k + "-s2" in by_key]
if means:
    lines += ["", "Mean of seeds 1 and 2:", "",
              "| window K | " + " | ".join(f"t = {t}" for t in SHOWN) + " |",
              "|---|" + "---|" * len(SHOWN)]
    for label, acc in means:
        lines.append(f"| {label} | " + " | ".join(f"{acc[t - 1]:.2f}" for t in SHOWN) + " |")
lines += ["", "<!-- reading -->", ""]

page = os.path.join(here, "truncated-bptt.md")
reading = ""
if os.path.exists(page):
    old = open(page).read()
    if "<!-- reading -->" in old:
        reading = old.split("<!-- reading -->", 1)[1].lstrip("\n")
open(page, "w").write("\n".join(lines) + reading)

with open(os.path.join(here, "truncated-bptt.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["window", "t", "accuracy", "wall_seconds", "peak_rss_mb"])
    for key, label, window, acc, seconds, rss, _ in results:
        for t, a in enumerate(acc, 1):
            w.writerow([window or "full", t, f"{a:.2f}", f"{seconds:.0f}", f"{rss:.0f}"])
print("wrote", page)
