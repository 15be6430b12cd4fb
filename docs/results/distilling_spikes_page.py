#!/usr/bin/env python3
"""Writes docs/results/distilling-spikes.{md,csv} from the runs of regenerate-distilling-spikes.sh.

Usage: distilling_spikes_page.py <runs-dir>   (standard library only; a dataset whose runs are
missing is left out of the page)
"""
import csv
import os
import sys

import pagekit
from pagekit import cpu

runs = sys.argv[1]
run_commit = pagekit.commit(os.path.join(runs, "commit"))
here = os.path.dirname(os.path.abspath(__file__))

# The poster's numbers (methods.md §5d).
PAPER = {
    "mnist": {"teacher": 98.35, "assistant": 98.17, "student": 98.00, "l1": 96.20, "l2": 96.80, "kl": 97.36,
              "sl1": 96.09, "sl2": 96.29, "combined": 97.46, "t-ta": 98.36, "t-ta-s": 97.56},
    "fmnist": {"teacher": 89.72, "assistant": 89.40, "student": 88.64, "l1": 86.99, "l2": 87.50, "kl": 88.15,
               "sl1": 87.28, "sl2": 87.08, "combined": 88.30, "t-ta": 89.82, "t-ta-s": 88.74},
}
NAMES = {"mnist": "MNIST", "fmnist": "Fashion-MNIST"}
BASELINES = [("teacher-alone", "teacher", "teacher (width 1) alone"),
             ("assistant-alone", "assistant", "assistant (width 0.75) alone"),
             ("student-alone", "student", "student (width 0.5) alone")]
DISTILLED = [("l1", "full L1"), ("l2", "full L2"), ("kl", "KL on counts"), ("sl1", "sliding L1"),
             ("sl2", "sliding L2"), ("combined", "combined (proposed)")]
STAGES = [("t-ta", "T → TA (assistant)"), ("combined", "T → S (student)"), ("t-ta-s", "T → TA → S (student)")]




def load(d, row):
    r = pagekit.run(runs, f"ds-{d}-{row}")
    return r and dict(r, acc=r["acc"]["student"])


def pct(x):
    return f"{x:.2f}"


