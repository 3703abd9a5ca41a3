#!/usr/bin/env python3
"""mIoU / mAcc / aAcc of `uniformer segment` on an ADE20K-layout folder, computed as mmseg does.

    python3 tasks/segmentation/evaluate.py DATA --model CONFIG --weights W.pth      # runs the CLI
    python3 tasks/segmentation/evaluate.py DATA --predictions DIR --num-classes 150  # masks on disk

DATA holds `images/*.jpg|*.jpeg|*.png` and `annotations/<stem>.png` (ADEChallengeData2016 itself:
pass `--split validation` for images/validation + annotations/validation). Without
`--predictions`, the Swift CLI is built if needed (`swift build -c release --product uniformer`)
and run once over the image folder: `.build/release/uniformer segment IMAGES -o OUT --model CONFIG
--weights W`, which writes one indexed PNG per image named after it (x.jpg -> x.png), pixel value =
class index. Then, per image, as mmsegmentation evaluates ADE20K (mmseg 0.13
`mmseg/core/evaluation/metrics.py`, mmseg 1.x `IoUMetric`):

  label  = the annotation PNG read with Pillow, as uint8 (mmcv.imfrombytes(flag='unchanged',
           backend='pillow').squeeze().astype(uint8)); with reduce_zero_label (the default, as for
           ADE20K): 0 -> 255, others - 1
  mask   = label != 255 (ignore_index)
  areas  = histograms over classes 0..K-1 of pred[mask] == label[mask] (intersection), pred[mask],
           label[mask]; values outside 0..K-1 are not counted (torch.histc's range), but a pixel
           whose label is out of range still counts in the prediction's area
  union  = area_pred + area_label - intersection

summed over the whole set, then IoU = I / U and Acc = I / area_label per class (NaN when 0/0),
mIoU = nanmean(IoU), mAcc = nanmean(Acc) (classes that never occur in labels or predictions are
left out), aAcc = sum(I) / sum(area_label). Counts here are exact integers; mmseg 0.13 accumulates
per-image float32 counts in float64 (the same numbers), mmseg 1.x sums them in float32 (equal up to
float32 rounding of the totals, < 1e-6 relative on ADE20K val).

Prints mmseg's per-class table and summary (percent, 2 decimals), then one line with the exact
values (`exact: aAcc ... mIoU ... mAcc ...`, fractions); `--json OUT` writes everything.
Plain numpy + Pillow: no mmseg at run time. tasks/segmentation/check_with_mmseg.py shows that the
numbers equal mmseg 1.2.2's IoUMetric.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
IGNORE_INDEX = 255


class EvalError(Exception):
    """A problem with the data; the message names the file."""


# ----------------------------------------------------------------------------------------------
# the metric (mmseg's intersect_and_union + total_area_to_metrics)

def read_label_png(path: str, what: str) -> np.ndarray:
    """A single-channel PNG (mode L, P or I;16) as mmseg reads annotations with Pillow, as uint8."""
    try:
        with Image.open(path) as im:
            arr = np.array(im)
    except (OSError, ValueError) as e:
        raise EvalError(f"{path}: cannot read the {what}: {e}") from None
    if arr.ndim != 2:
        raise EvalError(f"{path}: the {what} must be a single-channel (L or P mode) PNG, got shape {arr.shape}")
    return arr.astype(np.uint8)  # what mmseg's LoadAnnotations does (.astype(np.uint8))


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K: 0 (other) becomes ignore (255), classes 1..150 become 0..149 (uint8 arithmetic)."""
    label = label.copy()
    label[label == 0] = 255
    label = label - 1
    label[label == 254] = 255
    return label


def intersect_and_union(pred: np.ndarray, label: np.ndarray, num_classes: int,
                        ignore_index: int = IGNORE_INDEX):
    """Per-class pixel counts of one image (int64): intersection, union, prediction, label."""
    mask = label != ignore_index
    p = pred[mask].astype(np.int64)
    t = label[mask].astype(np.int64)

    def hist(v):  # torch.histc(v, bins=K, min=0, max=K-1) on integers
        v = v[(v >= 0) & (v < num_classes)]
        return np.bincount(v, minlength=num_classes).astype(np.int64)

    area_intersect = hist(p[p == t])
    area_pred = hist(p)
    area_label = hist(t)
    return area_intersect, area_pred + area_label - area_intersect, area_pred, area_label


