#!/usr/bin/env python3
"""Checks tasks/detection/evaluate.py against mmdetection's own COCO evaluation, on the example folder.

    bash tasks/reference/mmdet_env.sh                     # the mmdet 3.3 venv (once)
    tasks/reference/.venv-mmdet/bin/python tasks/detection/check_with_mmdet.py [--uniformer BIN]

1. Runs evaluate.py as a program on tasks/detection/example (the 5-class fixture model, labels mapped
   by class name onto the example's category ids 53, 38, 91, 9, 62), with --segm-area box and mask.
2. mmdet 3.3.0's CocoMetric (mmdet/evaluation/metrics/coco_metric.py) on the same detections, fed as
   the model's predictions (xyxy boxes, scores, labels, RLE masks) with the example's annotation file:
   all 12 stats of bbox and segm must equal evaluate.py's with --segm-area mask (3.x drops the box of
   a mask result before loadRes).
3. mmdet 2.11.0's CocoDataset.evaluate, compiled at run time from the Sense-X/UniFormer mirror
   ($UNIFORMER_MIRROR, object_detection/mmdet/datasets/coco.py) and called on a stand-in dataset
   whose format_results returns the results as 2.11's _det2json / _segm2json lay them out (bbox file
   without masks; segm file with box and mask): the 12 stats must equal evaluate.py's default
   (--segm-area box). Skipped, with a note, when there is no mirror.
4. The two ways evaluate.py runs the CLI give the same thing: an 80-class copy of the fixture model
   (the 5 classes at COCO labels 0-4 and 75 classes that never score: zero weights, bias -1e4) goes
   through `uniformer detect --format coco` (the CLI's 80 -> 91 mapping), the 5-class model through the
   per-image JSON with --category-ids 1,2,3,4,5, both on a copy of the annotation file renamed to COCO's
   80 categories (apple -> person 1, kite -> bicycle 2, ...): equal results lists (up to float32 noise in
   the scores) and equal stats, which also equal those of step 1 (same ground truth under other names).

Stats are compared to 1e-9 (observed: 0). Prints what it compared and exits non-zero on a mismatch.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import io
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tasks", "reference"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

EXAMPLE = os.path.join(HERE, "example")
ANN = os.path.join(EXAMPLE, "annotations", "instances_val.json")
FIXTURE = os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "detection", "mask_rcnn_global", "config.json")
MIRROR = os.environ.get("UNIFORMER_MIRROR", "/work/.mirror/Sense-X+UniFormer/repo")
TOL = 1e-9


def evaluate_py(uniformer: str, *args) -> tuple[dict, list]:
    """Runs evaluate.py; returns (its --json metrics, its results list)."""
    tmp = tempfile.mkdtemp()
    try:
        cmd = [sys.executable, os.path.join(HERE, "evaluate.py"), *args, "--json", os.path.join(tmp, "m.json")]
        if "--results" not in args:
            cmd += ["--uniformer", uniformer, "--out", os.path.join(tmp, "r.json")]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"evaluate.py failed: {' '.join(cmd)}\n{p.stderr}")
        metrics = json.load(open(os.path.join(tmp, "m.json")))
        results = json.load(open(os.path.join(tmp, "r.json"))) if "--results" not in args else None
        metrics["stdout"], metrics["stderr"] = p.stdout, p.stderr
        return metrics, results
    finally:
        shutil.rmtree(tmp)


class Recorder:
    """Wraps pycocotools' COCOeval to keep the stats of every summarize() (mmdet rounds them)."""
    stats: dict = {}

    @classmethod
    def make(cls):
        from pycocotools.cocoeval import COCOeval

        class RecordingCOCOeval(COCOeval):
            def summarize(self):
                super().summarize()
                cls.stats[self.params.iouType] = [float(s) for s in self.stats]
        return RecordingCOCOeval


def compare(name: str, ours: dict, theirs: dict, metrics=("bbox", "segm")) -> float:
    worst = 0.0
    for m in metrics:
        a, b = np.array(ours[m]["stats"]), np.array(theirs[m])
        d = float(np.abs(a - b).max())
        worst = max(worst, d)
        if d > TOL:
            sys.exit(f"MISMATCH {name} {m}:\n  evaluate.py {a.tolist()}\n  mmdet       {b.tolist()}")
    print(f"ok  {name}: bbox and segm, 12 stats each, max |diff| {worst:.1e}")
    return worst


# ----------------------------------------------------------------------------------------------
# mmdet 3.3 CocoMetric