lines = [
    "# Distilling Spikes on MNIST and Fashion-MNIST",
    "",
    "Issue #9 item 2. Distilling Spikes (Kushawaha et al., ICPR 2020; docs/methods/distilling-spikes.md)",
    "distils one SNN into a smaller one through their **output spike trains**, the spike activation",
    "tensor [T, B, 10]. Every model here is a ConvNet SNN (conv–BN–LIF ×2 with max pools, fc–LIF, fc)",
    "whose classifier feeds a spiking population `out`, at T = 4 with LIF neurons and direct input",
    "encoding. The prediction is the class with the most output spikes. Widths: teacher 1 (32/64/128",
    "channels/units), assistant 0.75, student 0.5 (16/32/64).",
    "The poster gives neither architectures nor T, Δ or loss weights (methods.md §5c, §7.6); ours are",
    "our choice, fixed before any run and not tuned (the follow-up rows excepted, as marked).",
    "",
    "- Training: every model of a dataset gets the same budget, 2 (MNIST) or 3 (Fashion-MNIST) epochs",
    "  over 58000 training images, batches of 64, Adam 5e-3 with a cosine schedule. Models trained alone",
    "  use CE on their spike counts",
    "  (`ce` term, `readout: counts`); each distilled row adds one spike loss at weight 1 to that CE",
    "  (`spikes` term, Δ = 2, τ = 1, raw windows). The combined row weighs all five components and the",
    "  CE equally. T → TA → S uses the combined loss in both stages.",
    "- Model selection: the best epoch on 2000 validation images (the last 2000 of the training split);",
    "  accuracy on all 10000 test images.",
    "- Seeds: teacher 0, assistant 1, student 2 (initialisation and training).",
    "- Regenerate: `bash docs/results/regenerate-distilling-spikes.sh` (spec files",
    "  `Examples/specs/results/ds-*.json`; e.g. `dotnet run -c Release --project Cli -- distill",
    "  Examples/specs/results/ds-mnist-kl.json`).",
]
csv_rows = []
base_teacher = {}
verdicts = []
total = 0.0
for d in ("mnist", "fmnist"):
    base = {key: load(d, row) for row, key, _ in BASELINES}
    dist = {row: load(d, row) for row, _ in DISTILLED}
    stages = {row: load(d, row) for row, _ in STAGES}
    if any(v is None for v in list(base.values()) + list(dist.values()) + list(stages.values())):
        continue
    paper = PAPER[d]
    base_teacher[d] = base["teacher"]["acc"][-1]
    for r in list(base.values()) + list(dist.values()) + [stages["t-ta"], stages["t-ta-s"]]:
        total += r["seconds"]
    lines += ["", f"## {NAMES[d]}", "", "Test accuracy (%) at T = 4 (t = 1…3: the same run read after t steps, in the CSV).", "",
              "| model | ours | poster | run (wall time) |", "|---|---|---|---|"]
    for row, key, label in BASELINES:
        r = base[key]
        lines.append(f"| {label} | {pct(r['acc'][-1])} | {pct(paper[key])} | `{r['name']}` ({r['seconds']:.0f} s) |")
        csv_rows.append((d, r["name"], label, r["acc"], paper[key], r["seconds"]))
    lines += ["", "Student distilled from the teacher, by spike loss (each with the student's own CE):", "",
              "| loss | ours | poster | above our student alone | at or above the poster's teacher | run (wall time) |",
              "|---|---|---|---|---|---|"]
    alone = base["student"]["acc"][-1]
    for row, label in DISTILLED:
        r = dist[row]
        a = r["acc"][-1]
        above_alone = a > alone
        above_teacher = a >= paper["teacher"]
        verdicts.append((NAMES[d], label, above_alone and above_teacher))
        lines.append(f"| {label} | {pct(a)} | {pct(paper[row])} | {'yes' if above_alone else 'no'} ({a - alone:+.2f}) | "
                     f"{'yes' if above_teacher else 'no'} ({a - paper['teacher']:+.2f}) | `{r['name']}` ({r['seconds']:.0f} s) |")
        csv_rows.append((d, r["name"], label, r["acc"], paper[row], r["seconds"]))
    lines += ["", "Multi-stage (combined loss):", "", "| path | ours | poster | run |", "|---|---|---|---|"]
    for row, label in STAGES:
        r = stages[row]
        lines.append(f"| {label} | {pct(r['acc'][-1])} | {pct(paper[row])} | `{r['name']}` |")
        if row != "combined":
            csv_rows.append((d, r["name"], label, r["acc"], paper[row], r["seconds"]))
    r = stages["t-ta-s"]
    a = r["acc"][-1]
    verdicts.append((NAMES[d], "T → TA → S", a > alone and a >= paper["teacher"]))

    second = {row: load(d, row + "-s3") for row in ("student-alone", "kl", "combined")}
    if all(second.values()):
        first = {"student-alone": base["student"], "kl": dist["kl"], "combined": dist["combined"]}
        lines += ["", "A second seed (3, initialisation and training) for the student alone and the two losses",
                  "the poster ranks best, at T = 4:", "",
                  "| student | seed 2 | seed 3 | mean |", "|---|---|---|---|"]
        for row, label in (("student-alone", "alone"), ("kl", "KL on counts"), ("combined", "combined (proposed)")):
            a2, a3 = first[row]["acc"][-1], second[row]["acc"][-1]
            lines.append(f"| {label} | {pct(a2)} | {pct(a3)} | {pct((a2 + a3) / 2)} |")
            csv_rows.append((d, second[row]["name"], label + " (seed 3)", second[row]["acc"], paper.get(
                "student" if row == "student-alone" else row), second[row]["seconds"]))

    follow = [(row, label, load(d, row)) for row, label in (
        ("combined-mean", "combined, per-element weights (L1, L2 × 1/40; sliding × 1/30; KL, CE × 1)"),
        ("combined-mean-s3", "the same, seed 3"),
        ("kl-tau4", "KL on counts at τ = 4, plus CE"))]
    follow = [(row, label, r) for row, label, r in follow if r]
    if follow:
        lines += ["", "Follow-up runs, chosen after the table above (same budget; seed 2 unless noted), not counted in",
                  "the goal below:", "",
                  "| loss | ours | above our student alone | at or above the poster's teacher | run (wall time) |",
                  "|---|---|---|---|---|"]
        for row, label, r in follow:
            a = r["acc"][-1]
            lines.append(f"| {label} | {pct(a)} | {'yes' if a > alone else 'no'} ({a - alone:+.2f}) | "
                         f"{'yes' if a >= paper['teacher'] else 'no'} ({a - paper['teacher']:+.2f}) | "
                         f"`{r['name']}` ({r['seconds']:.0f} s) |")
            csv_rows.append((d, r["name"], label, r["acc"], "", r["seconds"]))

# The strong-teacher protocol (regenerate-distilling-spikes-strong.sh): its runs live beside these.
strong_runs = os.path.join(os.path.dirname(os.path.abspath(runs)), "ds-strong")
strong_verdicts = []
strong_total = 0.0
STRONG = [("pe-l1", "full L1 / 40"), ("pe-l2", "full L2 / 40"), ("pe-kl", "KL on counts"),
          ("pe-sl1", "sliding L1 / 30"), ("pe-sl2", "sliding L2 / 30"), ("pe-combined", "combined, per-element weights"),
          ("pe-t-ta-s", "T → TA → S (combined, per-element)")]
