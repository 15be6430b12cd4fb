#!/usr/bin/env bash
# Distilling Spikes on MNIST and Fashion-MNIST (docs/results/distilling-spikes.md): teacher, assistant
# and student SNNs trained alone; the student distilled from the teacher with each spike-tensor loss
# and the combined loss; teacher → assistant → student. Spec files: Examples/specs/results/ds-*.json.
#
#   bash docs/results/regenerate-distilling-spikes.sh              # both datasets (~110 min on 2 cores)
#   bash docs/results/regenerate-distilling-spikes.sh mnist        # one dataset (mnist or fmnist)
#   KEEP=1 bash docs/results/regenerate-distilling-spikes.sh       # skip runs whose report.json exists
#   SNNSPEC_CLI="dotnet /path/to/snnspec.dll" bash ...              # run a copied build (edit the tree meanwhile)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/ds
source docs/results/runkit.sh

for d in ${1:-mnist fmnist}; do
    # The teacher first (every distilled run loads it), the assistant stage before its student.
    for r in teacher-alone assistant-alone student-alone l1 l2 kl sl1 sl2 combined t-ta t-ta-s; do
        run "ds-$d-$r"
    done
    # Follow-ups: per-element weights for the combined loss (both datasets); on Fashion-MNIST also a
    # second seed for the closest rows and KL at τ = 4.
    run "ds-$d-combined-mean"
    if [[ $d == fmnist ]]; then
        for r in student-alone-s3 kl-s3 combined-s3 combined-mean-s3 kl-tau4; do run "ds-$d-$r"; done
    fi
done
python3 docs/results/distilling_spikes_page.py "$root"
