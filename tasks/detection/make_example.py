#!/usr/bin/env python3
"""Writes tasks/detection/example/: a 4-image COCO-layout folder for trying evaluate.py end to end.

    python3 tasks/detection/make_example.py [--uniformer .build/release/uniformer]

The pictures are generated (a two-colour gradient with a few flat anti-aliased shapes); one is a
JPEG. Their ground truth comes from what the 5-class fixture model
(Tests/UniFormerTests/Fixtures/detection/mask_rcnn_global/config.json, random but informative
weights) itself detects in them, with `uniformer detect`, changed so that the score is high but
not 1.0:
  * the detections scoring at least 0.08 become objects (the weaker ones stay false positives);
  * about half of the objects are moved and resized a little (box: shift up to 8% of its size,
    scale 0.9-1.1; mask: shifted by -1, 0 or 1 pixel in x and in y), so the strict IoU thresholds miss some;
  * one object is dropped from the ground truth (its detection becomes a false positive), and one
    object that nothing detects is added (a false negative);
  * the masks are the detected masks, moved with their boxes, stored as COCO RLE (the random
    model's masks are ragged, with holes and specks, which polygons cannot hold); the added object's
    mask is a polygon (its box), so both forms of COCO ground truth occur.
The model's classes are made-up names (apple, kite, lamp, boat, chair); annotations/instances_val.json
names its categories the same way, with ids that are not 1..5 (apple 53, kite 38, boat 9 and chair
62 as in COCO, lamp 91, which COCO does not use), so evaluate.py maps the labels by class name.
Image ids (201-204) are not file names: they are looked up in the annotation file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pycocotools.mask as mask_util

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "example")
CONFIG = os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "detection", "mask_rcnn_global", "config.json")
SEED = 20250301
CATEGORY_IDS = {"apple": 53, "kite": 38, "lamp": 91, "boat": 9, "chair": 62}
# name, size (w, h), image id
PICTURES = [("harbour.png", (240, 170), 201), ("kitchen.jpg", (200, 260), 202),
            ("garden.png", (256, 192), 203), ("desk.png", (180, 180), 204)]
OBJECT_SCORE = 0.08


def picture(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """BGR uint8: gradient background, 4-7 flat shapes (ellipse, box, triangle), anti-aliased."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    t = (0.6 * x / (w - 1) + 0.4 * y / (h - 1))[..., None]
    c0, c1 = rng.integers(30, 226, 3), rng.integers(30, 226, 3)
    img = np.ascontiguousarray((c0 * (1 - t) + c1 * t).round().astype(np.uint8))
    for k in range(int(rng.integers(4, 8))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        rx, ry = rng.uniform(0.08, 0.25) * w, rng.uniform(0.08, 0.25) * h
        kind = k % 3
        if kind == 0:
            cv2.ellipse(img, (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360, colour,
                        -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (int(cx - rx), int(cy - ry)), (int(cx + rx), int(cy + ry)), colour, -1, cv2.LINE_AA)
        else:
            pts = np.array([[cx, cy - ry], [cx - rx, cy + ry], [cx + rx, cy + ry * rng.uniform(0.5, 1)]], np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    return img


def clip_box(b, w: int, h: int) -> list:
    x1, y1 = max(0.0, b[0]), max(0.0, b[1])
    x2, y2 = min(float(w), b[0] + b[2]), min(float(h), b[1] + b[3])
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def iou_xywh(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uniformer", default=os.path.join(ROOT, ".build", "release", "uniformer"))
    a = ap.parse_args()
    config = json.load(open(CONFIG))
    classes = config["classes"]
    rng = np.random.default_rng(SEED)
    shutil.rmtree(OUT, ignore_errors=True)
    img_dir = os.path.join(OUT, "val")
    os.makedirs(img_dir)
    os.makedirs(os.path.join(OUT, "annotations"))
    for name, (w, h), _ in PICTURES:
        img = picture(w, h, rng)
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if name.endswith(".jpg") else [cv2.IMWRITE_PNG_COMPRESSION, 9]
        cv2.imwrite(os.path.join(img_dir, name), img, params)

    tmp = tempfile.mkdtemp()
    try:
        weights = os.path.join(os.path.dirname(CONFIG), config["weights"])
        subprocess.run([a.uniformer, "detect", img_dir, "--model", CONFIG, "--weights", weights, "-o", tmp],
                       check=True)
        dets = {name: json.load(open(os.path.join(tmp, os.path.splitext(name)[0] + ".json")))["detections"]
                for name, _, _ in PICTURES}
    finally:
        shutil.rmtree(tmp)

    images, anns, log = [], [], []
    objects = [(name, d) for name, _, _ in PICTURES for d in dets[name] if d["score"] >= OBJECT_SCORE]
    drop = objects[int(rng.integers(len(objects)))][1]
    for name, (w, h), image_id in PICTURES:
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for d in dets[name]:
            if d["score"] < OBJECT_SCORE:
                continue
            if d is drop:
                log.append(f"{name}: dropped the {d['label']} at {[round(v, 1) for v in d['bbox']]} "
                           f"(score {d['score']:.3f})")
                continue
            x, y, bw, bh = d["bbox"]
            cx, cy = x + bw / 2, y + bh / 2
            s, dx, dy = 1.0, 0.0, 0.0
            if rng.random() < 0.5:
                s = float(rng.uniform(0.9, 1.1))
                dx, dy = float(rng.uniform(-0.08, 0.08) * bw), float(rng.uniform(-0.08, 0.08) * bh)
            box = clip_box([cx + dx - bw * s / 2, cy + dy - bh * s / 2, bw * s, bh * s], w, h)
            mask = mask_util.decode({"size": d["segmentation"]["size"], "counts": d["segmentation"]["counts"].encode()})
            if s != 1.0:  # a moved object's mask moves by up to a pixel (ragged masks lose IoU fast)
                mx, my = (int(v) for v in rng.integers(-1, 2, 2))
                moved = cv2.warpAffine(mask, np.float64([[1, 0, mx], [0, 1, my]]), (w, h), flags=cv2.INTER_NEAREST)
            else:
                moved = mask
            rle = mask_util.encode(np.asfortranarray(moved))
            segm = {"size": [h, w], "counts": rle["counts"].decode()}
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": CATEGORY_IDS[d["label"]],
                         "bbox": box, "area": float(mask_util.area(rle)), "segmentation": segm, "iscrowd": 0})
    # one object nothing detects: a box overlapping no detection (IoU < 0.05), in the last picture
    name, (w, h), image_id = PICTURES[-1]
    for _ in range(1000):
        bw, bh = float(rng.uniform(0.15, 0.3) * w), float(rng.uniform(0.15, 0.3) * h)
        box = [round(float(rng.uniform(0, w - bw)), 2), round(float(rng.uniform(0, h - bh)), 2), round(bw, 2), round(bh, 2)]
        if all(iou_xywh(box, d["bbox"]) < 0.05 for d in dets[name]):
            break
    present = sorted({d["label"] for _, d in objects})  # a class that has other objects (boat has none)
    label = present[int(rng.integers(len(present)))]
    x, y, bw, bh = box
    poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
    anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": CATEGORY_IDS[label], "bbox": box,
                 "area": round(bw * bh, 2), "segmentation": [poly], "iscrowd": 0})
    log.append(f"{name}: added an undetected {label} at {box}")

    data = {"info": {"description": "uniformer detect evaluation example (tasks/detection/make_example.py): "
                                    "generated pictures, ground truth from the mask_rcnn_global fixture model's "
                                    "own detections, jittered, one dropped, one added"},
            "images": images, "annotations": anns,
            "categories": [{"id": CATEGORY_IDS[c], "name": c, "supercategory": "fixture"} for c in classes]}
    with open(os.path.join(OUT, "annotations", "instances_val.json"), "w") as f:
        json.dump(data, f, separators=(",", ":"))
    n_dets = sum(len(v) for v in dets.values())
    print(f"{len(images)} images, {n_dets} detections, {len(anns)} ground-truth objects "
          f"(from the {len(objects)} detections scoring >= {OBJECT_SCORE})", file=sys.stderr)
    for line in log:
        print("  " + line, file=sys.stderr)


if __name__ == "__main__":
    main()
