#!/usr/bin/env bash
# Times UniFormer-S at 224² (classifier) and 512² (dense backbone, global) in this engine, PyTorch
# eager and ONNX Runtime, interleaved round by round on the same machine, and prints a Markdown table.
#   tasks/bench/backbone.sh [ROUNDS]     (release build; 2 threads; medians over rounds × runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
swift build -c release --product uniformer >/dev/null
BIN=.build/release/uniformer
declare -A results
workloads=("uniformer-s-in1k 224x224" "uniformer-s 512x512")
for r in $(seq "$ROUNDS"); do
  for wl in "${workloads[@]}"; do
    set -- $wl
    results["$1 $2 swift"]+="$($BIN bench --model "$1" --size "$2" --runs 5 --warmup 1 --threads 2 --json) "
    results["$1 $2 torch"]+="$(python3 tasks/bench/torch_bench.py --model "configs/$1.json" --size "$2" --runs 5 --warmup 1 --threads 2) "
    results["$1 $2 onnx"]+="$(python3 tasks/bench/torch_bench.py --model "configs/$1.json" --size "$2" --runs 5 --warmup 1 --threads 2 --onnx 2>/dev/null) "
  done
done
echo "| workload | GFLOP | this engine | PyTorch eager | ONNX Runtime | engine GFLOPS |"
echo "|---|---:|---:|---:|---:|---:|"
for wl in "${workloads[@]}"; do
  set -- $wl
  python3 - "$1 $2" "${results["$1 $2 swift"]}" "${results["$1 $2 torch"]}" "${results["$1 $2 onnx"]}" <<'PY'
import json, re, statistics, sys
name, *cols = sys.argv[1:]
def objs(s): return [json.loads(m) for m in re.findall(r"\{[^}]*\}", s)]
sw, pt, ox = (objs(c) for c in cols)
med = lambda rows: statistics.median(r["median_ms"] for r in rows)
g = sw[0]["gflop"]
print(f"| {name} | {g:.1f} | {med(sw):.0f} ms ({statistics.median(r['peak_rss_mb'] for r in sw):.0f} MB) | {med(pt):.0f} ms | {med(ox):.0f} ms | {g / med(sw) * 1e3:.0f} |")
PY
done
