#!/usr/bin/env python3
"""COCO box and mask AP of `uniformer detect` on a COCO-layout folder, scored as mmdetection does.

    python3 tasks/detection/evaluate.py /data/coco --model configs/mask-rcnn-hybrid-small-1x.json \
        --weights mask_rcnn_1x_hybrid_small.pth                    # runs the CLI over val2017/
    python3 tasks/detection/evaluate.py /data/coco --results results.json   # scores a results file

DATA holds `<split>/` (the images) and `annotations/instances_<split>.json` (COCO 2017:
`--split val2017`, the default); `--images DIR` and `--annotations FILE` name them directly.

Without `--results`, the Swift CLI is run once over the images:
  * a model with the 80 COCO classes, on an annotation file whose categories carry COCO's ids:
      uniformer detect IMAGES --model CONFIG --weights W --format coco --annotations ANN -o RESULTS
    (the CLI maps the 80 labels to COCO's 91 ids and takes image_id from ANN by file name);
  * any other class list (e.g. a 5-class model): uniformer detect IMAGES -o DIR (one JSON per
    image), and the labels are mapped onto ANN's category ids by class name (the config's
    `classes` against ANN's `categories[].name`), or by `--category-ids 3,1,...` (one id per
    class, in the config's class order). The converted list is the same COCO results format.
`--out FILE` keeps the results list (default: a temporary file), so it can be scored again with
`--results FILE`.

Scoring (pycocotools COCOeval, as mmdet 2.11 `CocoDataset.evaluate` and mmdet 3.3 `CocoMetric`):
  imgIds  = every image of ANN (in file order; `--limit N`: the first N, and only those are run);
  catIds  = the ids the model's classes map to, in class order;
  maxDets = [100, 300, 1000] (mmdet's proposal_nums: the summary's AR lines read AR@100/300/1000;
            the AP lines are those of maxDets 100, as no image has more than 100 detections);
  iouThrs = 0.50:0.05:0.95.
`bbox` always; `segm` when the results carry segmentations and ANN's annotations do too. For segm,
mmdet 2.11 (the version the UniFormer checkpoints were evaluated with) hands the results to
pycocotools *with* their boxes, so a detection's area is its box's w*h; mmdet >= 2.12 / 3.x drop the
box first, so the area is the mask's. This only moves detections between the small/medium/large
ranges (APs/APm/APl); AP, AP50 and AP75 are the same. The 2.11 way is the default here
(`--segm-area box`); `--segm-area mask` gives the 3.x numbers.

Prints, per metric, pycocotools' 12-line summary, mmdet's `<metric>_mAP_copypaste:` line and the
AP/AP50/AP75/APs/APm/APl values as mmdet's CocoMetric reports them (`coco/bbox_mAP: 0.4120 ...`).
`--json OUT` writes the 12 stats of each metric unrounded, and what was run.
`--classwise` adds the per-category AP table. Errors (missing files, images not in ANN, results
naming unknown images or categories) stop the run with one line naming the file; exit status 2.
Needs numpy and pycocotools only. tasks/detection/check_with_mmdet.py shows that the numbers equal
mmdet 3.3's CocoMetric and mmdet 2.11's CocoDataset.evaluate.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE_EXTS = (".jpg", ".jpeg", ".jpe", ".png")
MAX_DETS = [100, 300, 1000]
METRIC_NAMES = ["mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l"]


class EvalError(Exception):
    """A problem with the inputs; the message names the file."""


def quiet():
    """pycocotools prints progress ('loading annotations...', 'DONE (t=...)') on stdout."""
    return contextlib.redirect_stdout(io.StringIO())


# ----------------------------------------------------------------------------------------------
# inputs

def load_json(path: str, what: str):
    if not os.path.isfile(path):
        raise EvalError(f"{path}: no such {what}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise EvalError(f"{path}: cannot read the {what}: {e}") from None


def load_annotations(path: str):
    """pycocotools COCO of a checked instances file."""
    from pycocotools.coco import COCO
    data = load_json(path, "annotation file")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise EvalError(f"{path}: not a COCO instances file (needs 'images', 'annotations' and 'categories' lists)")
    seen = {}
    for im in data["images"]:
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise EvalError(f"{path}: an entry of 'images' lacks an integer 'id' or a 'file_name': {str(im)[:80]}")
        name = os.path.basename(im["file_name"])
        if name in seen:
            raise EvalError(f"{path}: two images named {name} (ids {seen[name]} and {im['id']})")
        seen[name] = im["id"]
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise EvalError(f"{path}: an entry of 'categories' lacks an integer 'id' or a 'name': {str(c)[:80]}")
    img_ids = {im["id"] for im in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    for a in data["annotations"]:
        ok = isinstance(a, dict) and a.get("image_id") in img_ids and a.get("category_id") in cat_ids \
            and isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4 and "area" in a and "id" in a
        if not ok:
            raise EvalError(f"{path}: an annotation needs id, image_id and category_id (known ones), bbox "
                            f"[x, y, w, h] and area: {str(a)[:100]}")
    coco = COCO()
    coco.dataset = data
    with quiet():
        coco.createIndex()
    return coco


def resolve_model(model: str) -> str:
    if os.path.isfile(model):
        return model
    for cand in (os.path.join(ROOT, "configs", model), os.path.join(ROOT, "configs", model + ".json")):
        if os.path.isfile(cand):
            return cand
    raise EvalError(f"{model}: no such config (a path, or the name of one in configs/)")


def model_classes(config_path: str, config: dict) -> list:
    classes = config.get("classes")
    if classes is None:
        raise EvalError(f"{config_path}: the config has no 'classes' list")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise EvalError(f"{config_path}: 'classes' must be a list of names")
    return classes


def coco_meta():
    meta = load_json(os.path.join(ROOT, "tasks", "configs", "coco.json"), "class list")
    return meta["classes"], meta["category_ids"]


def category_mapping(args, classes: list, coco, ann_path: str, config_path: str):
    """(ids per class, in class order; whether the CLI's own --format coco mapping applies)."""
    by_name = {c["name"]: c["id"] for c in coco.dataset["categories"]}
    known = set(by_name.values())
    if args.category_ids is not None:
        try:
            ids = [int(v) for v in args.category_ids.split(",")]
        except ValueError:
            raise EvalError(f"--category-ids: not a comma-separated list of integers: {args.category_ids}") from None
        if len(ids) != len(classes):
            raise EvalError(f"--category-ids: {len(ids)} ids for the {len(classes)} classes of {config_path}")
        for i, c in zip(ids, classes):
            if i not in known:
                raise EvalError(f"{ann_path}: no category with id {i} (given for class '{c}' by --category-ids)")
        if len(set(ids)) != len(ids):
            raise EvalError(f"--category-ids: an id is given twice: {args.category_ids}")
        return ids, False
    coco_names, coco_ids = coco_meta()
    if classes == coco_names and all(by_name.get(n, i) == i for n, i in zip(coco_names, coco_ids)):
        # COCO's classes and ids (the CLI maps labels to them); classes absent from ANN are not scored
        return [i for n, i in zip(coco_names, coco_ids) if n in by_name], True
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise EvalError(f"{ann_path}: no category named '{missing[0]}' (a class of {config_path}); "
                        "map the classes with --category-ids")
    return [by_name[c] for c in classes], False


def image_list(args, coco, ann_path: str):
    """[(image id, path)] of the evaluated images, in ANN order; checks folder and ANN agree."""
    img_dir = args.images
    if not os.path.isdir(img_dir):
        raise EvalError(f"{img_dir}: no such image directory")
    files = sorted(f for f in os.listdir(img_dir) if f.lower().endswith(IMAGE_EXTS) and not f.startswith("."))
    ids = {os.path.basename(im["file_name"]): im["id"] for im in coco.dataset["images"]}
    for f in files:
        if f not in ids:
            raise EvalError(f"{os.path.join(img_dir, f)}: not in {ann_path} (no image with this file_name)")
    present = set(files)
    images = coco.dataset["images"][: args.limit] if args.limit else coco.dataset["images"]
    for im in images:
        name = os.path.basename(im["file_name"])
        if name not in present:
            raise EvalError(f"{os.path.join(img_dir, name)}: missing (image {im['id']} of {ann_path})")
    return [(im["id"], os.path.join(img_dir, os.path.basename(im["file_name"]))) for im in images]


# ----------------------------------------------------------------------------------------------
# running the CLI

def cli(args) -> str:
    exe = args.uniformer or os.path.join(ROOT, ".build", "release", "uniformer")
    if not os.path.isfile(exe):
        if args.uniformer:
            raise EvalError(f"{exe}: no such executable")
        print("==> swift build -c release --product uniformer", file=sys.stderr)
        subprocess.run(["swift", "build", "-c", "release", "--product", "uniformer"], cwd=ROOT, check=True)
    return exe


def run_detect(args, config_path: str, weights: str, images: list, all_images: bool, ann_path: str,
               coco_format: bool, cat_ids: list, out_path: str) -> list:
    """Runs `uniformer detect` and returns the COCO results list (also written to out_path)."""
    exe = cli(args)
    inputs = [args.images] if all_images else [p for _, p in images]
    common = ["--model", config_path, "--weights", weights]
    for flag, value in (("--threads", args.threads), ("--attention", args.attention), ("--score-thr", args.score_thr)):
        if value is not None:
            common += [flag, str(value)]
    tmp = tempfile.mkdtemp(prefix="uniformer-detect-")
    try:
        if coco_format:
            cmd = [exe, "detect", *inputs, *common, "--format", "coco", "--annotations", ann_path,
                   "-o", os.path.join(tmp, "results.json")]
        else:
            cmd = [exe, "detect", *inputs, *common, "-o", tmp]
        shown = cmd if len(inputs) < 8 else cmd[:2] + [f"<{len(inputs)} images>"] + cmd[2 + len(inputs):]
        print("==> " + " ".join(shown), file=sys.stderr)
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            raise EvalError(f"{exe}: detect failed with exit status {rc} (its message is above)")
        if coco_format:
            results = load_json(os.path.join(tmp, "results.json"), "results file")
        else:
            results = convert_per_image(tmp, images, cat_ids)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(out_path + ".tmp", "w") as f:
        json.dump(results, f)
    os.replace(out_path + ".tmp", out_path)
    return results


def convert_per_image(out_dir: str, images: list, cat_ids: list) -> list:
    """The CLI's per-image JSON (category_id = class index) -> COCO results (ids of ANN)."""
    results = []
    for image_id, path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        obj = load_json(os.path.join(out_dir, stem + ".json"), f"detections of {path}")
        if os.path.basename(obj.get("image", "")) != os.path.basename(path):
            raise EvalError(f"{os.path.join(out_dir, stem + '.json')}: is for {obj.get('image')}, not {path}")
        for d in obj["detections"]:
            r = {"image_id": image_id, "category_id": cat_ids[d["category_id"]], "bbox": d["bbox"], "score": d["score"]}
            if "segmentation" in d:
                r["segmentation"] = d["segmentation"]
            results.append(r)
    return results


# ----------------------------------------------------------------------------------------------
# scoring

def check_results(results, path: str, coco, img_ids: list) -> None:
    if not isinstance(results, list):
        raise EvalError(f"{path}: not a COCO results list")
    imgs, cats = set(img_ids), set(coco.getCatIds())
    for r in results:
        if not isinstance(r, dict) or not isinstance(r.get("bbox"), list) or len(r["bbox"]) != 4 \
                or not isinstance(r.get("score"), (int, float)):
            raise EvalError(f"{path}: a result needs image_id, category_id, bbox [x, y, w, h] and score: {str(r)[:100]}")
        if r.get("image_id") not in imgs:
            where = "in" if r.get("image_id") in coco.imgs else "not in"
            raise EvalError(f"{path}: image_id {r.get('image_id')} is {where} the annotation file"
                            + (" but not among the evaluated images (--limit)" if where == "in" else ""))
        if r.get("category_id") not in cats:
            raise EvalError(f"{path}: category_id {r.get('category_id')} is not in the annotation file")
        seg = r.get("segmentation")
        if seg is not None and not (isinstance(seg, dict) and "size" in seg and "counts" in seg):
            raise EvalError(f"{path}: a segmentation must be a COCO RLE {{size, counts}}: {str(seg)[:80]}")


def load_res(coco, results: list):
    """coco.loadRes, also for an empty list (then every AP is 0)."""
    from pycocotools.coco import COCO
    if results:
        with quiet():
            return coco.loadRes(copy.deepcopy(results))
    res = COCO()
    res.dataset = {"images": list(coco.dataset["images"]), "categories": copy.deepcopy(coco.dataset["categories"]),
                   "annotations": []}
    with quiet():
        res.createIndex()
    return res


def score(coco, results: list, iou_type: str, img_ids: list, cat_ids: list, max_dets: list) -> tuple:
    from pycocotools.cocoeval import COCOeval
    ev = COCOeval(coco, load_res(coco, results), iou_type)
    ev.params.catIds = list(cat_ids)
    ev.params.imgIds = list(img_ids)
    ev.params.maxDets = list(max_dets)
    ev.params.iouThrs = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
    with quiet():
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    return [float(s) for s in ev.stats], summary.getvalue(), ev


def classwise_table(coco, ev, cat_ids: list) -> str:
    """mmdet's per-category AP (area all, the last maxDets), in class order. (mmdet indexes the
    precision array by the position in its own cat_ids, right only when they are sorted, as COCO's.)"""
    precisions = ev.eval["precision"]  # [iou, recall, class, area, maxDets]
    order = list(ev.params.catIds)       # COCOeval.evaluate sorted them (np.unique)
    rows = []
    for cid in cat_ids:
        p = precisions[:, :, order.index(cid), 0, -1]
        p = p[p > -1]
        rows.append((coco.loadCats(cid)[0]["name"], f"{float(np.mean(p)) if p.size else float('nan'):0.3f}"))
    width = max(len("category"), *(len(n) for n, _ in rows))
    lines = [f"{'category':<{width}}  AP", f"{'-' * width}  -----"]
    lines += [f"{n:<{width}}  {ap}" for n, ap in rows]
    return "\n".join(lines)


def has_segm_gt(coco, img_ids: list, cat_ids: list) -> bool:
    anns = coco.loadAnns(coco.getAnnIds(imgIds=img_ids, catIds=cat_ids))
    return bool(anns) and all(a.get("segmentation") for a in anns)


# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", help="COCO-layout folder: <split>/ and annotations/instances_<split>.json")
    ap.add_argument("--split", default="val2017")
    ap.add_argument("--images", help="image folder (default DATA/<split>)")
    ap.add_argument("--annotations", help="instances JSON (default DATA/annotations/instances_<split>.json)")
    ap.add_argument("--model", help="config (path or name in configs/); runs the CLI")
    ap.add_argument("--weights", help="checkpoint (default: the config's \"weights\", relative to it)")
    ap.add_argument("--results", help="score this COCO results list instead of running the CLI")
    ap.add_argument("--out", help="keep the results list written by the CLI run here")
    ap.add_argument("--uniformer", help="the executable (default .build/release/uniformer, built if missing)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--attention", help="stage-3 override passed to the CLI (global, window:N, hybrid:N)")
    ap.add_argument("--score-thr", type=float, help="passed to the CLI")
    ap.add_argument("--category-ids", help="one annotation category id per class of the config, comma-separated")
    ap.add_argument("--limit", type=int, help="only the first N images of the annotation file")
    ap.add_argument("--segm-area", choices=["box", "mask"], default="box",
                    help="area of a mask result: its box's (mmdet 2.11, default) or its mask's (mmdet 3.x)")
    ap.add_argument("--max-dets", default="100,300,1000",
                    help="COCOeval maxDets (mmdet: 100,300,1000; pycocotools' default: 1,10,100)")
    ap.add_argument("--classwise", action="store_true", help="per-category AP table")
    ap.add_argument("--json", help="write the metrics here")
    return ap.parse_args(argv)


def evaluate(args) -> dict:
    if args.results is None and args.model is None:
        raise EvalError("give --model CONFIG (run the CLI) or --results FILE (score a results list)")
    if args.data is None and (args.images is None or args.annotations is None):
        raise EvalError("give DATA, or both --images and --annotations")
    if args.data is not None and not os.path.isdir(args.data):
        raise EvalError(f"{args.data}: no such directory")
    args.images = args.images or os.path.join(args.data, args.split)
    ann_path = args.annotations or os.path.join(args.data, "annotations", f"instances_{args.split}.json")
    if args.limit is not None and args.limit < 1:
        raise EvalError("--limit must be at least 1")
    try:
        max_dets = [int(v) for v in args.max_dets.split(",")]
        assert len(max_dets) == 3 and all(m > 0 for m in max_dets)
    except (ValueError, AssertionError):
        raise EvalError(f"--max-dets: three positive integers, e.g. 100,300,1000 (got {args.max_dets})") from None
    coco = load_annotations(ann_path)

    if args.results is not None:
        images = [(im["id"], None) for im in (coco.dataset["images"][: args.limit] if args.limit else coco.dataset["images"])]
        results = load_json(args.results, "results file")
        if args.model is not None or args.category_ids is not None:
            if args.model is not None:
                config_path = resolve_model(args.model)
                classes = model_classes(config_path, load_json(config_path, "config"))
            else:
                config_path, classes = "--category-ids", [str(i) for i in args.category_ids.split(",")]
            cat_ids, _ = category_mapping(args, classes, coco, ann_path, config_path)
        else:  # every category of ANN (as pycocotools); --model or --category-ids restrict them
            cat_ids = [c["id"] for c in coco.dataset["categories"]]
        results_path = args.results
    else:
        config_path = resolve_model(args.model)
        config = load_json(config_path, "config")
        classes = model_classes(config_path, config)
        weights = args.weights
        if weights is None:
            if not isinstance(config.get("weights"), str):
                raise EvalError(f"{config_path}: no \"weights\" in the config; give --weights")
            weights = os.path.join(os.path.dirname(os.path.abspath(config_path)), config["weights"])
        if not os.path.isfile(weights):
            raise EvalError(f"{weights}: no such checkpoint")
        cat_ids, coco_format = category_mapping(args, classes, coco, ann_path, config_path)
        images = image_list(args, coco, ann_path)
        keep = args.out is not None
        results_path = args.out or os.path.join(tempfile.mkdtemp(prefix="uniformer-eval-"), "results.json")
        try:
            results = run_detect(args, config_path, weights, images, not args.limit, ann_path, coco_format,
                                 cat_ids, results_path)
        finally:
            if not keep:
                shutil.rmtree(os.path.dirname(results_path), ignore_errors=True)
    img_ids = [i for i, _ in images]
    check_results(results, results_path, coco, img_ids)

    metrics = ["bbox"]
    with_masks = bool(results) and all("segmentation" in r for r in results)
    if with_masks and has_segm_gt(coco, img_ids, cat_ids):
        metrics.append("segm")
    elif with_masks:
        print("note: the annotations have no segmentations: bbox only", file=sys.stderr)
    n_anns = len(coco.getAnnIds(imgIds=img_ids, catIds=cat_ids))
    print(f"images: {len(img_ids)}  ground-truth instances: {n_anns}  categories: {len(cat_ids)}  "
          f"detections: {len(results)}")
    out = {"images": len(img_ids), "instances": n_anns, "detections": len(results), "category_ids": cat_ids,
           "max_dets": max_dets, "segm_area": args.segm_area, "annotations": ann_path}
    for metric in metrics:
        res = results
        if metric == "segm" and args.segm_area == "mask":
            res = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
        stats, summary, ev = score(coco, res, metric, img_ids, cat_ids, max_dets)
        print(f"\nEvaluating {metric}...")
        print(summary, end="")
        if args.classwise:
            print(classwise_table(coco, ev, cat_ids))
        ap = stats[:6]
        print(f"{metric}_mAP_copypaste: " + " ".join(f"{v:.3f}" for v in ap))
        out[metric] = {"stats": stats, **{f"{metric}_{n}": float(f"{round(v, 3)}") for n, v in zip(METRIC_NAMES, ap)}}
    print()
    print("  ".join(f"coco/{m}_{n}: {out[m][f'{m}_{n}']:.4f}" for m in metrics for n in METRIC_NAMES))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out = evaluate(args)
    except EvalError as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
