#!/usr/bin/env bash
# Truncated BPTT and activation checkpointing against full BPTT: the race's SnnSpec worker trains the
# same SNN with TrainConfig.Truncation = K and/or CheckpointActivations, each configuration in a fresh
# process so that its peak RSS is its own, and the table gives images/s and peak RSS as ratios to full
# BPTT measured in the same run.
# One command from the repository root:  Benchmarks/race/truncation.sh
# Env: MODEL (teacher; or student, kd, vgg9), T (16), WINDOWS ("0 8 4 2 1 0c 4c"; 0 is full BPTT, a trailing c adds activation
#      checkpointing), BATCH (32), STEPS (20), WARMUP (2), OUT (docs/results; the lines go to
#      truncation.jsonl, or truncation-MODEL.jsonl for another model).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL=${MODEL:-teacher}
T=${T:-16}
WINDOWS=${WINDOWS:-"0 8 4 2 1 0c 4c"}
BATCH=${BATCH:-32}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-2}
OUT=${OUT:-docs/results}

dotnet build -c Release Benchmarks -v q -nologo >/dev/null
SNN=$(ls -d Benchmarks/bin/Release/net*/Benchmarks | head -1)
mkdir -p "$OUT"
RAW="$OUT/truncation.jsonl"
if [[ $MODEL != teacher ]]; then RAW="$OUT/truncation-$MODEL.jsonl"; fi
: >"$RAW"

for w in $WINDOWS; do
  k=${w%c}
  c=0
  if [[ $w == *c ]]; then c=1; fi
  "$SNN" race-snnspec --model "$MODEL" --T "$T" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" \
    --truncation "$k" --checkpoint-activations "$c" | tee -a "$RAW"
done

python3 - "$RAW" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
full = next(r for r in rows if r["truncation"] == 0 and not r.get("checkpoint_activations"))
print(f"\n{full['model']}, T = {full['T']}, batch {full['batch']}, {full['threads']} threads")
print("| configuration | images/s | × full BPTT | peak RSS (MB) | × full BPTT |")
print("|---|---|---|---|---|")
for r in rows:
    k = "full BPTT" if r["truncation"] == 0 else f"K = {r['truncation']}"
    if r.get("checkpoint_activations"):
        k += ", checkpointed"
    print(f"| {k} | {r['imgs_per_s']:.1f} | {r['imgs_per_s'] / full['imgs_per_s']:.2f} | "
          f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / full['peak_rss_mb']:.2f} |")
PY
