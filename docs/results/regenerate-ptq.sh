#!/usr/bin/env bash
# Post-training quantization (docs/results/ptq.md): three trained full-precision SNNs of the other
# pages quantized without training at 2, 4 and 8 bits (MINT preset), their weight scales set either
# by MINT's starting scale 2·mean|W'|/√Q (--scales lsq, the QAT initialisation) or by the
# post-training search (--scales search, QuantTrajectory.fitScales), both calibrated on the first
# 128 training images; every model evaluated on the whole test set.
#
#   bash docs/results/regenerate-ptq.sh      # about 10 min on 2 cores; needs the other pages' runs
#   SNNSPEC_CLI=…                            # a published CLI instead of dotnet run
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/ptq
mkdir -p "$root"
if [[ -z "${SNNSPEC_CLI:-}" ]]; then
    dotnet build Cli -c Release >"$root/build.log" 2>&1 || { tail -30 "$root/build.log"; exit 1; }
fi
git rev-parse --short HEAD >"$root/commit"
read -r -a cli <<<"${SNNSPEC_CLI:-dotnet run -c Release --project Cli --no-build --}"

# name, checkpoint (written by regenerate-mdsnn-kd.sh, regenerate-distilling-spikes-small.sh and
# regenerate-distilling-spikes-strong.sh).
models=(
    "mdsnn-teacher runs/mdsnn/mdsnn-versatile/teacher.safetensors"
    "ds-mnist-teacher runs/ds-small/ds-mnist-sv-teacher/student.safetensors"
    "ds-fmnist-teacher runs/ds-strong/ds-fmnist-long-teacher/student.safetensors"
)
for entry in "${models[@]}"; do
    read -r name ckpt <<<"$entry"
    [[ -f $ckpt ]] || { echo "missing $ckpt: run the page that trains it first"; exit 1; }
    echo "== $name ($(date -u +%H:%M:%S) UTC)"
    "${cli[@]}" eval "$ckpt" --test 10000 --json "$root/$name.fp.json" >"$root/$name.fp.log" 2>&1
    for bits in 2 4 8; do
        for scales in lsq search; do
            q=$root/$name.q$bits-$scales.safetensors
            start=$(date +%s.%N)
            "${cli[@]}" quantize "$ckpt" --bits "$bits" --scales "$scales" --out "$q" >"$root/$name.q$bits-$scales.log" 2>&1
            echo "$(date +%s.%N) - $start" | bc >"$root/$name.q$bits-$scales.seconds"
            "${cli[@]}" eval "$q" --test 10000 --json "$root/$name.q$bits-$scales.json" >>"$root/$name.q$bits-$scales.log" 2>&1
        done
    done
done
python3 docs/results/ptq_page.py "$root"
