#!/usr/bin/env python3
"""Writes docs/results/md-snn-mnist.{md,csv} from a demo run directory (report.json, report.csv).

Usage: demo_page.py <run-dir> <wall-seconds> <command> [<commit> [<note>]]
Standard library only; called by docs/results/regenerate.sh.
"""
import json
import os
import shutil
import sys

import pagekit
from pagekit import cpu

run_dir, wall, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
here = os.path.dirname(os.path.abspath(__file__))
report = json.load(open(os.path.join(run_dir, "report.json")))



def commit():
    return sys.argv[4] if len(sys.argv) > 4 else pagekit.commit()


lines = [
    "# MD-SNN on MNIST: a 4-bit student distilled at T = 1…4 from one FP32 teacher",
    "",
    "Produced by SnnSpec's main job on real MNIST; every number below comes from the run's",
    "`report.json` (the CSV beside this page holds all of them, histograms included).",
    "",
    f"- Command: `{command}`",
    f"- Setup: {report['subtitle']}",
    f"- Wall time: {wall / 60:.1f} min on {os.cpu_count()} cores ({cpu()}), commit {commit()}",
    "- Regenerate: `bash docs/results/regenerate.sh`",
    *([f"- Note: {sys.argv[5]}"] if len(sys.argv) > 5 else []),
    "",
    "## Test accuracy (%) at every timestep",
    "",
]
acc = report["accuracy"]
steps = acc[0]["timesteps"]
lines.append("| model | " + " | ".join(f"t = {t}" for t in steps) + " |")
lines.append("|---|" + "---|" * len(steps))
for a in acc:
    lines.append(f"| {a['name']} | " + " | ".join(f"{100 * v:.2f}" for v in a["accuracy"]) + " |")

lines += [
    "",
    "The paper (MD-SNN, methods.md §2d) reports CIFAR/N-Caltech101 figures that cannot be run here;",
    "what carries over is the claim under test: a quantized student distilled from a full-precision",
    "teacher through membrane potentials and logits recovers accuracy the same student loses when",
    "trained alone.",
    "",
    "## Crossbar estimate (SpikeSim-style, 65 nm)",
    "",
    "| model | EDAP (J·s·mm²) | TOPS/W | TOPS/mm² |",
    "|---|---|---|---|",
]
for h in report["hardware"]:
    lines.append(f"| {h['name']} | {h['edap']:.4g} | {h['tops_per_watt']:.4g} | {h['tops_per_mm2']:.4g} |")
if len(report["hardware"]) == 2:
    a, b = report["hardware"]
    lines += [
        "",
        f"Ratios FP32 / 4-bit: EDAP {a['edap'] / b['edap']:.2f}×, TOPS/W {b['tops_per_watt'] / a['tops_per_watt']:.2f}×,"
        f" TOPS/mm² {b['tops_per_mm2'] / a['tops_per_mm2']:.2f}× (the paper: 14.85× / 2.64× / 6.19× for its own network).",
    ]
lines.append("")
open(os.path.join(here, "md-snn-mnist.md"), "w").write("\n".join(lines))
shutil.copyfile(os.path.join(run_dir, "report.csv"), os.path.join(here, "md-snn-mnist.csv"))
print("wrote docs/results/md-snn-mnist.md and .csv")
