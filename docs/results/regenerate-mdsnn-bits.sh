#!/usr/bin/env bash
# MD-SNN bit widths on MNIST (docs/results/md-snn-bits-mnist.md): 2-, 4- and 8-bit students trained
# alone and distilled from the main job's FP32 teacher. Runs the demo first when its teacher is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dotnet build Cli -c Release >/dev/null
[ -f snnspec-demo/teacher.safetensors ] || dotnet run -c Release --project Cli --no-build -- demo
mkdir -p runs/mdsnn
git rev-parse --short HEAD > runs/mdsnn/bits.commit
for b in 2 4 8; do
  for v in alone distilled; do
    name=mdsnn-b$b-$v
    if [ -n "${KEEP:-}" ] && [ -f "runs/mdsnn/$name/report.json" ]; then continue; fi
    start=$(date +%s.%N)
    dotnet run -c Release --project Cli --no-build -- distill "Examples/specs/results/$name.json" \
      > "runs/mdsnn/$name.log" 2>&1
    echo "$(date +%s.%N) - $start" | bc > "runs/mdsnn/$name.seconds"
    echo "$name: $(cat runs/mdsnn/$name.seconds) s"
  done
done
python3 docs/results/mdsnn_bits_page.py runs/mdsnn || true
