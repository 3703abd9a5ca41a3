"""Synthetic "shapes" scenes for the demo segmentation and detection models.

    python3 tasks/demo/shapes.py --out DIR --split {train,val,test} --count N [--seed S]
    python3 tasks/demo/shapes.py --example tasks/demo/shapes-example.png   # the README picture

Plain Python 3 with numpy, OpenCV and Pillow. Every image is drawn from its own generator,
numpy.random.default_rng([seed, index]), so a run is reproducible, `--count 100` is a prefix of
`--count 1000`, and the splits (default seeds train 1000, val 2000, test 3000, example 4000) never
share an image.

A scene: W and H drawn independently in 192..512 px; a background of a colour gradient with one to
three texture layers (stripes, a rotated checkerboard, smooth colour-noise blobs); 2..7 objects of
five classes, drawn bottom to top:

    id  name      shape (D = shortest extent, 36 px .. ~45 % of the shorter image side)
    1   circle    disc of diameter D
    2   square    square of side D
    3   triangle  near-equilateral triangle of height D (vertices jittered a little)
    4   star      five-pointed star (inner/outer radius 0.38..0.55), width D
    5   ring      annulus of outer diameter D, thickness 30..55 % of the outer radius; the hole shows
                  what lies under it

with a random rotation and a random colour that is far (RGB distance >= 100 when possible) from the
mean of what it covers, plus a slight linear shading. Each object keeps >= 80 % of its area inside
the image and, after every later object is drawn, >= 50 % of its area visible (placements that
break either rule are re-drawn; an object that cannot be placed is dropped, a scene keeps >= 2).
Masks are rasterised binary first (no anti-aliasing), colour is painted through them; Gaussian
pixel noise (sigma 1.5..6) is added to the whole picture last.

Writes into DIR:
  images/NAME.png     RGB picture
  labels/NAME.png     8-bit gray semantic labels: 0 background, 1..5 the class of the visible object
  instances/NAME.png  8-bit gray: 0 none, k = the k-th annotation of this image (1-based, json order)
  annotations.json    COCO: images [{id, file_name, width, height}], categories [{id 1..5, name}],
                      annotations [{id, image_id, category_id, bbox [x, y, w, h] of the visible mask
                      (w = max col - min col + 1), area = visible pixels, iscrowd 0,
                      segmentation {"size": [h, w], "counts": [...]} (uncompressed COCO RLE,
                      column-major, starting with a run of zeros), instance_index k}]
NAME is "<split>_<index:05d>". Annotations are listed bottom to top (the painter's order).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import cv2
import numpy as np
from PIL import Image

CLASSES = ["circle", "square", "triangle", "star", "ring"]
SPLIT_SEEDS = {"train": 1000, "val": 2000, "test": 3000, "example": 4000}
MIN_EXTENT = 36          # px, shortest extent of every object
MAX_EXTENT_FRAC = 0.45   # of the shorter image side
MIN_VISIBLE = 0.5        # of an object's full area, after occlusion
MIN_INSIDE = 0.8         # of an object's full area, inside the image
MIN_CONTRAST = 100.0     # RGB distance between object colour and the mean under it


# ---------------------------------------------------------------------------------------------
# background

def _rotated_coords(h, w, angle):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    return xx * c + yy * s, -xx * s + yy * c


def _random_colour(rng):
    return rng.uniform(0, 255, size=3).astype(np.float32)


def background(rng, h, w) -> np.ndarray:
    """float32 [h, w, 3] RGB in 0..255: gradient + 1..3 texture layers."""
    u, _ = _rotated_coords(h, w, rng.uniform(0, 2 * math.pi))
    t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    c0, c1 = _random_colour(rng), _random_colour(rng)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    kinds = rng.choice(["stripes", "checker", "blobs"], size=rng.integers(1, 4), replace=False)
    for kind in kinds:
        alpha = rng.uniform(0.2, 0.6)
        if kind == "blobs":
            cell = rng.uniform(16, 64)
            gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
            field = rng.normal(0, 1, size=(gh, gw, 3)).astype(np.float32)
            field = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
            img = img + field * rng.uniform(25, 60) * alpha * 2
            continue
        u, v = _rotated_coords(h, w, rng.uniform(0, math.pi))
        if kind == "stripes":
            period = rng.uniform(8, 60)
            wave = np.sin(2 * math.pi * u / period + rng.uniform(0, 2 * math.pi))
            m = (wave > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 * (wave + 1)
        else:
            cell = rng.uniform(10, 64)
            m = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
        col = _random_colour(rng)
        a = (alpha * m)[..., None]
        img = img * (1 - a) + col * a
    return img


# ---------------------------------------------------------------------------------------------
# objects: binary masks in a local frame

def _polygon_mask(points: np.ndarray, x0: int, y0: int, bw: int, bh: int) -> np.ndarray:
    """Binary mask [bh, bw] of a polygon given in image coordinates (pixel centres at integers)."""
    mask = np.zeros((bh, bw), np.uint8)
    pts = np.round((points - [x0, y0]) * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _disc(cx, cy, r, x0, y0, bw, bh):
    yy, xx = np.mgrid[y0:y0 + bh, x0:x0 + bw]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def shape_mask(rng, cls: int, d: float, cx: float, cy: float):
    """(mask [bh, bw] bool, x0, y0) of class `cls` (1..5) with shortest extent d around (cx, cy)."""
    theta = rng.uniform(0, 2 * math.pi)
    if cls in (1, 5):
        reach = d / 2
    elif cls == 2:
        reach = d / math.sqrt(2)
    elif cls == 3:
        reach = d / 1.5 * 1.1
    else:
        reach = d / (1 + math.cos(math.pi / 5))
    x0, y0 = int(math.floor(cx - reach)) - 2, int(math.floor(cy - reach)) - 2
    bw = bh = int(math.ceil(2 * reach)) + 5
    if cls == 1:
        m = _disc(cx, cy, d / 2, x0, y0, bw, bh)
    elif cls == 5:
        r_out = d / 2
        r_in = r_out * (1 - rng.uniform(0.30, 0.55))
        m = _disc(cx, cy, r_out, x0, y0, bw, bh) & ~_disc(cx, cy, r_in, x0, y0, bw, bh)
    else:
        if cls == 2:
            ang = theta + np.arange(4) * math.pi / 2 + math.pi / 4
            rad = np.full(4, d / math.sqrt(2))
        elif cls == 3:
            ang = theta + np.arange(3) * 2 * math.pi / 3 + rng.uniform(-0.08, 0.08, 3)
            rad = d / 1.5 * rng.uniform(0.95, 1.05, 3)
        else:
            ratio = rng.uniform(0.38, 0.55)
            ang = theta + np.arange(10) * math.pi / 5
            rad = np.where(np.arange(10) % 2 == 0, 1.0, ratio) * reach
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
        m = _polygon_mask(pts, x0, y0, bw, bh)
    return m, x0, y0


def _clip(mask, x0, y0, h, w):
    """The part of a local mask inside the image: (sub-mask, ys, xs slices) or None."""
    bh, bw = mask.shape
    ya, yb, xa, xb = max(y0, 0), min(y0 + bh, h), max(x0, 0), min(x0 + bw, w)
    if ya >= yb or xa >= xb:
        return None
    return mask[ya - y0:yb - y0, xa - x0:xb - x0], slice(ya, yb), slice(xa, xb)


# ---------------------------------------------------------------------------------------------
# scenes

def scene(rng, size=None, n_objects=None):
    """(rgb uint8 [h, w, 3], labels uint8 [h, w], instances uint8 [h, w], classes list)."""
    if size is None:
        w, h = int(rng.integers(192, 513)), int(rng.integers(192, 513))
    else:
        w, h = size
    img = background(rng, h, w)
    n = int(rng.integers(2, 8)) if n_objects is None else n_objects
    vis = np.zeros((h, w), np.int32)          # visible instance (1-based), 0 none
    full_area, classes = [], []
    max_d = max(MIN_EXTENT + 4, MAX_EXTENT_FRAC * min(h, w))
    for _ in range(n):
        cls = int(rng.integers(1, 6))
        placed = None
        visible = np.bincount(vis.ravel(), minlength=len(classes) + 1)
        for _attempt in range(40):
            d = rng.uniform(MIN_EXTENT, max_d)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            m, x0, y0 = shape_mask(rng, cls, d, cx, cy)
            area = int(m.sum())
            clipped = _clip(m, x0, y0, h, w)
            if clipped is None or clipped[0].sum() < MIN_INSIDE * area:
                continue
            sub, ys, xs = clipped
            covered = np.bincount(vis[ys, xs][sub], minlength=len(classes) + 1)
            if any(visible[j] - covered[j] < MIN_VISIBLE * full_area[j - 1] for j in range(1, len(classes) + 1)):
                continue
            placed = (sub, ys, xs, area)
            break
        if placed is None:
            continue
        sub, ys, xs, area = placed
        region = img[ys, xs]
        under = region[sub].mean(axis=0)
        best, best_dist = None, -1.0
        for _c in range(30):
            col = _random_colour(rng)
            dist = float(np.linalg.norm(col - under))
            if dist > best_dist:
                best, best_dist = col, dist
            if dist >= MIN_CONTRAST:
                break
        # slight linear shading across the object
        u, _ = _rotated_coords(sub.shape[0], sub.shape[1], rng.uniform(0, 2 * math.pi))
        u = (u - u.mean()) / max(float(np.abs(u - u.mean()).max()), 1e-6)
        shade = 1 + rng.uniform(0, 0.15) * u
        paint = np.clip(best[None, None, :] * shade[..., None], 0, 255)
        region[sub] = paint[sub]
        img[ys, xs] = region
        classes.append(cls)
        full_area.append(area)
        vis_region = vis[ys, xs]
        vis_region[sub] = len(classes)
        vis[ys, xs] = vis_region
    if len(classes) < 2:  # extremely unlikely; draw the scene again from the same stream
        return scene(rng, size, n_objects)
    img = img + rng.normal(0, rng.uniform(1.5, 6), size=img.shape)
    rgb = np.clip(np.round(img), 0, 255).astype(np.uint8)
    lut = np.array([0] + classes, np.uint8)
    labels = lut[vis]
    return rgb, labels, vis.astype(np.uint8), classes


def rle_counts(mask: np.ndarray) -> list:
    """Uncompressed COCO RLE counts of a binary mask: column-major runs, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return runs