def total_area_to_metrics(inter, union, pred, label) -> dict:
    inter, union, label = (np.asarray(a, dtype=np.float64) for a in (inter, union, label))
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 and the nanmean of all-NaN
        iou = inter / union
        acc = inter / label
        a_acc = inter.sum() / label.sum()
        m_iou = float(np.nanmean(iou))
        m_acc = float(np.nanmean(acc))
    return {"aAcc": float(a_acc), "mIoU": m_iou, "mAcc": m_acc, "IoU": iou, "Acc": acc}


# ----------------------------------------------------------------------------------------------
# the data set and the predictions

def list_pairs(data: str, split: str | None):
    img_dir = os.path.join(data, "images", split) if split else os.path.join(data, "images")
    ann_dir = os.path.join(data, "annotations", split) if split else os.path.join(data, "annotations")
    for d in (img_dir, ann_dir):
        if not os.path.isdir(d):
            raise EvalError(f"{d}: no such directory (expected DATA/images and DATA/annotations"
                            + (")" if split else "; ADEChallengeData2016 needs --split validation)"))
    images = sorted(f for f in os.listdir(img_dir) if f.lower().endswith(IMAGE_EXTS)
                    and not f.startswith("."))
    if not images:
        raise EvalError(f"{img_dir}: no .jpg/.jpeg/.png images")
    seen = {}
    for f in images:
        stem = os.path.splitext(f)[0]
        if stem in seen:  # both would write <stem>.png
            raise EvalError(f"{os.path.join(img_dir, f)}: same name as {seen[stem]} (one mask per name)")
        seen[stem] = os.path.join(img_dir, f)
    pairs = []
    for f in images:
        stem = os.path.splitext(f)[0]
        ann = os.path.join(ann_dir, stem + ".png")
        if not os.path.isfile(ann):
            raise EvalError(f"{ann}: missing annotation for {os.path.join(img_dir, f)}")
        pairs.append((stem, os.path.join(img_dir, f), ann))
    return img_dir, pairs


