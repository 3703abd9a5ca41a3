"""Show that evaluate.py computes mmseg's numbers, and (re)write the eval fixture it is checked on.

Runs in the mmsegmentation venv (bash tasks/reference/mmseg_env.sh):

    tasks/reference/.venv/bin/python tasks/segmentation/check_with_mmseg.py

Writes Tests/UniFormerTests/Fixtures/segmentation/eval/ (seeded, byte-identical on a rerun):
  images/*.png|*.jpg      6 tiny generated pictures (40x30 and similar sizes)
  annotations/*.png       ADE20K-style label maps (0 = other/ignored, 1..7 = classes 0..6), mode L
                          (one in mode P); one holds a few pixels of 9 (class 8: outside the 7 classes)
  predictions/*.png       masks derived from the labels with noise (indexed PNG like
                          `uniformer segment` writes; one in mode L); class 6 is predicted but never
                          labelled (IoU 0, Acc NaN), class 5 neither (NaN, left out of the means)
  model_predictions/*.png what ../upernet_global's model predicts for images/ (mmseg 0.13's pipeline
                          and whole inference, via segmentation_fixtures.py), to check the CLI path
  expected.json           for predictions/ and model_predictions/: mmseg 1.2.2's IoUMetric (pixel
                          counts, its float32 aAcc/IoU/Acc and the rounded summary it reports),
                          "exact": the same ratios in float64 from those counts (what mmseg 0.13's
                          eval_metrics computes), and evaluate.py's stdout for the same run

and asserts: evaluate.py (run as a program, as a user would) == IoUMetric to 1e-6 for aAcc, mIoU,
mAcc and every per-class IoU/Acc (NaN where mmseg has NaN), equal pixel counts, mmseg's rounded
summary line; == mmseg 0.13's own eval_metrics (compiled from the Sense-X/UniFormer mirror at run
time, when there is one) to 1e-12; and that evaluate.py refuses a prediction whose size differs
from its annotation, naming the file.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tasks", "reference"))

import segmentation_fixtures as sf  # noqa: E402  (installs the mmcv.ops stand-in, mmseg scope)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.datasets.transforms import LoadAnnotations  # noqa: E402
from mmseg.evaluation import IoUMetric  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402
from PIL import Image  # noqa: E402

from backbone_fixtures import dump_json  # noqa: E402

OUT = os.path.join(sf.OUT, "eval")
EVALUATE = os.path.join(HERE, "evaluate.py")
MODEL_CASE = "upernet_global"  # whose config/weights model_predictions/ come from
SEED = 20240801
K = sf.NUM_CLASSES
# (file name, width, height, annotation mode, prediction mode)
IMAGES = [("ADE_val_00000001.jpg", 40, 30, "L", "P"), ("ADE_val_00000002.png", 30, 40, "L", "P"),
          ("ADE_val_00000003.png", 44, 30, "P", "P"), ("ADE_val_00000004.jpg", 40, 30, "L", "L"),
          ("ADE_val_00000005.png", 36, 27, "L", "P"), ("ADE_val_00000006.png", 40, 32, "L", "P")]
ABSENT_LABEL = 6      # predicted somewhere, never in the labels
ABSENT_BOTH = 5       # neither


def label_map(w: int, h: int, rng: np.random.Generator, out_of_range: bool) -> np.ndarray:
    """ADE-style annotation: Voronoi regions of values 0 (ignore) and 1..K (class + 1), without
    ABSENT_LABEL + 1 and ABSENT_BOTH + 1."""
    allowed = [0] + [c + 1 for c in range(K) if c not in (ABSENT_LABEL, ABSENT_BOTH)]
    n = 7
    sy, sx = rng.integers(0, h, n), rng.integers(0, w, n)
    vals = rng.choice(allowed, n)
    vals[0], vals[1] = 0, 1  # every image has ignored pixels and class 0
    y, x = np.mgrid[0:h, 0:w]
    d = (y[..., None] - sy) ** 2 + (x[..., None] - sx) ** 2
    lab = vals[d.argmin(-1)].astype(np.uint8)
    if out_of_range:
        lab[2:5, 3:9] = 9  # class 8 after reduce_zero_label: not one of the 7
    return lab


def noisy_prediction(lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    classes = [c for c in range(K) if c != ABSENT_BOTH]
    pred = np.where(lab == 0, rng.choice(classes, lab.shape), lab.astype(np.int64) - 1)
    pred = np.where(pred >= K, rng.choice(classes, lab.shape), pred)           # label 9 pixels
    flip = rng.random(lab.shape) < 0.2
    pred = np.where(flip, rng.choice(classes, lab.shape), pred)
    return pred.astype(np.uint8)


def save_mask(arr: np.ndarray, path: str, mode: str) -> None:
    im = Image.fromarray(arr, "L")
    if mode == "P":
        im = im.convert("P")
        pal = [v for c in sf.PALETTE for v in c]
        im.putpalette(pal + [0] * (768 - len(pal)))
        im.putdata(arr.flatten().tolist())
    im.save(path, optimize=True)


def make_folder() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    for sub in ("images", "annotations", "predictions", "model_predictions"):
        os.makedirs(os.path.join(OUT, sub))
    rng = np.random.default_rng(SEED)
    for i, (name, w, h, ann_mode, pred_mode) in enumerate(IMAGES):
        stem = os.path.splitext(name)[0]
        rgb = sf.make_picture(w, h, rng)[..., ::-1]
        im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
        if name.endswith(".jpg"):
            im.save(os.path.join(OUT, "images", name), quality=90)
        else:
            im.save(os.path.join(OUT, "images", name), optimize=True)
        lab = label_map(w, h, rng, out_of_range=(i == 2))
        save_mask(lab, os.path.join(OUT, "annotations", stem + ".png"), ann_mode)
        pred = noisy_prediction(lab, rng)
        if i == 4:
            pred[0, 0] = ABSENT_LABEL  # at least one prediction of the never-labelled class
        save_mask(pred, os.path.join(OUT, "predictions", stem + ".png"), pred_mode)


@torch.no_grad()
def model_predictions() -> None:
    """upernet_global's labels for images/, as mmseg 0.13 computes them (the fixture pipeline)."""
    d = os.path.join(sf.OUT, MODEL_CASE)
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    model = sf.build_segmentor(config["model"], config.get("override"))
    sf.load_checkpoint(model, os.path.join(d, "weights.pth"), map_location="cpu", strict=True, logger="silent")
    for name, *_ in IMAGES:
        bgr, _, _, inp = sf.preprocess(os.path.join(OUT, "images", name), config["data"])
        out, _, _ = sf.run(model, inp, bgr.shape[:2], config["model"]["test_cfg"])
        save_mask(out["labels"].numpy().astype(np.uint8),
                  os.path.join(OUT, "model_predictions", os.path.splitext(name)[0] + ".png"), "P")