def annotate(instances: np.ndarray, classes: list, image_id: int, first_ann_id: int) -> list:
    h, w = instances.shape
    anns = []
    for k, cls in enumerate(classes, start=1):
        m = instances == k
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        anns.append({"id": first_ann_id + k - 1, "image_id": image_id, "category_id": cls,
                     "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1], "area": int(m.sum()), "iscrowd": 0,
                     "segmentation": {"size": [h, w], "counts": rle_counts(m)}, "instance_index": k})
    return anns


def write_split(out: str, split: str, count: int, seed: int, level: int = 6) -> dict:
    for sub in ("images", "labels", "instances"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        rgb, labels, inst, classes = scene(rng)
        name = f"{split}_{i:05d}.png"
        Image.fromarray(rgb).save(os.path.join(out, "images", name), compress_level=level)
        Image.fromarray(labels).save(os.path.join(out, "labels", name), compress_level=level)
        Image.fromarray(inst).save(os.path.join(out, "instances", name), compress_level=level)
        image_id = i + 1
        coco["images"].append({"id": image_id, "file_name": name, "width": rgb.shape[1], "height": rgb.shape[0]})
        coco["annotations"] += annotate(inst, classes, image_id, len(coco["annotations"]) + 1)
    with open(os.path.join(out, "annotations.json"), "w") as f:
        json.dump(coco, f, separators=(",", ":"))
        f.write("\n")
    return coco


def write_example(path: str, seed: int) -> list:
    """A 480x360 scene with 5-6 objects of at least 4 classes (first such draw of the stream)."""
    for i in range(1000):
        rng = np.random.default_rng([seed, i])
        rgb, _, _, classes = scene(rng, size=(480, 360), n_objects=int(rng.integers(5, 7)))
        if len(classes) >= 5 and len(set(classes)) >= 4:
            Image.fromarray(rgb).save(path, compress_level=9)
            return classes
    raise RuntimeError("no example scene found")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="output folder")
    ap.add_argument("--split", choices=["train", "val", "test"])
    ap.add_argument("--count", type=int)
    ap.add_argument("--seed", type=int, help="default: train 1000, val 2000, test 3000")
    ap.add_argument("--png-level", type=int, default=6, help="PNG compression level (9: smallest files)")
    ap.add_argument("--example", metavar="PNG", help="write the README example picture instead")
    a = ap.parse_args(argv)
    t0 = time.time()
    if a.example:
        classes = write_example(a.example, SPLIT_SEEDS["example"] if a.seed is None else a.seed)
        print(f"wrote {a.example}: {[CLASSES[c - 1] for c in classes]}")
        return
    if not (a.out and a.split and a.count is not None):
        ap.error("--out, --split and --count are required (or --example)")
    seed = SPLIT_SEEDS[a.split] if a.seed is None else a.seed
    coco = write_split(a.out, a.split, a.count, seed, a.png_level)
    per_class = np.bincount([x["category_id"] for x in coco["annotations"]], minlength=6)[1:]
    print(f"{a.split}: {a.count} images, {len(coco['annotations'])} objects "
          f"({', '.join(f'{n} {c}' for n, c in zip(CLASSES, per_class))}) -> {a.out} "
          f"in {time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
