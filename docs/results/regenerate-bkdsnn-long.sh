#!/usr/bin/env bash
# BKDSNN, long protocol (docs/results/bkdsnn-fmnist.md, last part): all 60000 Fashion-MNIST training
# images (the last 2000 held out for validation), students for 6 epochs, the ANN teacher for 18.
# Two chains run side by side: the first trains the teacher (in bkdl-wsld-s1) and the seed-1
# distilled students; the second trains both students alone, waits for the teacher's checkpoint
# (written atomically when its training ends), then distils seed 2.
#
#   bash docs/results/regenerate-bkdsnn-long.sh      # about 80 min on 2 cores
#   KEEP=1 / SNNSPEC_CLI=…                            # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/bkd-long
source docs/results/runkit.sh
teacher=$root/bkdl-wsld-s1/teacher.safetensors

(for m in wsld bkd mixed-l015 mixed-l04 mixed-l06; do run "bkdl-$m-s1"; done) &
first=$!
(
    run bkdl-alone-s1
    run bkdl-alone-s2
    while [[ ! -f $teacher ]]; do
        kill -0 "$first" 2>/dev/null || { echo "the teacher run failed"; exit 1; }
        sleep 20
    done
    for m in wsld bkd mixed-l015 mixed-l04 mixed-l06; do run "bkdl-$m-s2"; done
) &
second=$!
wait "$first"
wait "$second"
python3 docs/results/bkdsnn_long_page.py "$root"