def mmseg_metric(pred_dir: str) -> dict:
    """mmseg 1.2.2: LoadAnnotations(reduce_zero_label=True) reads the labels, IoUMetric.process /
    compute_metrics (the rounded summary it reports) and its static total_area_to_metrics on the
    summed areas (the unrounded values)."""
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = dict(classes=sf.CLASSES)
    load = LoadAnnotations(reduce_zero_label=True)
    for name, *_ in IMAGES:
        stem = os.path.splitext(name)[0]
        r = load(dict(seg_map_path=os.path.join(OUT, "annotations", stem + ".png"), reduce_zero_label=True,
                      seg_fields=[]))
        pred = sf.mmcv.imread(os.path.join(pred_dir, stem + ".png"), flag="unchanged", backend="pillow")
        ds = SegDataSample()
        ds.pred_sem_seg = PixelData(data=torch.from_numpy(pred.astype(np.int64))[None])
        ds.gt_sem_seg = PixelData(data=torch.from_numpy(r["gt_seg_map"])[None])
        metric.process({}, [ds.to_dict()])
    totals = [sum(a) for a in zip(*metric.results)]
    raw = IoUMetric.total_area_to_metrics(*totals, metrics=["mIoU"])
    summary = metric.compute_metrics(list(metric.results))

    def vals(v):
        return [None if math.isnan(x) else float(x) for x in np.asarray(v, dtype=np.float64).tolist()]
    counts = [[int(x) for x in t.tolist()] for t in totals]
    i, u, lab = (np.array(c, np.float64) for c in (counts[0], counts[1], counts[3]))
    with np.errstate(all="ignore"):
        iou, acc = i / u, i / lab
        exact = {"aAcc": float(i.sum() / lab.sum()), "mIoU": float(np.nanmean(iou)),
                 "mAcc": float(np.nanmean(acc)), "IoU": vals(iou), "Acc": vals(acc)}
    return {
        "area_intersect": counts[0], "area_union": counts[1], "area_pred_label": counts[2], "area_label": counts[3],
        "exact": exact,
        "IoUMetric_float32": {"aAcc": float(raw["aAcc"]), "IoU": vals(raw["IoU"]), "Acc": vals(raw["Acc"])},
        "summary_percent": {k: round(float(v), 2) for k, v in summary.items()},
    }