strong_sections = []
for d in ("mnist", "fmnist"):
    teacher = pagekit.run(strong_runs, f"ds-{d}-long-teacher")
    alone = load(d, "student-alone")
    rows = [(row, label, pagekit.run(strong_runs, f"ds-{d}-{row}")) for row, label in STRONG]
    assistant = pagekit.run(strong_runs, f"ds-{d}-pe-t-ta")
    if teacher is None or alone is None or any(r is None for _, _, r in rows):
        continue
    paper = PAPER[d]
    a_alone = alone["acc"][-1]
    t_acc = teacher["acc"]["student"]
    strong_total += teacher["seconds"] + sum(r["seconds"] for _, _, r in rows) + (assistant["seconds"] if assistant else 0)
    sec = ["", f"### {NAMES[d]}", "",
           f"Teacher trained alone for {'6' if d == 'mnist' else '9'} epochs: **{pct(t_acc[-1])}** "
           f"(`{teacher['name']}`, {teacher['seconds']:.0f} s), against {pct(base_teacher[d])} on the students' budget. "
           f"Student alone (first protocol): {pct(a_alone)}.", ""]
    if assistant:
        sec[-1:] = [f"Assistant distilled from it (T → TA, combined at per-element weights): "
                    f"{pct(assistant['acc']['student'][-1])} (`{assistant['name']}`).", ""]
        csv_rows.append((d, assistant["name"], "strong: T → TA (assistant)", assistant["acc"]["student"], paper["t-ta"], assistant["seconds"]))
    csv_rows.append((d, teacher["name"], "strong: teacher alone, 3× budget", t_acc, paper["teacher"], teacher["seconds"]))
    sec += ["| student loss (+ CE) | ours | poster | above our student alone | at or above the poster's teacher | run (wall time) |",
            "|---|---|---|---|---|---|"]
    for row, label, r in rows:
        a = r["acc"]["student"][-1]
        ok_alone, ok_teacher = a > a_alone, a >= paper["teacher"]
        strong_verdicts.append((NAMES[d], label, ok_alone and ok_teacher))
        key = row[3:]
        sec.append(f"| {label} | {pct(a)} | {pct(paper[key])} | {'yes' if ok_alone else 'no'} ({a - a_alone:+.2f}) | "
                   f"{'yes' if ok_teacher else 'no'} ({a - paper['teacher']:+.2f}) | `{r['name']}` ({r['seconds']:.0f} s) |")
        csv_rows.append((d, r["name"], "strong: " + label, r["acc"]["student"], paper[key], r["seconds"]))
    second = [(row, label, r, pagekit.run(strong_runs, f"ds-{d}-{row}-s3")) for row, label, r in rows]
    second = [x for x in second if x[3]]
    alone3 = load(d, "student-alone-s3")
    if alone3 is None:
        r3 = pagekit.run(strong_runs, f"ds-{d}-student-alone-s3")
        alone3 = r3 and dict(r3, acc=r3["acc"]["student"])
    if second and alone3:
        a3 = alone3["acc"][-1]
        sec += ["", f"A second seed (3) of the rows at or near the goal on seed 2 (student alone: {pct(a_alone)} / {pct(a3)}"
                + (f", seed 3 in `{alone3['name']}`" if alone3["name"].startswith("ds-mnist") else "") + "):", "",
                "| student loss (+ CE) | seed 2 | seed 3 | mean | mean − student alone's mean |", "|---|---|---|---|---|"]
        for row, label, r2, r3 in second:
            v2, v3 = r2["acc"]["student"][-1], r3["acc"]["student"][-1]
            sec.append(f"| {label} | {pct(v2)} | {pct(v3)} | {pct((v2 + v3) / 2)} | {(v2 + v3) / 2 - (a_alone + a3) / 2:+.2f} |")
            csv_rows.append((d, r3["name"], "strong: " + label + " (seed 3)", r3["acc"]["student"], paper[row[3:]], r3["seconds"]))
    strong_sections += sec
if strong_sections:
    met_strong = sum(ok for _, _, ok in strong_verdicts)
    lines += ["", "## Strong-teacher protocol", "",
              "A second protocol, fixed after the first tables and before any of its runs: the teacher trains",
              "alone for three times the students' budget (6 epochs on MNIST, 9 on Fashion-MNIST, otherwise as",
              "above), and every spike loss enters at per-element weight (L1, L2 ÷ 40 elements of a sample's",
              "[4, 10] spike tensor; sliding L1, L2 ÷ 30 windows; KL × 1), plus the student's CE, in both stages",
              "of T → TA → S. Students, seeds, budget and selection are the first protocol's; the students",
              "alone are the first protocol's runs. Regenerate: `bash docs/results/regenerate-distilling-spikes-strong.sh`",
              f"(spec files `Examples/specs/results/ds-*-long-teacher.json`, `ds-*-pe-*.json`), commit {pagekit.commit(os.path.join(strong_runs, 'commit'))}."]
    lines += strong_sections
    lines += ["", f"Goal, strong-teacher protocol: **{met_strong} of {len(strong_verdicts)}** distilled students meet it "
              f"({', '.join(f'{ds} {label}' for ds, label, ok in strong_verdicts if ok) or 'none'}).",
              f"Wall time {strong_total / 60:.1f} min."]

