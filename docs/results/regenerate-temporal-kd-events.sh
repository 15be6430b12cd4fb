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
source docs/results/runkit.sh

# Seed 1 (tkdev-kd trains the teacher every other run loads), then seed 2.
for r in kd temporal-masked temporal-ensemble alone kd-s2 temporal-masked-s2 temporal-ensemble-s2 alone-s2; do
    run "tkdev-$r"
done
python3 docs/results/temporal_kd_events_page.py "$root"
