# Shared by the regenerate-*.sh scripts (sourced after `cd` to the repository root and `root=runs/…`):
# builds the CLI unless SNNSPEC_CLI names a copied build, records the commit in $root/commit, and
# defines `run NAME`: `snnspec distill Examples/specs/results/NAME.json --out $root/NAME`, its log in
# $root/NAME.log and its wall time in $root/NAME.seconds (KEEP=1 skips runs whose report exists;
# RSS=1 also records the run's peak resident set in $root/NAME.maxrss_kb through /usr/bin/time).
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
    local start prefix=()
    if [[ "${RSS:-0}" == 1 ]]; then prefix=(/usr/bin/time -f %M -o "$root/$name.maxrss_kb"); fi
    start=$(date +%s.%N)
    "${prefix[@]}" "${cli[@]}" distill "Examples/specs/results/$name.json" --out "$out" </dev/null >"$root/$name.log" 2>&1 ||
        { tail -20 "$root/$name.log"; exit 1; }
    echo "$(date +%s.%N) - $start" | bc >"$root/$name.seconds"
    grep -E '│ (teacher|student)' "$root/$name.log" | tail -2 || true
}
