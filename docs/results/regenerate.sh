#!/usr/bin/env bash
# Regenerates the results pages in docs/results from fresh runs on real data.
set -euo pipefail
cd "$(dirname "$0")/../.."
dotnet build Cli -c Release >/dev/null
out=$(mktemp -d)
start=$(date +%s.%N)
dotnet run -c Release --project Cli --no-build -- demo --out "$out"
end=$(date +%s.%N)
python3 docs/results/demo_page.py "$out" "$(echo "$end - $start" | bc)" "dotnet run -c Release --project Cli -- demo"
