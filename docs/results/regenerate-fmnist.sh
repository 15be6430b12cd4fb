#!/usr/bin/env bash
# Regenerates docs/results/temporal-kd-fmnist.{md,csv} and docs/results/bkdsnn-fmnist.{md,csv}
# from fresh runs on real Fashion-MNIST (spec files in Examples/specs/results/).
#
#   bash docs/results/regenerate-fmnist.sh            # both pages (~30 min on 2 cores, with xt ~37)
#   bash docs/results/regenerate-fmnist.sh tkd        # temporal-wise KD page only (trains the teacher)
#   bash docs/results/regenerate-fmnist.sh bkd        # BKDSNN page only (needs the tkd runs: teacher, student alone)
#   bash docs/results/regenerate-fmnist.sh xt         # the stronger-teacher follow-up on both pages (needs the tkd runs)
#   KEEP=1 bash docs/results/regenerate-fmnist.sh     # skip runs whose report.json already exists
#
# Runs go to runs/fmnist/<spec name>/ (the teacher, trained once by tkd-kd-s1.json, is loaded from
# runs/fmnist/tkd-kd-s1/teacher.safetensors by every other spec); each run's wall time is appended
# to runs/fmnist/timings.tsv, which the page generator reads.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
root=runs/fmnist
mkdir -p "$root"
dotnet build Cli -c Release >"$root/build.log" 2>&1 || { tail -30 "$root/build.log"; exit 1; }
git rev-parse --short HEAD >"$root/commit"

run() {
    local name=$1 spec=Examples/specs/results/$1.json out=$root/$1
    if [[ "${KEEP:-0}" == 1 && -f $out/report.json ]]; then
        echo "== $name: kept ($out/report.json exists)"
        return
    fi
    echo "== $name ($(date -u +%H:%M:%S) UTC)"
    rm -rf "$out"
    local start end
    start=$(date +%s.%N)
    dotnet run -c Release --project Cli --no-build -- distill "$spec" --out "$out" </dev/null >"$root/$name.log" 2>&1 ||
        { tail -20 "$root/$name.log"; exit 1; }
    end=$(date +%s.%N)
    printf '%s\t%s\t%s\n' "$name" "$(echo "$end - $start" | bc)" \
        "dotnet run -c Release --project Cli --no-build -- distill $spec --out $out" >>"$root/timings.tsv"
    grep -E '(teacher|student).*%' "$root/$name.log" | tail -3 || true
}

if [[ $what == all || $what == tkd ]]; then
    for s in 1 2; do
        for m in kd temporal-masked temporal-ensemble alone-twce alone-ce; do run "tkd-$m-s$s"; done
    done
    python3 docs/results/fmnist_pages.py "$root" tkd
fi
if [[ $what == all || $what == bkd ]]; then
    for s in 1 2; do
        for m in wsld bkd mixed-l015 mixed-l04 mixed-l06; do run "bkd-$m-s$s"; done
    done
    python3 docs/results/fmnist_pages.py "$root" bkd
fi
if [[ $what == all || $what == xt ]]; then
    for m in kd temporal-ensemble temporal-masked wsld bkd mixed-l015; do run "xt-$m-s1"; done
    python3 docs/results/fmnist_pages.py "$root" all
fi
