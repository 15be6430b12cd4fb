#!/usr/bin/env bash
# BKDSNN, smaller-student protocol (docs/results/bkdsnn-fmnist.md, its section of that name): the long
# protocol with a width-0.25 student under the long protocol's 18-epoch ANN teacher, read from its
# checkpoint (run regenerate-bkdsnn-long.sh first). The two seeds run side by side.
#
#   bash docs/results/regenerate-bkdsnn-small.sh      # about an hour on 2 cores
#   KEEP=1 / SNNSPEC_CLI=…                             # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/bkd-small
source docs/results/runkit.sh
if [[ ! -f runs/bkd-long/bkdl-wsld-s1/teacher.safetensors ]]; then
    echo "the long protocol's teacher is missing: run docs/results/regenerate-bkdsnn-long.sh first"
    exit 1
fi

lane() { for m in alone wsld bkd mixed-l015 mixed-l04 mixed-l06; do run "bkds-$m-s$1"; done; }
lane 1 &
first=$!
lane 2 &
second=$!
wait "$first"
wait "$second"
python3 docs/results/bkdsnn_long_page.py "$root"