# MNIST with three times the student budget (6 epochs, seed 2), decided after the MNIST tie above.
E6 = [("student-alone", "student alone"), ("pe-kl", "KL on counts"), ("pe-combined", "combined, per-element weights")]
e6 = {row: pagekit.run(strong_runs, f"ds-mnist-e6-{row}") for row, _ in E6}
if all(e6.values()):
    a6 = e6["student-alone"]["acc"]["student"][-1]
    lines += ["", "## MNIST with three times the student budget", "",
              "Decided after the strong-teacher protocol's MNIST tie: the student alone, KL and combined rows again,",
              "with everything as there except 6 student epochs instead of 2 (seed 2; the teacher is the same",
              "6-epoch `ds-mnist-long-teacher`). Regenerate: the last lines of",
              "`bash docs/results/regenerate-distilling-spikes-strong.sh` (spec files `ds-mnist-e6-*.json`).", "",
              "| student loss (+ CE) | t = 1 | t = 2 | t = 3 | t = 4 | − student alone at t = 4 | goal | wall time |",
              "|---|---|---|---|---|---|---|---|"]
    for row, label in E6:
        r = e6[row]
        acc = r["acc"]["student"]
        if row == "student-alone":
            diff, goal = "—", "—"
        else:
            ok = acc[-1] > a6 and acc[-1] >= PAPER["mnist"]["teacher"]
            diff, goal = f"{acc[-1] - a6:+.2f}", ("met" if ok else "not met")
        lines.append(f"| {label} | " + " | ".join(pct(a) for a in acc) + f" | {diff} | {goal} | {r['seconds'] / 60:.0f} min |")
        csv_rows.append(("mnist", r["name"], "6 epochs: " + label, acc, PAPER["mnist"]["student" if row == "student-alone" else row[3:]], r["seconds"]))

