#!/usr/bin/env bash
# Temporal-wise KD on emulated event-MNIST from an ANN teacher that reads the 4 frames concatenated
# along channels, in order (docs/results/temporal-kd-events.md, second part): standard KD, paper form
# and reference-code form, two seeds. The students alone are the first part's (regenerate-temporal-kd-events.sh).
#
#   bash docs/results/regenerate-temporal-kd-events-stacked.sh   # ~100 min on 2 cores
#   KEEP=1 ... / SNNSPEC_CLI="dotnet /path/to/snnspec.dll" ...    # as the other regenerate scripts
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/events-stacked
source docs/results/runkit.sh

# tkdev-stacked-kd trains the teacher every other run loads.
for r in kd temporal-masked temporal-ensemble kd-s2 temporal-masked-s2 temporal-ensemble-s2; do
    run "tkdev-stacked-$r"
done
# Three times the student budget (6 epochs, seed 1), the student alone included.
for r in kd temporal-masked temporal-ensemble alone; do
    run "tkdev-long-$r"
done
# More seeds, to tell the late-t difference between temporal-wise and standard KD from seed noise:
# a third seed at 2 epochs, and a second seed at 6 epochs (the student alone included).
for r in kd temporal-masked temporal-ensemble; do
    run "tkdev-stacked-$r-s3"
done
for r in kd temporal-masked temporal-ensemble alone; do
    run "tkdev-long-$r-s2"
done
# A third 6-epoch seed of standard KD and the student alone, the base of the hybrids' third seed
# (regenerate-temporal-kd-events-hybrid.sh).
for r in kd alone; do
    run "tkdev-long-$r-s3"
done
# Seeds 4 and 5 of the same, the base of the hybrids' fourth and fifth seeds.
for s in -s4 -s5; do
    for r in kd alone; do run "tkdev-long-$r$s"; done
done
if [[ -f runs/events/commit ]]; then python3 docs/results/temporal_kd_events_page.py runs/events; fi
