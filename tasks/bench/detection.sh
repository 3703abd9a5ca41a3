#!/usr/bin/env bash
# Times Mask R-CNN UniFormer-S h14 (configs/mask-rcnn-hybrid-small-1x.json) on a 1333×800 image padded
# to 1344×800, batch 1, fp32, random weights, in PyTorch + mmdetection 3.3 (the reference backbone
# inside mmdet's own MaskRCNN, timed by stage: backbone, FPN neck, RPN head + proposal selection,
# RoI heads box + mask with mask pasting; tasks/bench/torch_bench.py) and in this engine
# (`uniformer bench --profile`: total, peak RSS, and its per-stage lines when it prints them),
# interleaved round by round; prints a Markdown table.
# Needs the mmdet venv: bash tasks/reference/mmdet_env.sh
#   tasks/bench/detection.sh [ROUNDS]          (default 2)
# Environment: SCRATCH=.build (swift build --scratch-path; the binary is $SCRATCH/release/uniformer),
#              SKIP_BUILD=1 (use that binary as it is), RUNS=2, WARMUP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-2}
RUNS=${RUNS:-2}
WARMUP=${WARMUP:-1}
SCRATCH=${SCRATCH:-.build}
PY=tasks/reference/.venv-mmdet/bin/python
MODEL=mask-rcnn-hybrid-small-1x
SIZE=1344x800
[ -x "$PY" ] || { echo "detection.sh: $PY missing (bash tasks/reference/mmdet_env.sh)" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  swift build -c release --product uniformer --scratch-path "$SCRATCH" >/dev/null
fi
BIN=$SCRATCH/release/uniformer
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS: uniformer bench" >&2
  $BIN bench --model "$MODEL" --size "$SIZE" --runs "$RUNS" --warmup "$WARMUP" --json --profile > "$out/swift.$r"
  echo "round $r/$ROUNDS: PyTorch + mmdet" >&2
  $PY tasks/bench/torch_bench.py --model "configs/$MODEL.json" --size "$SIZE" --runs "$RUNS" --warmup "$WARMUP" \
    --threads 2 2>/dev/null | tail -1 > "$out/torch.$r"
done
python3 - "$out" "$ROUNDS" "$(nproc)" <<'PY'
import json, re, statistics, sys
out, rounds, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = statistics.median
sw, pt, sw_stages = [], [], {}
for r in range(1, rounds + 1):
    text = open(f"{out}/swift.{r}").read()
    sw.append(json.loads(re.search(r"^\{.*\}$", text, re.M).group(0)))
    # "per stage (mean per run):" lines, when this engine's profiler reports stages
    block = re.search(r"per stage \(mean per run\):\n((?:  .*\n)+)", text)
    for line in (block.group(1).splitlines() if block else []):
        m = re.match(r"\s+(.+?)\s+([\d.]+) ms", line)
        if m:
            sw_stages.setdefault(m.group(1).strip(), []).append(float(m.group(2)))
    pt.append(json.loads(open(f"{out}/torch.{r}").read()))
rows = [("backbone", "backbone (UniFormer-S h14)"), ("neck", "neck (FPN)"),
        ("rpn", "RPN (head + proposal selection)"), ("roi_heads", "RoI heads (box + mask, pasted)")]
def swift_stage(key):
    for name, vals in sw_stages.items():
        n = name.lower()
        if key == n or (key == "roi_heads" and "roi" in n) or (key == "neck" and ("neck" in n or "fpn" in n)) \
                or (key == "rpn" and "rpn" in n) or (key == "backbone" and "backbone" in n):
            return f"{med(vals):.0f} ms"
    return "—"
print(f"Mask R-CNN UniFormer-S h14 (`mask-rcnn-hybrid-small-1x`), 1333×800 image padded to 1344×800, batch 1, "
      f"fp32, random weights, {cores} threads; medians over {rounds} rounds × {pt[0]['runs']} runs "
      f"(PyTorch: {pt[0]['runtime']}, {pt[0].get('proposals')} proposals, {pt[0].get('detections')} detections).")
print()
print("| stage | PyTorch + mmdet | this engine |")
print("|---|---:|---:|")
for key, label in rows:
    print(f"| {label} | {med(p['stages'][key] for p in pt):.0f} ms | {swift_stage(key)} |")
tp, ts = med(p["median_ms"] for p in pt), med(s["median_ms"] for s in sw)
print(f"| **total** | **{tp:.0f} ms** | **{ts:.0f} ms** |")
print(f"| peak RSS | {med(p['peak_rss_mb'] for p in pt):.0f} MB | {med(s['peak_rss_mb'] for s in sw):.0f} MB |")
print(f"| engine / PyTorch | | {ts / tp:.2f}× |")
PY