def mmdet3_coco_metric(results: list, classes: list) -> dict:
    import detection_fixtures  # noqa: F401  (mmcv._ext on torchvision, mmdet's default scope)
    import mmdet.evaluation.metrics.coco_metric as cm
    Recorder.stats = {}
    cm.COCOeval = Recorder.make()
    metric = cm.CocoMetric(ann_file=ANN, metric=["bbox", "segm"])
    metric.dataset_meta = {"classes": classes}
    coco = json.load(open(ANN))
    label_of = {c["id"]: classes.index(c["name"]) for c in coco["categories"]}
    samples = []
    for im in coco["images"]:
        rs = [r for r in results if r["image_id"] == im["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rs)],
                             dtype=torch.float64).reshape(-1, 4)
        samples.append({"img_id": im["id"], "ori_shape": (im["height"], im["width"]),
                        "pred_instances": {"bboxes": boxes,
                                           "scores": torch.tensor([r["score"] for r in rs], dtype=torch.float64),
                                           "labels": torch.tensor([label_of[r["category_id"]] for r in rs]),
                                           "masks": [copy.deepcopy(r["segmentation"]) for r in rs]}})
    metric.process({}, samples)
    out = metric.compute_metrics(metric.results)
    return {**Recorder.stats, "rounded": dict(out)}


# ----------------------------------------------------------------------------------------------
# mmdet 2.11 CocoDataset.evaluate, from the mirror

def mmdet211_evaluate(results: list, classes: list) -> dict | None:
    if not os.path.isdir(MIRROR):
        print(f"note: no Sense-X/UniFormer mirror at {MIRROR} ($UNIFORMER_MIRROR): mmdet 2.11 not checked")
        return None
    ver = subprocess.run(["git", "-C", MIRROR, "show", "HEAD:object_detection/mmdet/version.py"],
                         capture_output=True, text=True, check=True).stdout
    assert "__version__ = '2.11.0'" in ver, "the mirror's mmdet is not 2.11.0"
    src = subprocess.run(["git", "-C", MIRROR, "show", "HEAD:object_detection/mmdet/datasets/coco.py"],
                         capture_output=True, text=True, check=True).stdout
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "CocoDataset")
    fn = copy.deepcopy(next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "evaluate"))
    fn.decorator_list = []
    from mmengine.logging import print_log
    from pycocotools.coco import COCO
    from terminaltables import AsciiTable
    ns = {"np": np, "OrderedDict": OrderedDict, "itertools": itertools, "logging": logging,
          "print_log": print_log, "COCOeval": Recorder.make(), "AsciiTable": AsciiTable}
    local = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "mmdet-2.11/datasets/coco.py", "exec"), ns, local)
    evaluate = local["evaluate"]

    tmp = tempfile.mkdtemp()

    class Dataset211:
        """What 2.11's evaluate reads of self: coco, cat_ids (get_cat_ids(cat_names=CLASSES)), img_ids,
        format_results (-> result files as _det2json / _segm2json write them)."""
        def __init__(self):
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco = COCO(ANN)
            self.cat_ids = self.coco.getCatIds(catNms=classes)
            self.img_ids = self.coco.getImgIds()

        def format_results(self, _results, jsonfile_prefix=None):
            files = {"bbox": os.path.join(tmp, "r.bbox.json"), "segm": os.path.join(tmp, "r.segm.json")}
            json.dump([{k: v for k, v in r.items() if k != "segmentation"} for r in results], open(files["bbox"], "w"))
            json.dump(results, open(files["segm"], "w"))
            files["proposal"] = files["bbox"]
            return files, None
    try:
        Recorder.stats = {}
        out = evaluate(Dataset211(), None, metric=["bbox", "segm"], logger="silent")
    finally:
        shutil.rmtree(tmp)
    return {**Recorder.stats, "rounded": dict(out)}


# ----------------------------------------------------------------------------------------------
# the two CLI paths

