#!/usr/bin/env bash
# Regenerate the demo data and models from scratch:
#
#   bash tasks/demo/train.sh [det|seg|all]        (default: all; seg starts from the det weights)
#
#   1. the shapes datasets (tasks/demo/shapes.py, seeded): /tmp/shapes-val (200 images) and
#      /tmp/shapes-train (3000 images) — not committed;
#      the held-out fixtures Tests/UniFormerTests/Fixtures/demo (test split, 10 images) and the
#      README picture tasks/demo/shapes-example.png — committed, byte-identical on a rerun
#   2. det: tasks/demo/train_det.py in the mmdet venv, from scratch: 2000 iterations of batch 4 on all
#      3000 training images, one cosine (bf16 autocast, channels-last; ~44 min on 2 cores)
#      -> configs/demo-shapes-det.json, Sources/UniFormer/Resources/demo-shapes-det.safetensors;
#      then tasks/demo/check_det.py (PyTorch vs `uniformer detect` on the fixtures)
#   3. seg: tasks/demo/train_seg.py in the mmseg venv, in two runs: 1600 iterations at scale 384, the
#      backbone started from the detector's (a segmentation backbone trained from scratch learns which
#      shape a pixel belongs to far more slowly), then 1000 iterations of the whole model at scale 640
#      (finer masks: thin rings and star tips); bf16 autocast, channels-last; ~33 min on 2 cores
#      -> configs/demo-shapes-seg.json, Sources/UniFormer/Resources/demo-shapes-seg.safetensors;
#      then tasks/demo/check_seg.py (PyTorch vs `uniformer segment`)
#   The checks need the Swift toolchain (SKIP_CHECK=1 skips them).
#
# Environment: TRAIN_THREADS (torch threads, default 2), SHAPES_TRAIN / SHAPES_VAL (dataset folders),
# SKIP_CHECK=1 (no Swift comparison).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
what="${1:-all}"
case "$what" in seg|det|all) ;; *) echo "usage: $0 [det|seg|all]" >&2; exit 2 ;; esac

export TRAIN_THREADS="${TRAIN_THREADS:-2}"
train_dir="${SHAPES_TRAIN:-/tmp/shapes-train}"
val_dir="${SHAPES_VAL:-/tmp/shapes-val}"

# shapes.py writes the same first N images for any --count >= N, so an existing complete folder is kept
have() {  # have DIR COUNT: DIR/annotations.json lists >= COUNT images
    [[ -f "$1/annotations.json" ]] &&
        python3 -c 'import json,sys; sys.exit(len(json.load(open(sys.argv[1]))["images"]) < int(sys.argv[2]))' \
            "$1/annotations.json" "$2"
}
have "$val_dir" 200 || python3 tasks/demo/shapes.py --out "$val_dir" --split val --count 200
have "$train_dir" 3000 || python3 tasks/demo/shapes.py --out "$train_dir" --split train --count 3000
python3 tasks/demo/shapes.py --out Tests/UniFormerTests/Fixtures/demo --split test --count 10 --png-level 9
python3 tasks/demo/shapes.py --example tasks/demo/shapes-example.png

if [[ "$what" == det || "$what" == all ]]; then
    bash tasks/reference/mmdet_env.sh
    det=(tasks/reference/.venv-mmdet/bin/python tasks/demo/train_det.py --train-dir "$train_dir" --val-dir "$val_dir" --no-generate)
    "${det[@]}" --train-count 3000 --iters 2000 --restart-cycles 0
    if [[ "${SKIP_CHECK:-0}" != 1 ]]; then
        swift build -c release
        tasks/reference/.venv-mmdet/bin/python tasks/demo/check_det.py
    fi
fi

if [[ "$what" == seg || "$what" == all ]]; then
    bash tasks/reference/mmseg_env.sh
    seg=(tasks/reference/.venv/bin/python tasks/demo/train_seg.py --train "$train_dir" --val "$val_dir")
    "${seg[@]}" --iters 1600 --init-backbone Sources/UniFormer/Resources/demo-shapes-det.safetensors
    "${seg[@]}" --iters 1000 --scale 640 --ratio 0.6 1.2 --lr 3e-4 --warmup 50 --work /tmp/train_seg_640 \
        --init-model Sources/UniFormer/Resources/demo-shapes-seg.safetensors
    if [[ "${SKIP_CHECK:-0}" != 1 ]]; then
        swift build -c release
        tasks/reference/.venv/bin/python tasks/demo/check_seg.py
    fi
fi