def mmseg013_metric(pred_dir: str, mirror: str):
    """mmseg 0.13's own eval_metrics (semantic_segmentation/mmseg/core/evaluation/metrics.py of the
    Sense-X/UniFormer mirror, compiled at run time; nothing of it is stored) on the arrays 0.13's
    ADE20KDataset.evaluate passes it, or None without a mirror."""
    try:
        src = subprocess.run(["git", "-C", mirror, "show", "HEAD:semantic_segmentation/mmseg/core/evaluation/metrics.py"],
                             check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    keep = {"f_score", "intersect_and_union", "total_intersect_and_union", "eval_metrics"}
    body = [n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name in keep]
    ns = {"torch": torch, "np": np, "OrderedDict": OrderedDict, "mmcv": sf.mmcv}
    exec(compile(ast.Module(body=body, type_ignores=[]), "metrics.py", "exec"), ns)
    preds, gts = [], []
    for name, *_ in IMAGES:
        stem = os.path.splitext(name)[0]
        pred = sf.mmcv.imread(os.path.join(pred_dir, stem + ".png"), flag="unchanged", backend="pillow")
        preds.append(pred.astype(np.int64))  # 0.13's simple_test gives int64 label maps
        gts.append(sf.mmcv.imread(os.path.join(OUT, "annotations", stem + ".png"), flag="unchanged",
                                  backend="pillow"))  # CustomDataset.get_gt_seg_maps
    ret = ns["eval_metrics"](preds, gts, K, 255, ["mIoU"], label_map=dict(), reduce_zero_label=True)
    ret = {k: np.asarray(v, dtype=np.float64) for k, v in ret.items()}
    return {"aAcc": float(ret["aAcc"]), "mIoU": float(np.nanmean(ret["IoU"])), "mAcc": float(np.nanmean(ret["Acc"])),
            "IoU": ret["IoU"].tolist(), "Acc": ret["Acc"].tolist()}


def run_recipe(pred_dir: str, data: str = OUT):
    """evaluate.py as a program: (exit status, stdout, stderr, its --json)."""
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "m.json")
        r = subprocess.run([sys.executable, EVALUATE, data, "--predictions", pred_dir, "--model",
                            os.path.join(sf.OUT, MODEL_CASE, "config.json"), "--json", js],
                           capture_output=True, text=True)
        got = json.load(open(js)) if r.returncode == 0 else None
    return r.returncode, r.stdout, r.stderr, got


def max_diff(name: str, got: dict, want: dict, keys) -> float:
    worst = 0.0
    for key in keys:
        g, w = got[key], want[key]
        if not isinstance(w, list):
            g, w = [g], [w]
        for a, b in zip(g, w, strict=True):
            a = None if a is None or math.isnan(a) else a
            b = None if b is None or math.isnan(b) else b
            if (a is None) != (b is None):
                raise AssertionError(f"{name} {key}: NaN in one only ({got[key]} vs {want[key]})")
            if a is not None:
                worst = max(worst, abs(a - b))
    return worst


