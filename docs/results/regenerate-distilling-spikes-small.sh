#!/usr/bin/env bash
# Distilling Spikes, MNIST smaller-student protocol (docs/results/distilling-spikes.md, its section of
# that name): a width-1 teacher trained alone for 6 epochs and a width-0.25 student, both on the first
# 50000 training images (the last 10000 are the validation split); the student alone and distilled
# with every spike loss at × 0.25, 1 and 4 of its per-element weights. The page picks the factor per
# loss on the validation split (each saved student evaluated on it at the end). Two lanes run at a time
# (2 cores).
#
#   bash docs/results/regenerate-distilling-spikes-small.sh
#   KEEP=1 / SNNSPEC_CLI=…   # as in regenerate-distilling-spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/ds-small
source docs/results/runkit.sh

lanes() {
    ("$@" 0) &
    local a=$!
    ("$@" 1) &
    local b=$!
    wait $a && wait $b
}
first() { if [[ $1 == 0 ]]; then run ds-mnist-sv-teacher; else run ds-mnist-sv-alone; fi; }
students() {
    local i=0
    for r in kl combined l1 l2 sl1 sl2; do
        for f in w1 w4 w025; do
            if ((i++ % 2 == $1)); then run "ds-mnist-sv-$r-$f"; fi
        done
    done
}
seconds() {
    local i=0
    for name in ds-mnist-sv-alone-s3 ds-mnist-sv-{l1-w1,l2-w1,kl-w1,sl1-w4,sl2-w1,combined-w1}-s3; do
        if ((i++ % 2 == $1)); then run "$name"; fi
    done
}
lanes first
lanes students
# A second seed (3) of the student alone and of each loss at the factor seed 2's validation chose.
lanes seconds
# Each saved student's accuracy on the 10000 validation images, unrounded (the training log prints it
# to 0.1 %): the page picks the factor by it.
for name in ds-mnist-sv-alone ds-mnist-sv-{kl,combined,l1,l2,sl1,sl2}-{w025,w1,w4}; do
    "${cli[@]}" eval "$root/$name/student.safetensors" --dataset mnist --train 60000 --validation 10000 \
        --json "$root/$name.validation.json" >"$root/$name.validation.log" 2>&1 || { tail -20 "$root/$name.validation.log"; exit 1; }
done
if [[ -f runs/ds/commit ]]; then python3 docs/results/distilling_spikes_page.py runs/ds; fi
