#!/usr/bin/env bash
# Distilling Spikes, fixed-factor protocol (docs/results/distilling-spikes.md, its sections of that name):
# every spike loss at × 4 of its per-element weight and the student alone, on fresh seeds (Fashion-MNIST
# 5 and 6, MNIST 5, 6 and 7), with the strong-teacher protocol's teacher of the dataset
# (regenerate-distilling-spikes-strong.sh trains both); then T → TA → S with the combined loss at × 4
# (one assistant per dataset, kept when it exists).
#
#   bash docs/results/regenerate-distilling-spikes-fixed.sh             # both datasets, every seed in turn
#   bash docs/results/regenerate-distilling-spikes-fixed.sh mnist 5     # one dataset and seed (two shells at once)
#   KEEP=1 / SNNSPEC_CLI=…                                               # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

for d in ${1:-fmnist mnist}; do
    case $d in
    fmnist) root=runs/ds-x4 seeds=${2:-5 6} ;;
    mnist) root=runs/ds-x4-mnist seeds=${2:-5 6 7} ;;
    *) echo "dataset '$d': expected fmnist or mnist" >&2 && exit 2 ;;
    esac
    source docs/results/runkit.sh
    for s in $seeds; do
        run "ds-$d-x4-alone-s$s"
        for r in kl sl1 l1 l2 sl2 combined; do run "ds-$d-x4-$r-s$s"; done
    done
done
# The multi-stage row: one assistant per dataset (T → TA), then the student of every seed from it.
root=runs/ds-x4-tta
for d in ${1:-fmnist mnist}; do
    case $d in
    fmnist) seeds=${2:-5 6} ;;
    mnist) seeds=${2:-5 6 7} ;;
    esac
    source docs/results/runkit.sh
    KEEP=1 run "ds-$d-x4-t-ta"
    for s in $seeds; do run "ds-$d-x4-t-ta-s-s$s"; done
done
if [[ -f runs/ds/commit ]]; then python3 docs/results/distilling_spikes_page.py runs/ds; fi
