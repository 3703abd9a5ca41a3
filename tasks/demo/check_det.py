"""Check the bundled demo detector: PyTorch vs `uniformer detect` vs the ground truth.

    swift build -c release
    tasks/reference/.venv-mmdet/bin/python tasks/demo/check_det.py
        [--fixtures Tests/UniFormerTests/Fixtures/demo] [--config configs/demo-shapes-det.json]
        [--weights Sources/UniFormer/Resources/demo-shapes-det.safetensors] [--uniformer BIN]

On every image of the fixture folder (its annotations.json, COCO layout as tasks/demo/shapes.py
writes it; the images under images/ or beside the file):

  * PyTorch: the config's model dict built as tasks/demo/train_det.py builds it (mmdet 3.3 modules,
    reference UniFormer backbone, torchvision RoIAlign/NMS), the exported fp16 weights computed in
    float32, the 2.11 test pipeline and inference semantics (tasks/reference/detection_fixtures:
    cv2.imread BGR -> RGB, keep-ratio mmcv.imrescale INTER_LINEAR, normalise, pad to 32;
    two_stage_211);
  * Swift: `uniformer detect IMAGES --model CONFIG --weights WEIGHTS -o DIR` (.build/release/uniformer,
    or --uniformer BIN; `swift run -c release uniformer` when neither exists);
  * both scored against the ground truth with pycocotools (bbox and segm, AP and AP@0.5);
  * agreement: per image, Swift's detections matched one to one to PyTorch's (same label, box IoU
    >= 0.5, greedy by PyTorch score), with the largest score and box-coordinate differences, the
    mask IoU of the matched pairs and every unmatched detection (its score).

Result with the committed model (2026-11-22, 10 fixture scenes, 41 objects):
  pytorch and swift alike: box AP50 0.953  AP 0.794 | mask AP50 0.953  AP 0.810 | 326 detections
  agreement: 326 of 326 matched, max |score diff| 2.1e-6, max box coordinate difference 0.000 px,
  min mask IoU 1.0000.

Exit status 0 when the check ran (the numbers are printed; --min-box-ap50 / --min-mask-ap50 make
the Swift APs a condition).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import train_det as td  # noqa: E402  (torch threads from TRAIN_THREADS, mmdet, the model builder)
import pycocotools.mask as mask_util  # noqa: E402


def find_images_dir(fixtures: str, names: list) -> str:
    for d in (os.path.join(fixtures, "images"), fixtures):
        if all(os.path.exists(os.path.join(d, n)) for n in names):
            return d
    raise SystemExit(f"{fixtures}: images of annotations.json not found (tried images/ and the folder)")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """xyxy [N,4], [M,4] -> [N,M]"""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def as_arrays(dets: list):
    """COCO-style dicts (bbox xywh, score, label index, segmentation RLE) -> xyxy, scores, labels, rles"""
    if not dets:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), []
    b = np.array([d["bbox"] for d in dets], np.float64)
    b[:, 2:] += b[:, :2]
    return b, np.array([d["score"] for d in dets]), np.array([d["label"] for d in dets]), \
        [d["segmentation"] for d in dets]


def agreement(torch_dets: list, swift_dets: list) -> dict:
    tb, ts, tl, tm = as_arrays(torch_dets)
    sb, ss, sl, sm = as_arrays(swift_dets)
    iou = box_iou(tb, sb)
    # degenerate boxes (zero width/height: proposals clipped onto the image border, which 2.11 keeps)
    # have IoU 0 even with themselves: identical coordinates (within 0.01 px) count as IoU 1
    if len(tb) and len(sb):
        same = np.abs(tb[:, None, :] - sb[None, :, :]).max(-1) <= 0.01
        iou = np.where(same, 1.0, iou)
    used = set()
    pairs = []
    for i in np.argsort(-ts, kind="stable"):
        best, bj = 0.5, -1
        for j in range(len(sb)):
            if j in used or sl[j] != tl[i]:
                continue
            if iou[i, j] >= best:
                best, bj = iou[i, j], j
        if bj >= 0:
            used.add(bj)
            pairs.append((int(i), bj))
    out = {"torch": len(tb), "swift": len(sb), "matched": len(pairs),
           "torch_only_scores": sorted((float(ts[i]) for i in set(range(len(tb))) - {p[0] for p in pairs}),
                                       reverse=True),
           "swift_only_scores": sorted((float(ss[j]) for j in set(range(len(sb))) - used), reverse=True)}
    if pairs:
        ti, sj = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        out["max_score_diff"] = float(np.abs(ts[ti] - ss[sj]).max())
        out["max_box_diff"] = float(np.abs(tb[ti] - sb[sj]).max())
        out["min_box_iou"] = float(iou[ti, sj].min())
        # two empty masks (degenerate boxes) are identical: IoU 1
        mious = [1.0 if mask_util.area(sm[j]) == 0 and mask_util.area(tm[i]) == 0
                 else float(mask_util.iou([sm[j]], [tm[i]], [0])[0, 0]) for i, j in pairs]
        out["min_mask_iou"] = min(mious)
        out["mean_mask_iou"] = float(np.mean(mious))
    return out


def run_swift(binary: list, images: list, config: str, weights: str, out_dir: str) -> float:
    cmd = binary + ["detect", *images, "--model", config, "--weights", weights, "-o", out_dir]
    t = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "demo"))
    ap.add_argument("--config", default=td.CONFIG_OUT)
    ap.add_argument("--weights", default=td.WEIGHTS_OUT)
    ap.add_argument("--uniformer", default=None, help="the CLI binary (default .build/release/uniformer)")
    ap.add_argument("--min-box-ap50", type=float, default=None)
    ap.add_argument("--min-mask-ap50", type=float, default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    ann_file = os.path.join(args.fixtures, "annotations.json")
    if not os.path.exists(ann_file):
        raise SystemExit(f"{ann_file}: not found")
    ds = td.Shapes.__new__(td.Shapes)
    ds.__init__(args.fixtures)
    img_dir = find_images_dir(args.fixtures, [im["file_name"] for im in ds.images])
    paths = [os.path.join(img_dir, im["file_name"]) for im in ds.images]

    with open(args.config) as f:
        cfg = json.load(f)
    if cfg["classes"] != td.CLASSES:
        raise SystemExit(f"{args.config}: classes {cfg['classes']} are not {td.CLASSES}")
    td.DATA.update(cfg["data"])
    model = td.build(cfg["model"], init=False)
    td.load_exported(model, args.weights)
    model.eval()

    # PyTorch
    t = time.time()
    torch_dets, torch_results = {}, []
    with torch.no_grad():
        for im, p in zip(ds.images, paths):
            b, l, m = td.detect(model, p)
            res = td.coco_results(im["id"], b, l, m, ds.label_to_cat)
            torch_results += res
            torch_dets[im["file_name"]] = [dict(r, label=int(l[k])) for k, r in enumerate(res)]
    torch_time = time.time() - t

    # Swift
    if args.uniformer:
        binary = [args.uniformer]
    elif os.path.exists(os.path.join(ROOT, ".build", "release", "uniformer")):
        binary = [os.path.join(ROOT, ".build", "release", "uniformer")]
    else:
        binary = ["swift", "run", "-c", "release", "uniformer"]
    tmp = tempfile.mkdtemp(prefix="check_det_")
    try:
        swift_time = run_swift(binary, paths, args.config, args.weights, tmp)
        swift_dets, swift_results = {}, []
        for im, p in zip(ds.images, paths):
            out = os.path.join(tmp, os.path.splitext(os.path.basename(p))[0] + ".json")
            with open(out) as f:
                js = json.load(f)
            dets = []
            for d in js["detections"]:
                r = {"image_id": im["id"], "category_id": ds.label_to_cat[int(d["category_id"])],
                     "bbox": [float(v) for v in d["bbox"]], "score": float(d["score"]),
                     "segmentation": d["segmentation"], "label": int(d["category_id"])}
                dets.append(r)
                swift_results.append({k: v for k, v in r.items() if k != "label"})
            swift_dets[im["file_name"]] = dets
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ids = [im["id"] for im in ds.images]
    st = td.coco_eval(ann_file, torch_results, ids)
    ss = td.coco_eval(ann_file, swift_results, ids)
    n_gt = sum(len(v) for v in ds.anns.values())
    print(f"{len(ds.images)} images, {n_gt} ground-truth objects ({args.fixtures})")
    print(f"{'':10s} {'box AP50':>9s} {'box AP':>8s} {'mask AP50':>10s} {'mask AP':>8s} {'dets':>6s} {'time':>7s}")
    for name, s, res, tt in (("pytorch", st, torch_results, torch_time), ("swift", ss, swift_results, swift_time)):
        print(f"{name:10s} {s['bbox'][1]:9.4f} {s['bbox'][0]:8.4f} {s['segm'][1]:10.4f} {s['segm'][0]:8.4f} "
              f"{len(res):6d} {tt:6.1f}s")

    tot = {"torch": 0, "swift": 0, "matched": 0}
    worst = {"max_score_diff": 0.0, "max_box_diff": 0.0, "min_box_iou": 1.0, "min_mask_iou": 1.0}
    unmatched = []
    mean_mask = []
    for im in ds.images:
        a = agreement(torch_dets[im["file_name"]], swift_dets[im["file_name"]])
        for k in tot:
            tot[k] += a[k]
        if "max_score_diff" in a:
            worst["max_score_diff"] = max(worst["max_score_diff"], a["max_score_diff"])
            worst["max_box_diff"] = max(worst["max_box_diff"], a["max_box_diff"])
            worst["min_box_iou"] = min(worst["min_box_iou"], a["min_box_iou"])
            worst["min_mask_iou"] = min(worst["min_mask_iou"], a["min_mask_iou"])
            mean_mask.append(a["mean_mask_iou"])
        if a["torch_only_scores"] or a["swift_only_scores"]:
            unmatched.append((im["file_name"], a["torch_only_scores"], a["swift_only_scores"]))
        if args.verbose:
            print(im["file_name"], json.dumps(a))
    print(f"agreement: {tot['matched']} matched of {tot['torch']} PyTorch / {tot['swift']} Swift detections; "
          f"max |score diff| {worst['max_score_diff']:.2e}, max box coordinate diff {worst['max_box_diff']:.3f} px, "
          f"min box IoU {worst['min_box_iou']:.4f}, min mask IoU {worst['min_mask_iou']:.4f}"
          + (f" (mean per image {np.mean(mean_mask):.4f})" if mean_mask else ""))
    for name, a, b in unmatched:
        print(f"  unmatched in {name}: pytorch only {len(a)}, scores {[round(x, 4) for x in a[:8]]}; "
              f"swift only {len(b)}, scores {[round(x, 4) for x in b[:8]]}")
    ok = True
    if args.min_box_ap50 is not None and ss["bbox"][1] < args.min_box_ap50:
        print(f"FAIL: swift box AP50 {ss['bbox'][1]:.4f} < {args.min_box_ap50}")
        ok = False
    if args.min_mask_ap50 is not None and ss["segm"][1] < args.min_mask_ap50:
        print(f"FAIL: swift mask AP50 {ss['segm'][1]:.4f} < {args.min_mask_ap50}")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