def run_cli(args, img_dir: str, out_dir: str) -> None:
    exe = args.uniformer or os.path.join(ROOT, ".build", "release", "uniformer")
    if not os.path.isfile(exe):
        if args.uniformer:
            raise EvalError(f"{exe}: no such executable")
        print("==> swift build -c release --product uniformer", file=sys.stderr)
        subprocess.run(["swift", "build", "-c", "release", "--product", "uniformer"], cwd=ROOT, check=True)
    cmd = [exe, "segment", img_dir, "-o", out_dir, "--model", args.model]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.attention:
        cmd += ["--attention", args.attention]
    print("==> " + " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        raise EvalError(f"{exe} segment exited with status {r.returncode}")


def num_classes_of(config: str) -> tuple[int, list | None]:
    """K and class names from one of our configs (configs/*.json or a path)."""
    path = config
    if not os.path.isfile(path):
        named = os.path.join(ROOT, "configs", config if config.endswith(".json") else config + ".json")
        if os.path.isfile(named):
            path = named
        else:
            raise EvalError(f"{config}: no such config file (nor configs/{os.path.basename(named)})")
    with open(path) as f:
        cfg = json.load(f)
    try:
        k = int(cfg["model"]["decode_head"]["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise EvalError(f"{path}: no model.decode_head.num_classes (not a segmentation config)") from None
    classes = cfg.get("classes")
    return k, classes if isinstance(classes, list) and len(classes) == k else None


def evaluate(pairs, pred_dir: str, num_classes: int, reduce_zero: bool = True) -> dict:
    totals = [np.zeros(num_classes, np.int64) for _ in range(4)]
    outside = 0
    for stem, image, ann in pairs:
        pred_path = os.path.join(pred_dir, stem + ".png")
        if not os.path.isfile(pred_path):
            raise EvalError(f"{pred_path}: missing prediction for {image}")
        pred = read_label_png(pred_path, "prediction")
        label = read_label_png(ann, "annotation")
        if pred.shape != label.shape:
            raise EvalError(f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]} but its annotation "
                            f"{ann} is {label.shape[1]}x{label.shape[0]} (width x height)")
        outside += int((pred >= num_classes).sum())
        if reduce_zero:
            label = reduce_zero_label(label)
        for t, a in zip(totals, intersect_and_union(pred, label, num_classes)):
            t += a
    m = total_area_to_metrics(totals[0], totals[1], totals[2], totals[3])
    m.update(num_images=len(pairs), num_classes=num_classes, reduce_zero_label=reduce_zero,
             area_intersect=totals[0].tolist(), area_union=totals[1].tolist(),
             area_pred_label=totals[2].tolist(), area_label=totals[3].tolist(),
             pred_pixels_outside_classes=outside)
    return m


# ----------------------------------------------------------------------------------------------
# printing

def pct(v: float) -> str:
    """mmseg's np.round(v * 100, 2)."""
    return "nan" if math.isnan(v) else f"{np.round(v * 100, 2):.2f}"


def report(m: dict, classes: list | None) -> str:
    """mmseg's per-class table and summary (percent, rounded to 2 decimals), then the exact line."""
    k = m["num_classes"]
    names = classes or [str(i) for i in range(k)]
    w = max(5, max(len(n) for n in names))
    lines = [f"per class results ({m['num_images']} images, {k} classes):",
             f"| {'Class':<{w}} |  IoU  |  Acc  |"]
    for n, iou, acc in zip(names, m["IoU"], m["Acc"]):
        lines.append(f"| {n:<{w}} | {pct(iou):>5} | {pct(acc):>5} |")
    lines.append(f"summary: aAcc {pct(m['aAcc'])}  mIoU {pct(m['mIoU'])}  mAcc {pct(m['mAcc'])}")
    lines.append(f"exact: aAcc {m['aAcc']:.12f} mIoU {m['mIoU']:.12f} mAcc {m['mAcc']:.12f}")
    if m["pred_pixels_outside_classes"]:
        lines.append(f"warning: {m['pred_pixels_outside_classes']} predicted pixels are >= {k} (not counted)")
    return "\n".join(lines)


def to_json(m: dict) -> dict:
    def clean(v):
        if isinstance(v, np.ndarray):
            return [None if math.isnan(x) else float(x) for x in v.tolist()]
        if isinstance(v, float) and math.isnan(v):
            return None
        return v
    return {k: clean(v) for k, v in m.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="ADE20K-layout folder: images/ and annotations/")
    ap.add_argument("--split", help="subfolder of images/ and annotations/ (ADEChallengeData2016: validation)")
    ap.add_argument("--model", help="segmentation config (path or configs/ name); gives K and class names")
    ap.add_argument("--weights", help="checkpoint for `uniformer segment --weights`")
    ap.add_argument("--predictions", help="use these masks (<stem>.png) instead of running the CLI")
    ap.add_argument("--out", help="where the CLI writes its masks (default: a temporary folder, removed)")
    ap.add_argument("--uniformer", help="the uniformer executable (default: .build/release/uniformer, built if missing)")
    ap.add_argument("--threads", type=int, help="passed to `uniformer segment --threads`")
    ap.add_argument("--attention", help="passed to `uniformer segment --attention` (global, window:N, hybrid:N)")
    ap.add_argument("--num-classes", type=int, help="K (default: the config's decode_head.num_classes)")
    ap.add_argument("--no-reduce-zero-label", action="store_true",
                    help="labels are class indices already (not ADE20K's 0 = other)")
    ap.add_argument("--json", help="write the metrics, per-class values and pixel counts here")
    args = ap.parse_args(argv)

    try:
        classes = None
        if args.model:
            k, classes = num_classes_of(args.model)
            if args.num_classes and args.num_classes != k:
                raise EvalError(f"--num-classes {args.num_classes} but {args.model} has {k} classes")
        elif args.num_classes:
            k = args.num_classes
        else:
            raise EvalError("give --model CONFIG (or, with --predictions, --num-classes K)")
        if not 1 <= k <= 255:
            raise EvalError(f"{k} classes: masks are 8-bit, 1..255 classes")
        img_dir, pairs = list_pairs(args.data, args.split)

        tmp = None
        if args.predictions:
            pred_dir = args.predictions
            if not os.path.isdir(pred_dir):
                raise EvalError(f"{pred_dir}: no such directory")
        else:
            if not args.model:
                raise EvalError("running the CLI needs --model")
            pred_dir = args.out or (tmp := tempfile.mkdtemp(prefix="uniformer-eval-"))
            os.makedirs(pred_dir, exist_ok=True)
            run_cli(args, img_dir, pred_dir)
        try:
            m = evaluate(pairs, pred_dir, k, reduce_zero=not args.no_reduce_zero_label)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
    except EvalError as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    print(report(m, classes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(m), f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
