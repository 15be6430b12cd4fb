#!/usr/bin/env bash
# Distilling Spikes, spike-loss weight chosen on validation (docs/results/distilling-spikes.md, its
# section of that name): every strong-teacher spike loss again with its spike-loss weights × 0.25 and
# × 4 (the × 1 runs are the strong-teacher protocol's, regenerate-distilling-spikes-strong.sh, whose
# teachers these runs read). The page picks the factor per loss on the validation split.
#
#   bash docs/results/regenerate-distilling-spikes-weight.sh          # both datasets
#   bash docs/results/regenerate-distilling-spikes-weight.sh fmnist   # one dataset (mnist or fmnist)
#   KEEP=1 / SNNSPEC_CLI=…                                             # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/ds-weight
source docs/results/runkit.sh

for d in ${1:-fmnist mnist}; do
    for r in l1 sl1 kl l2 sl2 combined; do
        for f in w4 w025; do run "ds-$d-vw-$r-$f"; done
    done
done
# A second seed (3) of the Fashion-MNIST rows the validation split chose at × 4.
if [[ " ${1:-fmnist mnist} " == *" fmnist "* ]]; then
    for r in l1 l2 sl2 combined; do run "ds-fmnist-vw-$r-w4-s3"; done
    # A third seed (4) of combined, whose two seeds disagreed, and of the student alone.
    run ds-fmnist-vw-combined-w4-s4
    run ds-fmnist-student-alone-s4
fi
if [[ -f runs/ds/commit ]]; then python3 docs/results/distilling_spikes_page.py runs/ds; fi