def compare(name: str, got: dict, want: dict, stdout: str) -> float:
    worst = max(max_diff(name, got, want["IoUMetric_float32"], ("aAcc", "IoU", "Acc")),
                max_diff(name, got, want["exact"], ("aAcc", "mIoU", "mAcc", "IoU", "Acc")))
    if worst > 1e-6:
        raise AssertionError(f"{name}: evaluate.py differs from IoUMetric by {worst}")
    for key in ("area_intersect", "area_union", "area_pred_label", "area_label"):
        if got[key] != want[key]:
            raise AssertionError(f"{name} {key}: {got[key]} vs {want[key]}")
    s = want["summary_percent"]
    line = f"summary: aAcc {s['aAcc']:.2f}  mIoU {s['mIoU']:.2f}  mAcc {s['mAcc']:.2f}"
    if line not in stdout.splitlines():
        raise AssertionError(f"{name}: printed summary is not mmseg's {line!r}:\n{stdout}")
    exact = next(l for l in stdout.splitlines() if l.startswith("exact: ")).split()
    printed = dict(zip(exact[1::2], map(float, exact[2::2])))
    for key in ("aAcc", "mIoU", "mAcc"):
        if abs(printed[key] - want["exact"][key]) > 1e-9:
            raise AssertionError(f"{name}: printed exact {key} {printed[key]} vs {want['exact'][key]}")
    return worst


def check_size_mismatch() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        preds = os.path.join(tmp, "predictions")
        shutil.copytree(os.path.join(OUT, "predictions"), preds)
        bad = os.path.join(preds, os.path.splitext(IMAGES[1][0])[0] + ".png")
        Image.open(bad).resize((31, 40)).save(bad)
        code, out, err, _ = run_recipe(preds)
        if code == 0 or bad not in err or "annotation" not in err:
            raise AssertionError(f"size mismatch not refused: status {code}, stderr {err!r}")
        return err.strip()


def main() -> None:
    mirror = os.environ.get("UNIFORMER_MIRROR", "/work/.mirror/Sense-X+UniFormer/repo")
    make_folder()
    model_predictions()
    expected = {"generator": "tasks/segmentation/check_with_mmseg.py", **sf.versions(),
                "num_classes": K, "reduce_zero_label": True, "classes": sf.CLASSES,
                "images": [n for n, *_ in IMAGES]}
    for name, sub in (("predictions", "predictions"), ("model", "model_predictions")):
        want = mmseg_metric(os.path.join(OUT, sub))
        code, stdout, stderr, got = run_recipe(os.path.join(OUT, sub))
        if code != 0:
            raise AssertionError(f"evaluate.py failed on {sub}: {stderr}")
        worst = compare(name, got, want, stdout)
        old = mmseg013_metric(os.path.join(OUT, sub), mirror) if os.path.isdir(mirror) else None
        if old is not None:
            d013 = max_diff(name, got, old, ("aAcc", "mIoU", "mAcc", "IoU", "Acc"))
            if d013 > 1e-12:
                raise AssertionError(f"{name}: evaluate.py differs from mmseg 0.13's eval_metrics by {d013}")
            print(f"{sub:18s} mmseg 0.13 eval_metrics (from the mirror): evaluate.py max |diff| {d013:.1e}")
        else:
            print(f"{sub:18s} (no Sense-X/UniFormer mirror: not compared with mmseg 0.13's eval_metrics)")
        expected[name] = dict(want, folder=sub + "/", evaluate_py_stdout=stdout,
                              evaluate_py_command=f"python3 tasks/segmentation/evaluate.py {os.path.relpath(OUT, ROOT)} "
                              f"--predictions {os.path.relpath(os.path.join(OUT, sub), ROOT)} "
                              f"--model {os.path.relpath(os.path.join(sf.OUT, MODEL_CASE, 'config.json'), ROOT)}")
        s = want["summary_percent"]
        print(f"{sub:18s} IoUMetric aAcc {s['aAcc']:.2f} mIoU {s['mIoU']:.2f} mAcc {s['mAcc']:.2f}; "
              f"evaluate.py max |diff| {worst:.2e} (unrounded), equal counts and printout")
    expected["model"]["model"] = f"{MODEL_CASE}/config.json + {MODEL_CASE}/weights.pth (whole inference, 0.13 pipeline)"
    print("size mismatch refused:", check_size_mismatch())
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        f.write(dump_json(expected) + "\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"eval fixture: {size / 1e3:.0f} KB in {OUT}")


if __name__ == "__main__":
    main()