# Spike-loss weight chosen on validation (regenerate-distilling-spikes-weight.sh), decided after the
# sections above: every strong-teacher spike loss at × 0.25, 1 and 4; the validation split picks one.
weight_runs = os.path.join(os.path.dirname(os.path.abspath(runs)), "ds-weight")
FACTORS = [("w025", 0.25), ("", 1.0), ("w4", 4.0)]
weight_verdicts = []
weight_sections = []
seconds = []
for d in ("mnist", "fmnist"):
    alone = load(d, "student-alone")
    if alone is None:
        continue
    a_alone = alone["acc"][-1]
    table = []
    for row, label in STRONG[:6]:
        key = row[3:]
        found = []
        for tag, factor in FACTORS:
            root, name = (strong_runs, f"ds-{d}-{row}") if tag == "" else (weight_runs, f"ds-{d}-vw-{key}-{tag}")
            r = pagekit.run(root, name)
            v = pagekit.validation(root, name)
            if r is None or not v:
                break
            found.append((factor, r, max(v)))
        if len(found) == len(FACTORS):
            table.append((label, key, found))
    if len(table) < 6:
        continue
    sec = ["", f"### {NAMES[d]}", "",
           f"Student alone (first protocol): {pct(a_alone)}. Validation accuracy of the saved epoch (%, 2000 images) and "
           "test accuracy at t = 4 (%) per factor; the chosen factor's test accuracy is the row's result.", "",
           "| student loss (+ CE) | validation × 0.25 / 1 / 4 | test × 0.25 / 1 / 4 | chosen | result | − student alone | goal |",
           "|---|---|---|---|---|---|---|"]
    for label, key, found in table:
        # Best validation; ties go to × 1 (the strong-teacher protocol's weight), then to the smaller factor.
        best = max(found, key=lambda f: (f[2], f[0] == 1.0, -f[0]))
        factor, r, _ = best
        a = r["acc"]["student"][-1]
        ok = a > a_alone and a >= PAPER[d]["teacher"]
        weight_verdicts.append((NAMES[d], label, ok))
        sec.append(f"| {label} | {' / '.join(f'{v:.1f}' for _, _, v in found)} | "
                   f"{' / '.join(pct(x['acc']['student'][-1]) for _, x, _ in found)} | × {factor:g} | {pct(a)} | "
                   f"{a - a_alone:+.2f} | {'met' if ok else 'not met'} |")
        for f_, x, _ in found:
            if f_ != 1.0:
                csv_rows.append((d, x["name"], f"weight × {f_:g}: {label}", x["acc"]["student"], PAPER[d][key], x["seconds"]))
        if factor == 4.0:
            second = pagekit.run(weight_runs, f"ds-{d}-vw-{key}-w4-s3")
            if second:
                seconds.append((label, key, a, second))
    alone3 = load(d, "student-alone-s3") or pagekit.run(strong_runs, f"ds-{d}-student-alone-s3")
    if seconds and alone3:
        a3 = alone3["acc"][-1] if isinstance(alone3["acc"], list) else alone3["acc"]["student"][-1]
        alone4 = pagekit.run(weight_runs, f"ds-{d}-student-alone-s4")
        a4 = alone4 and alone4["acc"]["student"][-1]
        fours = {key: pagekit.run(weight_runs, f"ds-{d}-vw-{key}-w4-s4") for _, key, _, _ in seconds} if a4 else {}
        sec += ["", f"More seeds of the rows chosen at × 4 (student alone: {pct(a_alone)} / {pct(a3)}"
                + (f" / {pct(a4)}, seed 4 in `{alone4['name']}`" if a4 else "") + "; the mean of a row and of the student alone"
                " over the seeds the row has):", "",
                "| student loss (+ CE), × 4 | seed 2 | seed 3 | seed 4 | mean | mean − student alone's mean |",
                "|---|---|---|---|---|---|"]
        for label, key, v2, r3 in seconds:
            vs = [v2, r3["acc"]["student"][-1]]
            alones = [a_alone, a3]
            r4 = fours.get(key)
            if r4:
                vs.append(r4["acc"]["student"][-1])
                alones.append(a4)
                csv_rows.append((d, r4["name"], f"weight × 4: {label} (seed 4)", r4["acc"]["student"], PAPER[d][key], r4["seconds"]))
            mean = sum(vs) / len(vs)
            sec.append(f"| {label} | {pct(vs[0])} | {pct(vs[1])} | {pct(vs[2]) if r4 else '—'} | {pct(mean)} | "
                       f"{mean - sum(alones) / len(alones):+.2f} |")
            csv_rows.append((d, r3["name"], f"weight × 4: {label} (seed 3)", r3["acc"]["student"], PAPER[d][key], r3["seconds"]))
        if a4:
            csv_rows.append((d, alone4["name"], "student alone (seed 4)", alone4["acc"]["student"], PAPER[d]["student"], alone4["seconds"]))
    seconds.clear()
    weight_sections += sec
if weight_sections:
    lines += ["", "## Spike-loss weight chosen on validation", "",
              "Decided after the sections above, before any of its runs: every spike loss of the strong-teacher",
              "protocol (each single loss and the combined one; same teacher, student, seed 2 and budget) again with",
              "all its spike-loss weights times 0.25 and times 4, the CE staying at 1. Per loss and dataset, the",
              "validation split (the last 2000 training images) picks the factor among 0.25, 1 (the strong-teacher",
              "run) and 4 by the validation accuracy of the saved epoch (ties go to 1, then to the smaller factor);",
              "the test set is read only for the chosen run's result. Regenerate:",
              "`bash docs/results/regenerate-distilling-spikes-weight.sh` (spec files `ds-*-vw-*.json`), commit "
              f"{pagekit.commit(os.path.join(weight_runs, 'commit'))}."]
    lines += weight_sections
    lines += ["", f"Goal, weight chosen on validation: **{sum(ok for _, _, ok in weight_verdicts)} of {len(weight_verdicts)}** "
              f"distilled students meet it ({', '.join(f'{ds} {label}' for ds, label, ok in weight_verdicts if ok) or 'none'})."]

# MNIST, smaller-student protocol: a width-0.25 student, 10000 validation images.
small_runs = os.path.join(os.path.dirname(os.path.abspath(runs)), "ds-small")
small_teacher = pagekit.run(small_runs, "ds-mnist-sv-teacher")
small_alone = pagekit.run(small_runs, "ds-mnist-sv-alone")
small_verdicts = []
small_table = []
for row, label in STRONG[:6]:
    key = row[3:]
    found = []
    for tag, factor in (("w025", 0.25), ("w1", 1.0), ("w4", 4.0)):
        name = f"ds-mnist-sv-{key}-{tag}"
        r, v = pagekit.run(small_runs, name), pagekit.validation_exact(small_runs, name)
        if r is None or v is None:
            break
        found.append((factor, r, v))
    if len(found) == 3:
        small_table.append((label, key, found))
