#!/usr/bin/env bash
# Temporal-wise KD plus standard KD on emulated event-MNIST (docs/results/temporal-kd-events.md, its
# section of that name): the per-step terms of both temporal-wise forms and the standard-KD terms on
# the mean logits in one loss, from the stacked-frame ANN teacher of
# regenerate-temporal-kd-events-stacked.sh (run that first), seeds 1–3 at 2 epochs and 1–5 at 6 epochs.
# Two lanes run at a time.
#
#   bash docs/results/regenerate-temporal-kd-events-hybrid.sh
#   KEEP=1 / SNNSPEC_CLI=…   # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/events-hybrid
source docs/results/runkit.sh

lane() {
    for s in "" -s2 -s3; do run "tkdev-stacked-hybrid-$1$s"; done
    # Three times the student budget (6 epochs), seeds 1–5, against tkdev-long-kd.
    for s in "" -s2 -s3 -s4 -s5; do run "tkdev-long-hybrid-$1$s"; done
}
(lane masked) &
a=$!
(lane ensemble) &
b=$!
wait $a && wait $b
if [[ -f runs/events/commit ]]; then python3 docs/results/temporal_kd_events_page.py runs/events; fi
