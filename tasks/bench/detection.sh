#!/usr/bin/env bash
# Times Mask R-CNN UniFormer-S h14 (configs/mask-rcnn-hybrid-small-1x.json) on a 1333×800 image padded
# to 1344×800, batch 1, fp32, random weights, in PyTorch + mmdetection 3.3 (the reference backbone
# inside mmdet's own MaskRCNN, timed by stage: backbone, FPN neck, RPN head + proposal selection,
# RoI heads box + mask with mask pasting; tasks/bench/torch_bench.py) and in this engine
# (`uniformer bench --profile`: total, peak RSS, and its per-stage lines when it prints them), both
# with its own random weights and with PyTorch's calibrated random weights (`--weights`: the same
# network, so the RPN and RoI heads see as many proposals and detections), interleaved round by
# round; prints a Markdown table.
# Needs the mmdet venv: bash tasks/reference/mmdet_env.sh
#   tasks/bench/detection.sh [ROUNDS]          (default 2)
# Environment: SCRATCH=.build (swift build --scratch-path; the binary is $SCRATCH/release/uniformer),
#              SKIP_BUILD=1 (use that binary as it is), RUNS=2, WARMUP=1, MODEL, SIZE (for trying it out).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-2}
RUNS=${RUNS:-2}
WARMUP=${WARMUP:-1}
SCRATCH=${SCRATCH:-.build}
PY=tasks/reference/.venv-mmdet/bin/python
MODEL=${MODEL:-mask-rcnn-hybrid-small-1x}
SIZE=${SIZE:-1344x800}
[ -x "$PY" ] || { echo "detection.sh: $PY missing (bash tasks/reference/mmdet_env.sh)" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  swift build -c release --product uniformer --scratch-path "$SCRATCH" >/dev/null
fi
BIN=$SCRATCH/release/uniformer
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# per round: PyTorch (which also writes its calibrated random weights), this engine with its own random
# weights (the command as given), this engine with PyTorch's weights (same network, so the RPN and RoI
# heads get as many proposals and detections as PyTorch's)
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS: PyTorch + mmdet" >&2
  $PY tasks/bench/torch_bench.py --model "configs/$MODEL.json" --size "$SIZE" --runs "$RUNS" --warmup "$WARMUP" \
    --threads 2 --save-weights "$out/weights.pth" 2>/dev/null | tail -1 > "$out/torch.$r"
  echo "round $r/$ROUNDS: uniformer bench" >&2
  $BIN bench --model "$MODEL" --size "$SIZE" --runs "$RUNS" --warmup "$WARMUP" --json --profile > "$out/swift.$r"
  echo "round $r/$ROUNDS: uniformer bench --weights (PyTorch's)" >&2
  $BIN bench --model "$MODEL" --size "$SIZE" --runs "$RUNS" --warmup "$WARMUP" --json --profile \
    --weights "$out/weights.pth" > "$out/swiftw.$r"
done
python3 - "$out" "$ROUNDS" "$(nproc)" "$MODEL" <<'PY'
import json, re, statistics, sys
out, rounds, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = statistics.median

def swift(kind):
    """the JSON objects of `uniformer bench --json --profile` and its per-stage lines, when it prints them"""
    rows, stages = [], {}
    for r in range(1, rounds + 1):
        text = open(f"{out}/{kind}.{r}").read()
        rows.append(json.loads(re.search(r"^\{.*\}$", text, re.M).group(0)))
        block = re.search(r"per stage \(mean per run\):\n((?:  .*\n)+)", text)
        for line in (block.group(1).splitlines() if block else []):
            m = re.match(r"\s+(.+?)\s+([\d.]+) ms", line)
            if m:
                stages.setdefault(m.group(1).strip(), []).append(float(m.group(2)))
    return rows, stages

sw, sw_stages = swift("swift")
sww, sww_stages = swift("swiftw")
pt = [json.loads(open(f"{out}/torch.{r}").read()) for r in range(1, rounds + 1)]
rows = [("backbone", "backbone (UniFormer-S h14)"), ("neck", "neck (FPN)"),
        ("rpn", "RPN (head + proposal selection)"), ("roi_heads", "RoI heads (box + mask, pasted)")]
def swift_stage(key, stages):
    for name, vals in stages.items():
        n = name.lower()
        if key == n or (key == "roi_heads" and "roi" in n) or (key == "neck" and ("neck" in n or "fpn" in n)) \
                or (key == "rpn" and "rpn" in n) or (key == "backbone" and "backbone" in n):
            return f"{med(vals):.0f} ms"
    return "—"
model = sys.argv[4]
print(f"`{model}`, {pt[0]['image'].replace('x', '×')} image padded to {pt[0]['input'].replace('x', '×')}, batch 1, "
      f"fp32, random weights, {cores} threads; medians over {rounds} round(s) × {pt[0]['runs']} run(s) "
      f"(PyTorch: {pt[0]['runtime']}, {pt[0].get('proposals')} proposals, {pt[0].get('detections')} detections).")
print()
print("| stage | PyTorch + mmdet | this engine, PyTorch's weights | this engine, own random weights |")
print("|---|---:|---:|---:|")
for key, label in rows:
    print(f"| {label} | {med(p['stages'][key] for p in pt):.0f} ms | {swift_stage(key, sww_stages)} | "
          f"{swift_stage(key, sw_stages)} |")
tp = med(p["median_ms"] for p in pt)
tw, ts = med(s["median_ms"] for s in sww), med(s["median_ms"] for s in sw)
print(f"| **total** | **{tp:.0f} ms** | **{tw:.0f} ms** | **{ts:.0f} ms** |")
rss = lambda rows: med(r["peak_rss_mb"] for r in rows)  # noqa: E731
print(f"| peak RSS | {rss(pt):.0f} MB | {rss(sww):.0f} MB | {rss(sw):.0f} MB |")
print(f"| engine / PyTorch | | {tw / tp:.2f}× | {ts / tp:.2f}× |")
print()
print("PyTorch's peak RSS includes importing mmdet and the calibration passes; this engine's with PyTorch's "
      "weights includes reading the 165 MB float32 checkpoint.")
PY