if small_teacher and small_alone and len(small_table) == 6:
    a_alone = small_alone["acc"]["student"][-1]
    v_alone = pagekit.validation_exact(small_runs, "ds-mnist-sv-alone")
    lines += ["", "## MNIST with a smaller student and a larger validation split", "",
              "Decided after the sections above, before any of its runs. On MNIST the width-0.5 student alone came within",
              "0.42 points of the 6-epoch teacher, and 2000 validation images could not tell the spike-loss weights",
              "apart (all eighteen runs within six images). This protocol halves the student again and holds out",
              "five times as many validation images:",
              "",
              "- teacher: width 1, trained alone for 6 epochs (seed 0); student: width 0.25 (8/16/32",
              "  channels/units), 2 epochs (seed 2); both on the first 50000 training images, the last 10000 are",
              "  the validation split; otherwise as the strong-teacher protocol (CE on spike counts, Adam 5e-3,",
              "  cosine schedule, batches of 64, T = 4);",
              "- every spike loss at × 0.25, 1 and 4 of its per-element weight (CE at 1). Each saved student is",
              "  evaluated on all 10000 validation images, and that accuracy picks the factor per loss (ties go",
              "  to × 1, then to the smaller factor); the test set is read only for the chosen run's result.",
              "",
              f"Teacher: **{pct(small_teacher['acc']['student'][-1])}** on the test set (`ds-mnist-sv-teacher`, "
              f"{small_teacher['seconds'] / 60:.0f} min). Student alone: **{pct(a_alone)}** "
              f"(validation {v_alone:.2f}; `ds-mnist-sv-alone`). Regenerate: "
              "`bash docs/results/regenerate-distilling-spikes-small.sh` (spec files `ds-mnist-sv-*.json`), commit "
              f"{pagekit.commit(os.path.join(small_runs, 'commit'))}.", "",
              "| student loss (+ CE) | validation × 0.25 / 1 / 4 | test × 0.25 / 1 / 4 | chosen | result | − student alone | goal |",
              "|---|---|---|---|---|---|---|"]
    csv_rows.append(("mnist", small_teacher["name"], "smaller-student protocol: teacher (6 epochs, 50000 images)",
                     small_teacher["acc"]["student"], PAPER["mnist"]["teacher"], small_teacher["seconds"]))
    csv_rows.append(("mnist", small_alone["name"], "smaller-student protocol: student (width 0.25) alone",
                     small_alone["acc"]["student"], PAPER["mnist"]["student"], small_alone["seconds"]))
    for label, key, found in small_table:
        factor, r, _ = max(found, key=lambda f: (round(f[2], 4), f[0] == 1.0, -f[0]))
        a = r["acc"]["student"][-1]
        ok = a > a_alone and a >= PAPER["mnist"]["teacher"]
        small_verdicts.append(("MNIST", label, ok))
        lines.append(f"| {label} | {' / '.join(f'{v:.2f}' for _, _, v in found)} | "
                     f"{' / '.join(pct(x['acc']['student'][-1]) for _, x, _ in found)} | × {factor:g} | {pct(a)} | "
                     f"{a - a_alone:+.2f} | {'met' if ok else 'not met'} |")
        for f_, x, _ in found:
            csv_rows.append(("mnist", x["name"], f"smaller-student protocol, weight × {f_:g}: {label}",
                             x["acc"]["student"], PAPER["mnist"][key], x["seconds"]))
    lines += ["", f"Goal, smaller-student protocol: **{sum(ok for _, _, ok in small_verdicts)} of {len(small_verdicts)}** "
              f"distilled students meet it ({', '.join(label for _, label, ok in small_verdicts if ok) or 'none'})."]
    alone_s3 = pagekit.run(small_runs, "ds-mnist-sv-alone-s3")
    chosen = [(label, key, max(found, key=lambda f: (round(f[2], 4), f[0] == 1.0, -f[0])))
              for label, key, found in small_table]
    seconds_s3 = [(label, key, factor, r, pagekit.run(small_runs, f"ds-mnist-sv-{key}-w{'025' if factor == 0.25 else f'{factor:g}'}-s3"))
                  for label, key, (factor, r, _) in chosen]
    if alone_s3 and all(r3 for *_, r3 in seconds_s3):
        b3 = alone_s3["acc"]["student"][-1]
        alone_mean = (a_alone + b3) / 2
        lines += ["", f"A second seed (3) of the student alone ({pct(b3)}) and of each loss at the factor seed 2's "
                  "validation chose; the goal read on the two-seed means:", "",
                  "| student loss (+ CE) | factor | seed 2 | seed 3 | mean | mean − student alone's mean | goal on the means |",
                  "|---|---|---|---|---|---|---|"]
        csv_rows.append(("mnist", alone_s3["name"], "smaller-student protocol: student alone (seed 3)",
                         alone_s3["acc"]["student"], PAPER["mnist"]["student"], alone_s3["seconds"]))
        for label, key, factor, r, r3 in seconds_s3:
            a2, a3 = r["acc"]["student"][-1], r3["acc"]["student"][-1]
            mean = (a2 + a3) / 2
            ok = mean > alone_mean and mean >= PAPER["mnist"]["teacher"]
            lines.append(f"| {label} | × {factor:g} | {pct(a2)} | {pct(a3)} | {pct(mean)} | {mean - alone_mean:+.2f} | "
                         f"{'met' if ok else 'not met'} |")
            csv_rows.append(("mnist", r3["name"], f"smaller-student protocol, weight × {factor:g}: {label} (seed 3)",
                             r3["acc"]["student"], PAPER["mnist"][key], r3["seconds"]))

