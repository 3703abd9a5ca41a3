#!/usr/bin/env bash
# The yardsticks of issue 5 in one command: six workloads, batch 1, 2 threads, random weights, timed in
# this engine (fp32 and --precision bf16), PyTorch eager and ONNX Runtime, interleaved round by round on
# this machine; cells are medians over rounds of each call's median. Rewrites the table between
# <!-- bench:start --> and <!-- bench:end --> in BENCHMARKS.md and prints it.
#
#   a  UniFormer-S classifier, 224×224                 uniformer-s-in1k           --size 224x224
#   b  UniFormer-S backbone, global, 512×512           uniformer-s                --size 512x512
#   c  UniFormer-S backbone, hybrid w14, 800×1216      uniformer-s-h14            --size 1216x800
#   d  UniFormer-B backbone, global, 512×512           uniformer-b                --size 512x512
#   e  UPerNet UniFormer-S, global, 512×512            upernet-global-small       --size 512x512
#      (PyTorch: mmseg's EncoderDecoder in tasks/reference/.venv; no ONNX: adaptive pooling does not export)
#   f  Mask R-CNN UniFormer-S h14, 1333×800 in 1344×800  mask-rcnn-hybrid-small-1x --size 1344x800
#      (PyTorch: mmdet's MaskRCNN in tasks/reference/.venv-mmdet, weights calibrated once before the
#      rounds and saved; this engine runs those same weights (--weights), so both do the same RPN and
#      RoI work; no ONNX)
# Per round, per workload: engine fp32, engine bf16, PyTorch, ONNX Runtime.
#
#   tasks/bench/run.sh
# Environment:
#   ROUNDS=3        rounds
#   ONLY=a,b,...    a subset of the workloads (default all six)
#   RUNS=N          timed runs of every call (default per workload: a 10, b 5, c 3, d 3, e 2, f 2)
#   WARMUP=1        untimed warm-up runs of every call
#   SKIP_BUILD=1    use the binary as it is (else `swift build -c release --product uniformer` first)
#   SCRATCH=.build  swift build --scratch-path; the binary is $SCRATCH/release/uniformer
#   RESULTS=DIR     where the JSON lines go (default: a new directory under ${TMPDIR:-/tmp}); kept
#   NO_WRITE=1      print the table, leave BENCHMARKS.md alone
# Needs: python3 with torch and onnxruntime; the venvs of tasks/reference/mmseg_env.sh (e) and
# tasks/reference/mmdet_env.sh (f).
set -euo pipefail
cd "$(dirname "$0")/../.."

# the command as run, with the knobs that were set (for the table's footer)
command="ROUNDS=${ROUNDS:-3}"
for knob in ONLY RUNS WARMUP SKIP_BUILD SCRATCH; do
  if [ -n "${!knob+x}" ]; then command+=" $knob=${!knob}"; fi
done
command+=" tasks/bench/run.sh"

ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-a,b,c,d,e,f}
WARMUP=${WARMUP:-1}
SCRATCH=${SCRATCH:-.build}
BIN=$SCRATCH/release/uniformer
PY_SEG=tasks/reference/.venv/bin/python
PY_DET=tasks/reference/.venv-mmdet/bin/python
THREADS=2

# id | config | size (WxH) | default runs | PyTorch python | ONNX (1 = yes)
workloads=(
  "a uniformer-s-in1k 224x224 10 python3 1"
  "b uniformer-s 512x512 5 python3 1"
  "c uniformer-s-h14 1216x800 3 python3 1"
  "d uniformer-b 512x512 3 python3 1"
  "e upernet-global-small 512x512 2 $PY_SEG 0"
  "f mask-rcnn-hybrid-small-1x 1344x800 2 $PY_DET 0"
)
selected=()
for wl in "${workloads[@]}"; do
  id=${wl%% *}
  if [[ ",$ONLY," == *",$id,"* ]]; then selected+=("$wl"); fi
