#!/usr/bin/env bash
# MD-SNN on MNIST, the rest of issue #9 item 4 (docs/results/md-snn-kd-mnist.md): membrane KD on and off
# at two probe granularities, crossbar-inference accuracy with 4- and 8-bit ADCs, and versatile vs
# one-teacher-per-timestep training cost. Needs the main job's teacher and the bit-width runs
# (regenerate-mdsnn-bits.sh) for the conv-wise row; runs the demo first when its teacher is missing.
#
#   bash docs/results/regenerate-mdsnn-kd.sh             # everything (~45 min on 2 cores)
#   bash docs/results/regenerate-mdsnn-kd.sh accuracy    # granularity and crossbar runs only
#   bash docs/results/regenerate-mdsnn-kd.sh cost        # versatile vs per-timestep only (time it on a quiet machine)
#   bash docs/results/regenerate-mdsnn-kd.sh full        # the 4-bit student on the teacher's full budget (~20 min)
#   KEEP=1 ...                                           # skip runs whose report.json exists
#   SNNSPEC_CLI="dotnet /path/to/snnspec.dll" ...        # run a copied build
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
root=runs/mdsnn
source docs/results/runkit.sh
[ -f snnspec-demo/teacher.safetensors ] || "${cli[@]}" demo

if [[ $what == all || $what == accuracy ]]; then
    # The alone and conv-wise rows come from regenerate-mdsnn-bits.sh; run here when missing.
    for r in alone distilled; do [[ -f $root/mdsnn-b4-$r/report.json ]] || run "mdsnn-b4-$r"; done
    run mdsnn-b4-nomembrane
    run mdsnn-b4-stagewise
    # A second seed of the four granularity rows.
    for r in alone nomembrane distilled stagewise; do run "mdsnn-b4-$r-s2"; done
    run mdsnn-xbar-b4
    # The integer student through the crossbar datapath: ideal, 8-bit and 4-bit ADCs, 64-row
    # crossbars with 4-bit cells, all 10000 test images.
    "${cli[@]}" eval "$root/mdsnn-xbar-b4/student.safetensors" --dataset mnist --test 10000 \
        --crossbar-adc ideal 8 4 --json "$root/mdsnn-xbar-b4.crossbar.json" >"$root/mdsnn-xbar-b4.eval.log" 2>&1 ||
        { tail -20 "$root/mdsnn-xbar-b4.eval.log"; exit 1; }
    # The same with each layer's ADC full scale calibrated to cover 99 % / 99.9 % of its partial sums
    # on the first 512 training images.
    for p in 0.99 0.999; do
        "${cli[@]}" eval "$root/mdsnn-xbar-b4/student.safetensors" --dataset mnist --test 10000 \
            --crossbar-adc 8 4 --adc-coverage $p --calibration-images 512 \
            --json "$root/mdsnn-xbar-b4.calibrated-$p.json" >"$root/mdsnn-xbar-b4.calibrated-$p.log" 2>&1 ||
            { tail -20 "$root/mdsnn-xbar-b4.calibrated-$p.log"; exit 1; }
    done
    # Device variation: the 8-bit ADC at 99.9 % coverage on chips whose cells vary by σ = 0.1 and
    # 0.2, three chips (seeds) each.
    for s in 0.1 0.2; do
        "${cli[@]}" eval "$root/mdsnn-xbar-b4/student.safetensors" --dataset mnist --test 10000 \
            --crossbar-adc 8 --adc-coverage 0.999 --calibration-images 512 --variation $s --variation-seeds 0 1 2 \
            --json "$root/mdsnn-xbar-b4.variation-$s.json" >"$root/mdsnn-xbar-b4.variation-$s.log" 2>&1 ||
            { tail -20 "$root/mdsnn-xbar-b4.variation-$s.log"; exit 1; }
    done
fi
if [[ $what == all || $what == cost ]]; then
    run mdsnn-versatile
    for t in 1 2 3 4; do run "mdsnn-pertimestep-t$t"; done
    dotnet fsi Examples/experiments/versatile-cost.fsx >"$root/versatile-cost.json"
fi
if [[ $what == all || $what == full ]]; then
    run mdsnn-b4-full
fi
python3 docs/results/mdsnn_kd_page.py "$root"