# The fixed-factor protocol (regenerate-distilling-spikes-fixed.sh), decided after the sections above:
# every spike loss at × 4 of its per-element weight on fresh seeds, the goal read on the means; then
# T → TA → S at × 4 (runs/ds-x4-tta) on the same seeds.
base = os.path.dirname(os.path.abspath(runs))
tta_runs = os.path.join(base, "ds-x4-tta")
fixed_verdicts = []
FIXED_INTRO = {
    "fmnist": ["The validation split chose × 4 for four of the",
               "six Fashion-MNIST losses, and the two it did not choose it for (KL on counts, sliding L1) were the rows",
               "left below the goal. This protocol fixes × 4 for every loss and runs each, and the student alone, on two",
               "seeds no earlier run used (5 and 6: initialisation and training); everything else is the",
               "strong-teacher protocol's (its 9-epoch teacher, width-0.5 student, 3 epochs, 58000 training images)."],
    "mnist": ["After the Fashion-MNIST runs above met the goal for",
              "every loss, the same protocol on MNIST: every loss at × 4, the student alone, on three seeds no earlier",
              "MNIST run used (5, 6 and 7), with the strong-teacher protocol's 6-epoch teacher (99.21), width-0.5 student",
              "and 2 epochs. × 4 was not chosen on MNIST data: MNIST's 2000-image validation split could not tell the",
              "factors apart; the test readings at × 4 of the validation protocol's seed 2 (above) were seen before",
              "this protocol was fixed. Three seeds instead of two because MNIST's gains are smaller than its seed spread."],
}


def fixed_section(d, ds_name, root, seeds):
    alone = [pagekit.run(root, f"ds-{d}-x4-alone-s{s}") for s in seeds]
    rows = [(label, row[3:], [pagekit.run(root, f"ds-{d}-x4-{row[3:]}-s{s}") for s in seeds])
            for row, label in STRONG[:6]]
    if not (all(alone) and all(all(rs) for *_, rs in rows)):
        return []
    assistant = pagekit.run(tta_runs, f"ds-{d}-x4-t-ta")
    tta = [pagekit.run(tta_runs, f"ds-{d}-x4-t-ta-s-s{s}") for s in seeds]
    if assistant and all(tta):
        rows.append((STRONG[6][1], STRONG[6][0][3:], tta))
    alone_accs = [r["acc"]["student"][-1] for r in alone]
    alone_mean = sum(alone_accs) / len(alone_accs)
    ran = alone + [r for *_, rs in rows for r in rs] + ([assistant] if assistant and all(tta) else [])
    seconds = sum(r["seconds"] for r in ran)
    commits = sorted({pagekit.commit(os.path.join(root, "commit"))}
                     | ({pagekit.commit(os.path.join(tta_runs, "commit"))} if len(rows) > 6 else set()))
    seed_words = ", ".join(str(s) for s in seeds[:-1]) + f" and {seeds[-1]}"
    L = ["", f"## {ds_name} with the factor fixed, on fresh seeds", "",
         "Decided after the sections above, before any of its runs. " + FIXED_INTRO[d][0], *FIXED_INTRO[d][1:],
         f"The goal is read on the {['', '', 'two', 'three'][len(seeds)]}-seed means. Regenerate:",
         f"`bash docs/results/regenerate-distilling-spikes-fixed.sh {d}` (spec files `ds-{d}-x4-*.json`), commit "
         f"{', '.join(commits)}; wall time {seconds / 60:.0f} min summed over the {len(ran)} runs, which ran two at a time."]
    if len(rows) > 6:
        L += ["", f"The multi-stage row was added to the protocol before any of its distilled runs had finished: one assistant "
              f"(width 0.75, seed 1) distilled from the teacher with the combined loss at × 4 "
              f"(`ds-{d}-x4-t-ta`: {pct(assistant['acc']['student'][-1])} at t = 4), then the student of every seed from it, "
              "with the same loss."]
    L += ["", "| student (+ CE) | " + " | ".join(f"seed {s}" for s in seeds)
          + " | mean | − student alone's mean | goal on the means |",
          "|---|" + "---|" * len(seeds) + "---|---|---|",
          f"| alone | {' | '.join(pct(a) for a in alone_accs)} | {pct(alone_mean)} | — | — |"]
    for r in alone:
        csv_rows.append((d, r["name"], "fixed × 4, fresh seeds: student alone", r["acc"]["student"],
                         PAPER[d]["student"], r["seconds"]))
    verdicts_here = []
    for label, key, rs in rows:
        accs = [r["acc"]["student"][-1] for r in rs]
        mean = sum(accs) / len(accs)
        ok = mean > alone_mean and mean >= PAPER[d]["teacher"]
        verdicts_here.append((ds_name, label, ok))
        L.append(f"| {label} × 4 | {' | '.join(pct(a) for a in accs)} | {pct(mean)} | {mean - alone_mean:+.2f} | "
                 f"{'met' if ok else 'not met'} |")
        for r in rs:
            csv_rows.append((d, r["name"], f"fixed × 4, fresh seeds: {label}", r["acc"]["student"],
                             PAPER[d][key], r["seconds"]))
    if len(rows) > 6:
        csv_rows.append((d, assistant["name"], "fixed × 4: assistant (T → TA)", assistant["acc"]["student"],
                         PAPER[d]["t-ta"], assistant["seconds"]))
    L += ["", f"Goal, {ds_name}, factor fixed on fresh seeds: **{sum(ok for _, _, ok in verdicts_here)} of "
          f"{len(verdicts_here)}** distilled students meet it on the means "
          f"({', '.join(label for _, label, ok in verdicts_here if ok) or 'none'})."]
    fixed_verdicts.extend(verdicts_here)
    return L


