#!/usr/bin/env bash
# Truncated BPTT on emulated event-MNIST at T = 16 (docs/results/truncated-bptt.md): the same
# student trained alone with full BPTT and with windows of 8, 4, 2 and 1 steps (seed 1; full, 4 and 2
# also seed 2), two runs at a time, each run's peak RSS recorded; then the page.
#
#   bash docs/results/regenerate-truncated-bptt.sh      # about 60 min on 2 cores
#   KEEP=1 / SNNSPEC_CLI=…                               # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/tbptt
export RSS=1
source docs/results/runkit.sh

(for r in full k4 k1 full-s2; do run "tbptt-$r"; done) &
a=$!
(for r in k8 k2 k2-s2 k4-s2; do run "tbptt-$r"; done) &
b=$!
wait $a && wait $b
python3 docs/results/truncated_bptt_page.py "$root"
