#!/usr/bin/env bash
# Temporal-wise KD on emulated event-MNIST (docs/results/temporal-kd-events.md): standard logit KD vs
# temporal-wise KD (paper form and reference-code form) from an ANN teacher, and the student alone.
# The first run emulates the event recordings (cached under the data cache) and trains the teacher.
#
#   bash docs/results/regenerate-temporal-kd-events.sh        # ~20 min on 2 cores
#   KEEP=1 ... / SNNSPEC_CLI="dotnet /path/to/snnspec.dll" ... # as the other regenerate scripts
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/events
mkdir -p "$root"
if [[ -z "${SNNSPEC_CLI:-}" ]]; then
    dotnet build Cli -c Release >"$root/build.log" 2>&1 || { tail -30 "$root/build.log"; exit 1; }
fi
git rev-parse --short HEAD >"$root/commit"
read -r -a cli <<<"${SNNSPEC_CLI:-dotnet run -c Release --project Cli --no-build --}"

run() {
    local name=$1 out=$root/$1
    if [[ "${KEEP:-0}" == 1 && -f $out/report.json ]]; then
        echo "== $name: kept"
        return
    fi
    echo "== $name ($(date -u +%H:%M:%S) UTC)"
    rm -rf "$out"
    local start
    start=$(date +%s.%N)
    "${cli[@]}" distill "Examples/specs/results/$name.json" --out "$out" </dev/null >"$root/$name.log" 2>&1 ||
        { tail -20 "$root/$name.log"; exit 1; }
    echo "$(date +%s.%N) - $start" | bc >"$root/$name.seconds"
    grep -E '│ (teacher|student)' "$root/$name.log" | tail -2 || true
}

# Seed 1 (tkdev-kd trains the teacher every other run loads), then seed 2.
for r in kd temporal-masked temporal-ensemble alone kd-s2 temporal-masked-s2 temporal-ensemble-s2 alone-s2; do
    run "tkdev-$r"
done
python3 docs/results/temporal_kd_events_page.py "$root"