lines += fixed_section("fmnist", "Fashion-MNIST", os.path.join(base, "ds-x4"), (5, 6))
lines += fixed_section("mnist", "MNIST", os.path.join(base, "ds-x4-mnist"), (5, 6, 7))

lines += ["", "## The issue's goal", "",
          "Every distilled student at or above the poster's teacher (MNIST 98.35, Fashion-MNIST 89.72) and above",
          "our own student trained alone, per protocol (seed 2; — where a protocol has no such row; the first",
          "protocol weighs the same losses by their raw sums):", "",
          "| dataset | student loss | first protocol | strong teacher | weight chosen on validation | smaller student | × 4 on fresh seeds (means) |",
          "|---|---|---|---|---|---|---|"]


def by_dataset(vs):
    out = {}
    for ds, _, ok in vs:
        out.setdefault(ds, []).append(ok)
    return out


columns = [by_dataset(v) for v in (verdicts, strong_verdicts, weight_verdicts, small_verdicts, fixed_verdicts)]
for ds in ("MNIST", "Fashion-MNIST"):
    if not any(ds in c for c in columns):
        continue
    for i, (_, label) in enumerate(STRONG):
        cells = [("**met**" if c[ds][i] else "not met") if ds in c and i < len(c[ds]) else "—" for c in columns]
        lines.append(f"| {ds} | {label} | " + " | ".join(cells) + " |")
met = sum(ok for _, _, ok in verdicts)
lines += ["", f"{met} of {len(verdicts)} distilled students meet it in the first protocol"
          + (f"; {sum(ok for _, _, ok in strong_verdicts)} of {len(strong_verdicts)} in the strong-teacher protocol"
             if strong_verdicts else "")
          + (f"; {sum(ok for _, _, ok in weight_verdicts)} of {len(weight_verdicts)} with the spike-loss weight chosen on validation"
             if weight_verdicts else "")
          + (f"; {sum(ok for _, _, ok in small_verdicts)} of {len(small_verdicts)} on MNIST with the smaller student"
             if small_verdicts else "")
          + "".join(f"; {sum(ok for _, _, ok in vs)} of {len(vs)} on {ds} with × 4 on fresh seeds"
                    for ds, vs in ((ds, [v for v in fixed_verdicts if v[0] == ds]) for ds in ("Fashion-MNIST", "MNIST")) if vs)
          + ".", "",
          f"Wall time: {total / 60:.1f} min for all runs on {os.cpu_count()} cores ({cpu()}), commit {run_commit}. Other",
          "experiments shared the cores during most runs, so per-run wall times are upper bounds.", ""]
NOTES = os.path.join(here, "distilling-spikes.notes.md")
if os.path.exists(NOTES):
    lines += [open(NOTES).read().rstrip(), ""]
open(os.path.join(here, "distilling-spikes.md"), "w").write("\n".join(lines))
with open(os.path.join(here, "distilling-spikes.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["dataset", "run", "row", "t", "test_accuracy", "poster_at_T", "wall_seconds"])
    for d, name, label, acc, paper_v, seconds in csv_rows:
        for t, a in enumerate(acc, 1):
            w.writerow([d, name, label, t, f"{a:.2f}", paper_v, f"{seconds:.1f}"])
print("wrote docs/results/distilling-spikes.md and .csv")