def coco80_copies(tmp: str, classes: list) -> tuple[str, str, str]:
    """(80-class config, its checkpoint, the annotation file renamed to COCO's 80 categories)."""
    meta = json.load(open(os.path.join(ROOT, "tasks", "configs", "coco.json")))
    names, ids = meta["classes"], meta["category_ids"]
    config = json.load(open(FIXTURE))
    ckpt = torch.load(os.path.join(os.path.dirname(FIXTURE), config["weights"]), map_location="cpu", weights_only=False)
    sd = OrderedDict(ckpt["state_dict"])
    k = len(classes)

    def grow(key, rows_per_class, fill):
        t = sd[key]
        new = torch.full((80 * rows_per_class + (t.shape[0] - k * rows_per_class),) + tuple(t.shape[1:]), fill,
                         dtype=t.dtype)
        new[: k * rows_per_class] = t[: k * rows_per_class]
        if t.shape[0] > k * rows_per_class:  # fc_cls: the background row stays last
            new[80 * rows_per_class:] = t[k * rows_per_class:]
        sd[key] = new
    grow("roi_head.bbox_head.fc_cls.weight", 1, 0.0)
    grow("roi_head.bbox_head.fc_cls.bias", 1, -1e4)
    grow("roi_head.bbox_head.fc_reg.weight", 4, 0.0)
    grow("roi_head.bbox_head.fc_reg.bias", 4, 0.0)
    grow("roi_head.mask_head.conv_logits.weight", 1, 0.0)
    grow("roi_head.mask_head.conv_logits.bias", 1, 0.0)
    weights = os.path.join(tmp, "mask_rcnn_80.pth")
    torch.save({"meta": {"CLASSES": tuple(names)}, "state_dict": sd}, weights)
    config["model"]["roi_head"]["bbox_head"]["num_classes"] = 80
    config["model"]["roi_head"]["mask_head"]["num_classes"] = 80
    config["classes"] = names
    config["weights"] = weights
    config.pop("fixture", None)
    cfg_path = os.path.join(tmp, "config80.json")
    json.dump(config, open(cfg_path, "w"))
    ann = json.load(open(ANN))
    to_coco = {c["id"]: ids[classes.index(c["name"])] for c in ann["categories"]}
    for a in ann["annotations"]:
        a["category_id"] = to_coco[a["category_id"]]
    ann["categories"] = [{"id": i, "name": n, "supercategory": ""} for n, i in zip(names, ids)]
    os.makedirs(os.path.join(tmp, "annotations"))
    ann_path = os.path.join(tmp, "annotations", "instances_val.json")
    json.dump(ann, open(ann_path, "w"))
    return cfg_path, weights, ann_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uniformer", default=os.path.join(ROOT, ".build", "release", "uniformer"))
    a = ap.parse_args()
    classes = json.load(open(FIXTURE))["classes"]
    box, results = evaluate_py(a.uniformer, EXAMPLE, "--split", "val", "--model", FIXTURE)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(results, f)
    try:
        mask, _ = evaluate_py(a.uniformer, EXAMPLE, "--split", "val", "--results", f.name, "--segm-area", "mask")
    finally:
        os.unlink(f.name)
    print(f"example: {box['images']} images, {box['instances']} instances, {box['detections']} detections")
    print("evaluate.py (--segm-area box):  " + [ln for ln in box["stdout"].splitlines() if ln.startswith("coco/")][0])

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' and mmdet's own printout
        m3 = mmdet3_coco_metric(results, classes)
    compare("mmdet 3.3 CocoMetric vs evaluate.py --segm-area mask", mask, m3)
    for m in ("bbox", "segm"):
        for n in ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l"):
            assert m3["rounded"][f"{m}_{n}"] == mask[m][f"{m}_{n}"], (m, n)
    print("ok  mmdet 3.3 CocoMetric's rounded metrics (bbox_mAP, ...) equal evaluate.py's")

    with contextlib.redirect_stdout(io.StringIO()):
        m2 = mmdet211_evaluate(results, classes)
    if m2 is not None:
        compare("mmdet 2.11 CocoDataset.evaluate vs evaluate.py (--segm-area box)", box, m2)
        for m in ("bbox", "segm"):
            assert m2["rounded"][f"{m}_mAP_copypaste"] in box["stdout"], m
        print("ok  mmdet 2.11's bbox/segm_mAP_copypaste lines appear verbatim in evaluate.py's output")
    diff_area = max(abs(x - y) for m in ("bbox", "segm") for x, y in zip(box[m]["stats"], mask[m]["stats"]))
    print(f"    (--segm-area box vs mask: max |diff| {diff_area:.3f}, APs/APm/APl of segm only)")

    tmp = tempfile.mkdtemp()
    try:
        cfg80, w80, ann80 = coco80_copies(tmp, classes)
        shutil.copytree(os.path.join(EXAMPLE, "val"), os.path.join(tmp, "val"))
        c80, r80 = evaluate_py(a.uniformer, tmp, "--split", "val", "--model", cfg80, "--weights", w80)
        c5, r5 = evaluate_py(a.uniformer, tmp, "--split", "val", "--model", FIXTURE, "--category-ids", "1,2,3,4,5")
    finally:
        shutil.rmtree(tmp)
    assert "--format coco" in c80["stderr"] and "--format coco" not in c5["stderr"], "not the two CLI paths"
    key = lambda r: (r["image_id"], -r["score"])  # noqa: E731
    r80, r5 = sorted(r80, key=key), sorted(r5, key=key)
    assert len(r80) == len(r5), (len(r80), len(r5))
    dscore = max(abs(x["score"] - y["score"]) for x, y in zip(r80, r5))
    dbox = max(abs(p - q) for x, y in zip(r80, r5) for p, q in zip(x["bbox"], y["bbox"]))
    same = all(x["image_id"] == y["image_id"] and x["category_id"] == y["category_id"]
               and x["segmentation"] == y["segmentation"] for x, y in zip(r80, r5))
    if not same or dscore > 1e-5 or dbox > 1e-3:
        sys.exit(f"MISMATCH: --format coco (80 classes) vs per-image + --category-ids: same={same} "
                 f"score {dscore} box {dbox}")
    print(f"ok  CLI --format coco (80-class copy) vs per-image JSON + --category-ids: {len(r80)} detections, "
          f"same images/categories/masks, max |score diff| {dscore:.1e}, max |box diff| {dbox:.1e}")
    for name, other in (("--format coco path", c80), ("--category-ids path", c5)):
        compare(f"{name} (COCO category names) vs the example's evaluation", box,
                {m: other[m]["stats"] for m in ("bbox", "segm")})
    print("all checks passed")


if __name__ == "__main__":
    main()
