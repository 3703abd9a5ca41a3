#!/usr/bin/env bash
# Times UPerNet UniFormer-S at 512×512 (global) and 2048×512 (hybrid windows of 32, upstream's
# test_config_h32) in this engine and in PyTorch + mmsegmentation (the reference backbone inside
# mmseg's own EncoderDecoder), interleaved round by round; prints a Markdown table.
# Needs the mmseg venv: bash tasks/reference/mmseg_env.sh
#   tasks/bench/segmentation.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-2}
PY=tasks/reference/.venv/bin/python
swift build -c release --product uniformer >/dev/null
BIN=.build/release/uniformer
declare -A results
workloads=("upernet-global-small 512x512 3" "upernet-global-small-h32 2048x512 2")
for r in $(seq "$ROUNDS"); do
  for wl in "${workloads[@]}"; do
    set -- $wl
    results["$1 $2 swift"]+="$($BIN bench --model "$1" --size "$2" --runs "$3" --warmup 1 --threads 2 --json) "
    results["$1 $2 torch"]+="$($PY tasks/bench/torch_bench.py --model "configs/$1.json" --size "$2" --runs "$3" --warmup 1 --threads 2 2>/dev/null | tail -1) "
  done
done
echo "| workload | this engine | peak RSS | PyTorch + mmseg | peak RSS | ratio |"
echo "|---|---:|---:|---:|---:|---:|"
for wl in "${workloads[@]}"; do
  set -- $wl
  python3 - "$1 $2" "${results["$1 $2 swift"]}" "${results["$1 $2 torch"]}" <<'PY'
import json, re, statistics, sys
name, *cols = sys.argv[1:]
def objs(s): return [json.loads(m) for m in re.findall(r"\{[^}]*\}", s)]
sw, pt = (objs(c) for c in cols)
med = lambda rows, k="median_ms": statistics.median(r[k] for r in rows)
print(f"| {name} | {med(sw):.0f} ms | {med(sw, 'peak_rss_mb'):.0f} MB | {med(pt):.0f} ms | {med(pt, 'peak_rss_mb'):.0f} MB | {med(sw) / med(pt):.2f}× |")
PY
done
