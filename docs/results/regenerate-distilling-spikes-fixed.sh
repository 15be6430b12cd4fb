#!/usr/bin/env bash
# Distilling Spikes, fixed-factor protocol (docs/results/distilling-spikes.md, its section of that name):
# every spike loss at × 4 of its per-element weight and the student alone, on fresh seeds 5 and 6, with
# the strong-teacher protocol's Fashion-MNIST teacher (regenerate-distilling-spikes-strong.sh trains it).
#
#   bash docs/results/regenerate-distilling-spikes-fixed.sh        # both seeds, one after the other
#   bash docs/results/regenerate-distilling-spikes-fixed.sh 5      # one seed (two shells: 5 and 6 at once)
#   KEEP=1 / SNNSPEC_CLI=…                                          # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/ds-x4
source docs/results/runkit.sh

for s in ${1:-5 6}; do
    run "ds-fmnist-x4-alone-s$s"
    for r in kl sl1 l1 l2 sl2 combined; do run "ds-fmnist-x4-$r-s$s"; done
done
if [[ -f runs/ds/commit ]]; then python3 docs/results/distilling_spikes_page.py runs/ds; fi
