#!/usr/bin/env bash
# Speed race: SnnSpec vs PyTorch 1.13 training the same SNNs (docs/results/speed-race.md).
# One command from the repository root:  Benchmarks/race/run.sh
# Env: MODELS ("teacher student kd"), STEPS_LIST ("1 2 4 8"), BATCH (64), STEPS (20), WARMUP (3),
#      THREADS (2), TORCH_WAIT_POLICIES ("ACTIVE PASSIVE"), OUT (docs/results). Needs Debian's python3-torch and libjemalloc2.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODELS=${MODELS:-"teacher student kd"}
STEPS_LIST=${STEPS_LIST:-"1 2 4 8"}
BATCH=${BATCH:-64}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-2}
TORCH_WAIT_POLICIES=${TORCH_WAIT_POLICIES:-"ACTIVE PASSIVE"}
OUT=${OUT:-docs/results}
PY=/usr/bin/python3          # Debian's torch is built for the system python, not a pyenv one
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2

dotnet build -c Release Benchmarks -v q -nologo >/dev/null
COMMIT=$(git rev-parse --short HEAD)$([ -n "$(git status --porcelain --untracked-files=no -- Spec.FSharp Benchmarks Tests)" ] && echo +dirty || true)
SNN=$(ls -d Benchmarks/bin/Release/net*/Benchmarks | head -1)
mkdir -p "$OUT"
RAW="$OUT/speed-race.jsonl"
: >"$RAW"

for model in $MODELS; do
  for t in $STEPS_LIST; do
    for side in snnspec pytorch; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      if [ "$side" = snnspec ]; then
        line=$("$SNN" race-snnspec --model "$model" --T "$t" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP")
      else
        # PyTorch at its best: both OpenMP wait policies (ACTIVE spins, the fastest on an idle
        # machine; PASSIVE sleeps, far faster when other processes share the cores); the report
        # keeps the faster run of each row.
        for policy in $TORCH_WAIT_POLICIES; do
          load=$(cut -d' ' -f1 /proc/loadavg)
          line=$(LD_PRELOAD=$JEMALLOC ATEN_CPU_CAPABILITY=avx512 OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=$policy \
            "$PY" Benchmarks/race/torch_snn.py --model "$model" --T "$t" --batch "$BATCH" \
            --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS")
          echo "$line" | "$PY" -c "import json,sys; d=json.loads(sys.stdin.read()); d['omp_wait_policy']=sys.argv[2]; d['commit']=sys.argv[-1]; d['load_before']=float(sys.argv[1]); d['load_after']=float(open('/proc/loadavg').read().split()[0]); print(json.dumps(d))" "$load" "$policy" "$COMMIT" | tee -a "$RAW"
        done
        continue
      fi
      echo "$line" | "$PY" -c "import json,sys; d=json.loads(sys.stdin.read()); d['commit']=sys.argv[-1]; d['load_before']=float(sys.argv[1]); d['load_after']=float(open('/proc/loadavg').read().split()[0]); print(json.dumps(d))" "$load" "$COMMIT" | tee -a "$RAW"
    done
  done
done

"$PY" Benchmarks/race/report.py "$RAW" "$OUT"