done
for id in ${ONLY//,/ }; do
  [[ "$id" =~ ^[a-f]$ ]] || { echo "run.sh: ONLY: unknown workload '$id' (a..f)" >&2; exit 1; }
done
[ ${#selected[@]} -gt 0 ] || { echo "run.sh: ONLY=$ONLY selects nothing" >&2; exit 1; }
for wl in "${selected[@]}"; do
  set -- $wl
  if [ "$5" != python3 ] && [ ! -x "$5" ]; then
    echo "run.sh: $5 missing (workload $1; bash tasks/reference/mmseg_env.sh or mmdet_env.sh)" >&2
    exit 1
  fi
done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "building $BIN" >&2
  swift build -c release --product uniformer --scratch-path "$SCRATCH" >/dev/null
fi
[ -x "$BIN" ] || { echo "run.sh: $BIN missing (swift build -c release --product uniformer)" >&2; exit 1; }

OUT=${RESULTS:-$(mktemp -d "${TMPDIR:-/tmp}/uniformer-bench.XXXXXX")}
mkdir -p "$OUT"
LINES=$OUT/results.jsonl
: > "$LINES"
trap 'rm -f "$OUT/det-weights.pth"' EXIT
echo "results: $LINES" >&2

python3 tasks/bench/table.py meta --command "$command" --rounds "$ROUNDS" --warmup "$WARMUP" >> "$LINES"

# record ENGINE CMD...: runs CMD for the current workload ($id, $model, $size), round ($r) and runs ($runs);
# appends {"workload", "model", "size", "engine", "round", "runs", "result"} (the last line of its stdout
# that is a JSON object), or the same with "error" instead of "result", to the results; its stderr goes to
# $OUT/ID.ENGINE.ROUND.err
record() {
  local engine=$1
  shift
  local err="$OUT/$id.$engine.$r.err" out status=0 json
  echo "round $r/$ROUNDS: $id ($model $size) $engine" >&2
  out=$("$@" 2>"$err") || status=$?
  json=$(printf '%s\n' "$out" | grep -E '^\{.*\}$' | tail -1 || true)
  local head
  head=$(printf '"workload": "%s", "model": "%s", "size": "%s", "engine": "%s", "round": %d, "runs": %d' \
    "$id" "$model" "$size" "$engine" "$r" "$runs")
  if [ "$status" = 0 ] && [ -n "$json" ]; then
    printf '{%s, "result": %s}\n' "$head" "$json" >> "$LINES"
  else
    echo "run.sh: $id $engine round $r failed (exit $status; see $err)" >&2
    printf '{%s, "error": "exit %d, see %s"}\n' "$head" "$status" "$err" >> "$LINES"
  fi
}

# (f): calibrate the random weights once (deterministic: seeded input and generator), so that every
# round of both runtimes runs the same network
DET_WEIGHTS=()
for wl in "${selected[@]}"; do
  set -- $wl
  if [ "$1" = f ]; then
    echo "calibrating the detection weights (PyTorch + mmdet, once)" >&2
    "$5" tasks/bench/torch_bench.py --model "configs/$2.json" --size "$3" --runs 1 --warmup 0 \
      --threads $THREADS --save-weights "$OUT/det-weights.pth" > "$OUT/f.calibration.out" 2> "$OUT/f.calibration.err" \
      || { echo "run.sh: calibrating (f) failed, see $OUT/f.calibration.err" >&2; exit 1; }
    DET_WEIGHTS=(--weights "$OUT/det-weights.pth")
  fi
done

for r in $(seq "$ROUNDS"); do
  for wl in "${selected[@]}"; do
    set -- $wl
    id=$1 model=$2 size=$3 runs=${RUNS:-$4} py=$5 onnx=$6
    weights=()
    if [ "$id" = f ]; then weights=("${DET_WEIGHTS[@]}"); fi
    for precision in fp32 bf16; do
      record "$precision" "$BIN" bench --model "$model" --size "$size" --runs "$runs" \
        --warmup "$WARMUP" --threads $THREADS --precision "$precision" --json "${weights[@]}"
    done
    record torch "$py" tasks/bench/torch_bench.py --model "configs/$model.json" --size "$size" \
      --runs "$runs" --warmup "$WARMUP" --threads $THREADS
    if [ "$onnx" = 1 ]; then
      record onnx python3 tasks/bench/torch_bench.py --model "configs/$model.json" --size "$size" \
        --runs "$runs" --warmup "$WARMUP" --threads $THREADS --onnx
    fi
  done
done

block=$OUT/block.md
python3 tasks/bench/table.py render "$LINES" > "$block"
if [ "${NO_WRITE:-0}" != 1 ]; then
  python3 tasks/bench/table.py splice BENCHMARKS.md "$block"
  echo "BENCHMARKS.md: table rewritten" >&2
fi
cat "$block"
echo "results: $LINES" >&2
