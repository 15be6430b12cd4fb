#!/usr/bin/env bash
# Truncated BPTT on emulated event-MNIST at T = 16 (docs/results/truncated-bptt.md): the same
# student trained alone with full BPTT and with windows of 8, 4, 2 and 1 steps, two runs at a time,
# each run's peak RSS recorded; then the page.
#
#   bash docs/results/regenerate-truncated-bptt.sh      # about 40 min on 2 cores
#   KEEP=1 / SNNSPEC_CLI=…                               # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/tbptt
export RSS=1
source docs/results/runkit.sh

(for r in full k4 k1; do run "tbptt-$r"; done) &
a=$!
(for r in k8 k2; do run "tbptt-$r"; done) &
b=$!
wait $a && wait $b
python3 docs/results/truncated_bptt_page.py "$root"
