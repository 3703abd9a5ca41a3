"""Train the bundled demo detector: a small UniFormer Mask R-CNN on the synthetic shapes scenes.

    bash tasks/reference/mmdet_env.sh                      # the mmdet 3.3 venv (idempotent)
    TRAIN_THREADS=2 tasks/reference/.venv-mmdet/bin/python tasks/demo/train_det.py
        [--iters N] [--batch B] [--lr LR] [--train-dir DIR] [--val-dir DIR] [--init-seg FILE|none]

Writes configs/demo-shapes-det.json and Sources/UniFormer/Resources/demo-shapes-det.safetensors.
The datasets are generated with tasks/demo/shapes.py (its default seed per split) into --train-dir /
--val-dir (default /tmp/shapes-train with 3000 images, /tmp/shapes-val with 200; not committed) when
they are not there yet (the segmentation demo's trainer uses the same folders).
Everything is seeded (--seed); one command re-runs the whole thing. tasks/demo/check_det.py then
compares PyTorch and `uniformer detect` on the held-out fixtures.

The model is mmdet 3.3.0's MaskRCNN, built from the mmdet 2.11 model dict that is also written to
configs/demo-shapes-det.json (MODEL below; the upstream mask_rcnn dict of
tasks/configs/detection_configs.py, shrunk), with tasks/reference/uniformer_ref.UniFormer registered
as `UniFormer` (importing tasks/reference/detection_fixtures does that). Conversions to build it in
3.3 (tasks/reference/detection_fixtures.mmdet_cfg, plus one here): SyncBN -> BN, no `pretrained`,
test rpn min_bbox_size 0 -> -1 (3.x's equivalent of 2.11's 0), and the RoIAlign layers get
`use_torchvision=True` (see below). No data_preprocessor is used: batches are prepared here.

  backbone  UniFormer embed_dim [32, 64, 128, 256], layers [2, 2, 4, 2], head_dim 32, mlp_ratio 4,
            qkv_bias, hybrid stage 3 with window 7 (blocks3.3 global); no drop path (the reference
            backbone has none)
  neck      FPN [32, 64, 128, 256] -> 64, 5 outputs
  rpn_head  feat_channels 64, anchors as the zoo (scale 8, ratios 0.5/1/2, strides 4..64)
  roi_head  Shared2FCBBoxHead 64 -> fc_out_channels 64, FCNMaskHead 4 convs x 64, 5 classes
  test_cfg  as the zoo config (rpn nms_pre 1000 / max 1000 / nms 0.7 / min_bbox_size 0;
            rcnn score_thr 0.05, nms 0.5, max 100, mask_thr_binary 0.5)

fc_out_channels is 64 (not 128/256) to keep the fp16 file small: the backbone alone is 2.67 M
parameters (5.3 MB in fp16), so the whole model is ~3.27 M parameters, ~6.5 MB.

mmcv-lite has no compiled ops. tasks/reference/detection_fixtures.install_mmcv_ext() (run on import)
provides mmcv._ext.nms = torchvision.ops.nms and mmcv._ext.roi_align_forward =
torchvision.ops.roi_align under mmcv's own Python wrappers (mmcv.ops.nms / batched_nms /
roi_align); that covers the no-grad uses in training (RPN proposal NMS, the mask targets made by
BitmapMasks.crop_and_resize -> mmcv.ops.roi_align). The RoI feature extractors need gradients, and
mmcv's RoIAlignFunction has no backward without the compiled op, so their RoIAlign layers are built
with mmcv's own switch `use_torchvision=True`, which calls torchvision.ops.roi_align(input, rois,
output_size, spatial_scale, sampling_ratio=0, aligned=True) directly (torchvision has autograd;
sampling_ratio 0 is the adaptive ceil(roi / output) in both libraries, aligned the -0.5 shift in
both). Inference (the val numbers here, check_det.py) uses the same layers, i.e. the same kernel.
In the training model (speed_up_training) the forward stays torchvision's, but the gradient is
computed by _RoIAlignFn (the adjoint of RoIAlign's separable form, two matrix products; checked
against torchvision's own backward at every start): torchvision's CPU backward was a quarter of an
iteration.

CPU time per iteration (batch 4, 2 threads, medians of the same 8 batches, the committed model's
weights): one sitting: torchvision's backward, NCHW, float32 2.3 s (6 batches); with _RoIAlignFn 1.72 s;
+ channels-last 1.69; bf16 autocast (NCHW) 1.49; bf16 + channels-last 1.39. A second sitting:
bf16 + channels-last 1.48; + the depthwise convolutions in float32 inside the autocast 1.40
(tasks/demo/cpu_training.py: their bf16 backward is 3.6x slower than float32's). The host is noisy:
only numbers of one sitting compare. Under the whole-model autocast the RPN's outputs, hence the
proposals and RoIs, are bf16 too (boxes rounded to 1-2 px on a 384-px image). Keeping the heads in
float32 (autocast around backbone + FPN only) cost 9 % (1.51 against 1.38 s/iteration in full runs)
and did not help: two otherwise identical 1500-iteration runs (one cosine, 3000 scenes) reached
val box / mask AP50 0.869 / 0.852 (whole model bf16) and 0.848 / 0.828 (heads float32); held-out
fixtures 0.842 / 0.854 and 0.848 / 0.852. So the default is the whole-model autocast (--fp32: none).

Data (per image, as the 2.11 test pipeline of the config's `data` plus augmentation): cv2.imread
(BGR), mmcv.imrescale to scale (384, 384) keep-ratio with cv2 INTER_LINEAR (the long side becomes 384),
instance masks (instances/NAME.png == instance_index) resized nearest to the same size, boxes (the
annotation's visible-mask bbox) scaled by (new_w / w, new_h / h); random horizontal flip (p 0.5); mild
photometric jitter (brightness +-20, contrast x0.8..1.2, per-channel gain x0.92..1.08), BGR -> RGB,
(x - mean) / std with ImageNet mean/std, zero padding (after normalisation) to a multiple of 32 and to
the largest image of the batch. Loss: mmdet's `model.loss(inputs, data_samples)` (RPN CE + L1, RoI CE +
L1, mask BCE), summed. Optimiser: AdamW, weight decay 0.05 on weights (not on norms/biases), linear
warmup then cosine decay to 0, gradient norm clipped at 10, plain PyTorch loop (no mmengine Runner).

Val: the 2.11 inference semantics of detection_fixtures.two_stage_211 (what `uniformer detect`
implements) on the val split, scored by pycocotools COCOeval (bbox and segm, all images).

Schedule (the defaults; tasks/demo/train.sh spells them out): 2000 iterations of batch 4 over all 3000
training images, AdamW lr 8e-4 with 150 warmup iterations and one cosine to 0
(`--train-count 3000 --iters 2000 --restart-cycles 0`), bf16 autocast, channels-last, seed 20261122,
backbone from scratch. (--restart-iters / --restart-cycles add warm-restart cycles after --iters; the
previous committed model used them: 1500 iterations on 1600 images with two restarts, then 1000 on
3000 with two more, float32 — 2500 iterations, val box / mask AP50 0.928 / 0.916, fixtures 0.953 /
0.953, 154 min on a shared machine. A single cosine learns faster per iteration: at 1500 iterations it
gives val 0.869 / 0.852 and fixtures 0.842 / 0.854, not enough; 2000 are.)

The run behind the committed files (2026-11-22, torch 2.15 CPU, TRAIN_THREADS=2 on the quiet 2-core
machine, `bash tasks/demo/train.sh det`'s command):

  training  2000 iterations in 43.8 min (1.22-1.33 s/iteration; the periodic val not included)
  val (50 images every 500 iterations, float32 model): box / mask AP50 0.438 / 0.410 after 500,
            0.858 / 0.844 after 1000, 0.951 / 0.927 after 1500
  val (200 images of shapes.py --split val, exported fp16 weights, 2.11 inference, COCOeval):
            box AP50 0.923  AP 0.742 | mask AP50 0.910  AP 0.762
  held-out fixtures (Tests/UniFormerTests/Fixtures/demo, 10 test scenes, 41 objects; check_det.py):
            PyTorch and `uniformer detect` alike: box AP50 0.926  AP 0.759 | mask AP50 0.958  AP 0.807
            (325 of 325 detections matched, max score difference 1.9e-6, boxes and masks identical)
  The issue's targets on the fixtures (box AP50 >= 0.90, mask AP50 >= 0.85) hold; the Swift test
  (Tests/UniFormerTests/DemoModelTests.swift) checks them.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tasks", "reference"))
sys.path.insert(0, os.path.join(ROOT, "tasks", "configs"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", "2")))

import detection_fixtures as dfx  # noqa: E402  (mmcv._ext on torchvision, UniFormer registered, mmdet)
import detection_configs  # noqa: E402
import cpu_training  # noqa: E402
import cv2  # noqa: E402
import mmcv  # noqa: E402
import pycocotools.mask as mask_util  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

CLASSES = ["circle", "square", "triangle", "star", "ring"]
# distinct bright colours (replaced by the segmentation demo's if configs/demo-shapes-seg.json exists)
PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]]
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
DATA = {"mean": MEAN, "std": STD, "to_rgb": True, "scale": [384, 384], "keep_ratio": True, "size_divisor": 32}
CONFIG_OUT = os.path.join(ROOT, "configs", "demo-shapes-det.json")
WEIGHTS_OUT = os.path.join(ROOT, "Sources", "UniFormer", "Resources", "demo-shapes-det.safetensors")
SEG_WEIGHTS = os.path.join(ROOT, "Sources", "UniFormer", "Resources", "demo-shapes-seg.safetensors")
SHAPES = os.path.join(HERE, "shapes.py")


def model_dict() -> dict:
    """The 2.11 model dict (written to the config as is)."""
    m = detection_configs.mask_rcnn("small", 0.0, None)
    m["backbone"].update(embed_dim=[32, 64, 128, 256], layers=[2, 2, 4, 2], head_dim=32, window_size=7)
    m["neck"].update(in_channels=[32, 64, 128, 256], out_channels=64)
    m["rpn_head"].update(in_channels=64, feat_channels=64)
    rh = m["roi_head"]
    rh["bbox_roi_extractor"]["out_channels"] = 64
    rh["mask_roi_extractor"]["out_channels"] = 64
    rh["bbox_head"].update(in_channels=64, fc_out_channels=64, num_classes=len(CLASSES))
    rh["mask_head"].update(in_channels=64, conv_out_channels=64, num_classes=len(CLASSES))
    # training-only fields (ignored at inference), reduced for CPU time: RoIAlign's backward on the CPU
    # and the mask head's convolutions over the positive RoIs dominate an iteration
    m["train_cfg"]["rcnn"]["sampler"]["num"] = 128           # zoo: 512 RoIs per image (25 % positive)
    m["train_cfg"]["rpn_proposal"]["nms_pre"] = 1000         # zoo: 2000
    return m


def build(model: dict, init: bool = True) -> torch.nn.Module:
    cfg = dfx.mmdet_cfg(model)
    for k in ("bbox_roi_extractor", "mask_roi_extractor"):
        cfg["roi_head"][k]["roi_layer"]["use_torchvision"] = True   # differentiable (torchvision autograd)
    det = MODELS.build(cfg)
    if init:
        from mmengine.logging import MMLogger
        MMLogger.get_current_instance().setLevel(logging.WARNING)   # init_weights' per-tensor report
        det.init_weights()
    return det


# ----------------------------------------------------------------------------------------------
# RoIAlign with a fast gradient

def _axis_weights(start: torch.Tensor, extent: torch.Tensor, pooled: int, length: int) -> torch.Tensor:
    """Along one axis of each RoI: W[r, p, i] = the weight of feature row (or column) i in output bin p
    of torchvision's aligned, adaptive RoIAlign. That kernel samples ceil(extent / pooled) points per
    bin along each axis at start + p * bin + (s + 0.5) * bin / grid, drops a point outside [-1, length],
    clamps it to >= 0, interpolates linearly between floor and floor + 1 (both the last row from
    length - 1 on) and averages; every factor of the 2-D sample weight is a product of a y and an x
    factor, so output[r, c] = Wy[r] @ feature[c] @ Wx[r]^T exactly. (float32, the kernel's order of
    operations for the positions.)"""
    r = start.shape[0]
    bin_size = extent / pooled
    grid = torch.ceil(extent / pooled)
    g = max(int(grid.max().item()) if r else 1, 1)
    p = torch.arange(pooled, dtype=start.dtype).view(1, pooled, 1)
    s = torch.arange(g, dtype=start.dtype).view(1, 1, g)
    st, bs, gr = start.view(r, 1, 1), bin_size.view(r, 1, 1), grid.view(r, 1, 1)
    pos = st + p * bs + (s + 0.5) * bs / gr
    valid = (s < gr) & (pos >= -1.0) & (pos <= length)
    pos = pos.clamp(min=0.0)
    low = pos.floor()
    edge = low >= length - 1
    low = torch.where(edge, torch.full_like(low, length - 1), low)
    pos = torch.where(edge, low, pos)
    high = torch.where(edge, low, low + 1)
    frac = pos - low
    scale = valid.to(start.dtype) / gr.clamp(min=1.0)
    w = torch.zeros(r, pooled, length, dtype=start.dtype)
    w.scatter_add_(2, low.long().clamp(0, length - 1), (1.0 - frac) * scale)
    w.scatter_add_(2, high.long().clamp(0, length - 1), frac * scale)
    return w


class _RoIAlignFn(torch.autograd.Function):
    """Forward: torchvision.ops.roi_align (aligned, adaptive sampling) itself. Backward: the adjoint of
    the separable form, grad_feature[n, c] = sum over n's RoIs r of Wy[r]^T @ grad_out[r, c] @ Wx[r],
    as two matrix products. torchvision's CPU backward scatters every sample of every channel one add
    at a time on one thread and recomputes the weights per channel: with ~450 RoIs on a 96 x 96 map
    that was a quarter of a training iteration; this is 3x faster and gives the same gradient
    (check_roi_align_grad)."""

    @staticmethod
    def forward(ctx, x, rois, out_hw, scale):
        import torchvision
        ctx.save_for_backward(rois)
        ctx.shape, ctx.dtype, ctx.out_hw, ctx.scale = x.shape, x.dtype, out_hw, scale
        return torchvision.ops.roi_align(x, rois, out_hw, scale, 0, True)

    @staticmethod
    def backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        n_img, c, h, w = ctx.shape
        ph, pw = ctx.out_hw
        rois = rois.float()
        x1, y1 = rois[:, 1] * ctx.scale - 0.5, rois[:, 2] * ctx.scale - 0.5
        x2, y2 = rois[:, 3] * ctx.scale - 0.5, rois[:, 4] * ctx.scale - 0.5
        wy = _axis_weights(y1, y2 - y1, ph, h)              # [R, ph, H]
        wx = _axis_weights(x1, x2 - x1, pw, w)              # [R, pw, W]
        grad = grad.float().contiguous()         # (bf16 when the features were, under autocast)
        out = grad.new_zeros(n_img, c, h, w)
        which = rois[:, 0].long()
        for n in range(n_img):
            idx = (which == n).nonzero().flatten()
            k = idx.numel()
            if k == 0:
                continue
            t = torch.bmm(grad[idx].view(k, c * ph, pw), wx[idx])                 # [k, C*ph, W]
            t = t.view(k, c, ph, w).permute(0, 2, 1, 3).reshape(k * ph, c * w)    # [(k ph), (C W)]
            out[n] = (wy[idx].reshape(k * ph, h).t() @ t).view(h, c, w).permute(1, 0, 2)
        return out.to(ctx.dtype), None, None, None


def speed_up_training(model: torch.nn.Module) -> torch.nn.Module:
    """The training model's CPU time, without changing what it computes in float32: the RoIAlign
    layers get the separable gradient (_RoIAlignFn; the forward stays torchvision's), and
    cpu_training.prepare_for_cpu_training (channels-last; depthwise convolutions in float32 under
    the step's bf16 autocast). Evaluation runs in float32 without autocast."""
    for k in ("bbox_roi_extractor", "mask_roi_extractor"):
        for layer in getattr(model.roi_head, k).roi_layers:
            layer.forward = RoIAlignSeparableGrad(layer)
    return cpu_training.prepare_for_cpu_training(model)


class RoIAlignSeparableGrad:
    """Replaces an mmcv RoIAlign layer's forward (aligned, sampling_ratio 0) with _RoIAlignFn."""

    def __init__(self, layer):
        if not layer.aligned or layer.sampling_ratio != 0 or layer.pool_mode != "avg":
            raise SystemExit(f"RoIAlignSeparableGrad: unsupported {layer}")
        self.out_hw, self.scale = tuple(layer.output_size), float(layer.spatial_scale)

    def __call__(self, x, rois):
        return _RoIAlignFn.apply(x, rois, self.out_hw, self.scale)


def check_roi_align_grad() -> float:
    """_RoIAlignFn's gradient against torchvision's own backward on random features and RoIs (inside,
    partly outside, tiny, 7x7 and 14x14 outputs); raises if they differ. -> the max abs difference."""
    import torchvision
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for n, c, h, w, r, out, scale in [(2, 3, 13, 17, 20, (7, 7), 0.25), (3, 8, 40, 36, 60, (14, 14), 0.125),
                                      (1, 5, 8, 9, 30, (7, 5), 0.0625)]:
        x = torch.randn(n, c, h, w, generator=gen, requires_grad=True)
        side = torch.tensor([w / scale, h / scale])
        corner = torch.rand(r, 2, generator=gen) * side * 1.2 - side * 0.1
        size = torch.rand(r, 2, generator=gen) * side * 0.6
        size[:3] *= 0.01
        rois = torch.cat([torch.randint(0, n, (r, 1), generator=gen).float(), corner, corner + size], 1)
        rois[0, 1:] = torch.tensor([-30.0, -20.0, side[0] + 40, side[1] + 10])
        g = torch.randn(r, c, *out, generator=gen)
        ref, = torch.autograd.grad(torchvision.ops.roi_align(x, rois, out, scale, 0, True), x, g)
        y = _RoIAlignFn.apply(x, rois, out, scale)
        got, = torch.autograd.grad(y, x, g)
        diff = float((ref - got).abs().max())
        if not torch.equal(y, torchvision.ops.roi_align(x, rois, out, scale, 0, True)) or diff > 1e-4 * max(1.0, float(ref.abs().max())):
            raise SystemExit(f"RoIAlign gradient check failed: max |diff| {diff}")
        worst = max(worst, diff)
    return worst


# ----------------------------------------------------------------------------------------------
# data

class Shapes:
    """A shapes.py folder. Without annotations.json (a folder whose generation was cut short: the
    file is written last) the annotations are derived from instances/ and labels/ exactly as shapes.py
    defines them (instance k = the k-th annotation, its class = labels/ under its mask, bbox = the
    visible mask's extent with w = max col - min col + 1); `limit` keeps the first N images by name
    (shapes.py draws image i from rng([seed, i]), so N images are those of `--count N`)."""

    def __init__(self, root: str, limit: int | None = None):
        self.root = root
        self.ann_file = os.path.join(root, "annotations.json")
        if os.path.exists(self.ann_file):
            with open(self.ann_file) as f:
                ann = json.load(f)
        else:
            ann = derive_annotations(root, limit)
        self.images = ann["images"][:limit] if limit else ann["images"]
        names = {c["id"]: c["name"] for c in ann["categories"]}
        self.cat_to_label = {cid: CLASSES.index(n) for cid, n in names.items()}
        self.label_to_cat = {v: k for k, v in self.cat_to_label.items()}
        self.anns = {im["id"]: [] for im in self.images}
        for a in ann["annotations"]:
            if a["image_id"] in self.anns:
                self.anns[a["image_id"]].append(a)

    def __len__(self):
        return len(self.images)

    def path(self, i: int) -> str:
        return os.path.join(self.root, "images", self.images[i]["file_name"])

    def load(self, i: int):
        im = self.images[i]
        bgr = cv2.imread(self.path(i), cv2.IMREAD_COLOR)
        inst = cv2.imread(os.path.join(self.root, "instances", im["file_name"]), cv2.IMREAD_UNCHANGED)
        if inst.ndim == 3:
            inst = inst[..., 0]
        return bgr, inst, self.anns[im["id"]]


def derive_annotations(root: str, limit: int | None) -> dict:
    names = sorted(os.listdir(os.path.join(root, "images")))[:limit]
    images, anns = [], []
    for i, name in enumerate(names):
        inst = cv2.imread(os.path.join(root, "instances", name), cv2.IMREAD_UNCHANGED)
        lab = cv2.imread(os.path.join(root, "labels", name), cv2.IMREAD_UNCHANGED)
        if inst is None or lab is None:
            raise SystemExit(f"{root}: {name} has no instances/labels PNG (and there is no annotations.json)")
        h, w = inst.shape[:2]
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for k in range(1, int(inst.max()) + 1):
            m = inst == k
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            cats = np.bincount(lab[m], minlength=len(CLASSES) + 1)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(cats.argmax()),
                         "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                  int(ys.max() - ys.min() + 1)],
                         "area": int(m.sum()), "iscrowd": 0, "instance_index": k})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}


def train_sample(ds: Shapes, i: int, rng: np.random.Generator):
    """-> (normalised float32 CHW tensor of the resized image, DetDataSample without batch shape)."""
    bgr, inst, anns = ds.load(i)
    h, w = bgr.shape[:2]
    img = mmcv.imrescale(bgr, tuple(DATA["scale"]), interpolation="bilinear", backend="cv2")
    nh, nw = img.shape[:2]
    sx, sy = nw / w, nh / h
    anns = [a for a in anns if not a.get("iscrowd", 0)]
    masks = np.stack([cv2.resize((inst == a["instance_index"]).astype(np.uint8), (nw, nh),
                                 interpolation=cv2.INTER_NEAREST) for a in anns]) if anns else \
        np.zeros((0, nh, nw), np.uint8)
    boxes = np.array([[a["bbox"][0] * sx, a["bbox"][1] * sy, (a["bbox"][0] + a["bbox"][2]) * sx,
                       (a["bbox"][1] + a["bbox"][3]) * sy] for a in anns], np.float32).reshape(-1, 4)
    labels = np.array([ds.cat_to_label[a["category_id"]] for a in anns], np.int64)
    flip = bool(rng.random() < 0.5)
    if flip:
        img = img[:, ::-1]
        masks = masks[:, :, ::-1]
        boxes = np.stack([nw - boxes[:, 2], boxes[:, 1], nw - boxes[:, 0], boxes[:, 3]], axis=1)
    x = img.astype(np.float32)
    x = x * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)                      # contrast, brightness
    x = x * rng.uniform(0.92, 1.08, size=3).astype(np.float32)                # per-channel gain
    x = np.clip(x, 0, 255)[..., ::-1]                                          # BGR -> RGB
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    sample = DetDataSample(metainfo=dict(img_shape=(nh, nw), ori_shape=(h, w), scale_factor=(sx, sy),
                                         flip=flip, img_id=ds.images[i]["id"]))
    gt = InstanceData()
    gt.bboxes = torch.from_numpy(boxes)
    gt.labels = torch.from_numpy(labels)
    gt.masks = BitmapMasks(np.ascontiguousarray(masks), nh, nw)
    sample.gt_instances = gt
    return t, sample


def collate(items):
    div = DATA["size_divisor"]
    hp = max(t.shape[1] for t, _ in items)
    wp = max(t.shape[2] for t, _ in items)
    hp, wp = -(-hp // div) * div, -(-wp // div) * div
    batch = torch.zeros(len(items), 3, hp, wp)
    samples = []
    for k, (t, s) in enumerate(items):
        batch[k, :, :t.shape[1], :t.shape[2]] = t
        s.set_metainfo(dict(pad_shape=(hp, wp), batch_input_shape=(hp, wp)))
        samples.append(s)
    return batch, samples


# ----------------------------------------------------------------------------------------------
# evaluation (2.11 inference semantics)

def detect(model, path: str):
    """-> det_bboxes [M,5] (original pixels), det_labels [M], det_masks bool [M,H,W]."""
    _, _, inp, meta = dfx.preprocess(path, DATA)
    out, _ = dfx.two_stage_211(model, inp, meta)
    return out["det_bboxes"], out["det_labels"].long(), out["det_masks"]


def coco_results(image_id: int, boxes, labels, masks, label_to_cat) -> list:
    res = []
    for k in range(boxes.shape[0]):
        x1, y1, x2, y2, s = [float(v) for v in boxes[k].tolist()]
        rle = mask_util.encode(np.asfortranarray(masks[k].numpy().astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        res.append({"image_id": image_id, "category_id": label_to_cat[int(labels[k])],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s, "segmentation": rle})
    return res


def coco_eval(ann_file: str, results: list, img_ids=None) -> dict:
    """pycocotools COCOeval bbox and segm -> {'bbox': stats[12], 'segm': stats[12]} (-1 when empty)."""
    import contextlib
    import io
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
    for iou_type in ("bbox", "segm"):
        if not results:
            out[iou_type] = [0.0] * 12
            continue
        res = copy.deepcopy(results)
        if iou_type == "segm":          # mmdet >= 2.12 / 3.x: the mask result without its box
            for r in res:
                r.pop("bbox")
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(res)
            ev = COCOeval(gt, dt, iou_type)
            if img_ids is not None:
                ev.params.imgIds = list(img_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out[iou_type] = [float(v) for v in ev.stats]
    return out


@torch.no_grad()
def evaluate(model, ds: Shapes, limit: int | None = None) -> dict:
    was = model.training
    model.eval()
    n = len(ds) if limit is None else min(limit, len(ds))
    results = []
    for i in range(n):
        b, l, m = detect(model, ds.path(i))
        results += coco_results(ds.images[i]["id"], b, l, m, ds.label_to_cat)
    stats = coco_eval(ds.ann_file, results, [ds.images[i]["id"] for i in range(n)])
    model.train(was)
    return stats


# ----------------------------------------------------------------------------------------------
# weights

def export(model, path: str, meta: dict) -> int:
    from safetensors.torch import save_file
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(sd, path, metadata={k: str(v) for k, v in meta.items()})
    return os.path.getsize(path)


def load_exported(model, path: str) -> None:
    """fp16 file -> the float32 model (strict apart from num_batches_tracked)."""
    from safetensors.torch import load_file
    sd = {k: v.float() for k, v in load_file(path).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing[:5]} unexpected {unexpected[:5]}")


def seg_palette() -> list:
    p = os.path.join(ROOT, "configs", "demo-shapes-seg.json")
    if os.path.exists(p):
        with open(p) as f:
            seg = json.load(f)
        names, pal = seg.get("classes"), seg.get("palette")
        if names and pal and all(c in names for c in CLASSES):
            return [list(pal[names.index(c)]) for c in CLASSES]
    return PALETTE


def write_config(model: dict, description: str) -> dict:
    cfg = {"description": description, "model": model, "data": DATA, "classes": CLASSES,
           "palette": seg_palette(), "weights": os.path.basename(WEIGHTS_OUT)}
    with open(CONFIG_OUT, "w") as f:
        f.write(detection_configs.dump_json(cfg) + "\n")
    return cfg


def describe(args, init: str) -> str:
    schedule = "one cosine" if args.restart_cycles == 0 else "cosine with warm restarts"
    return (f"Demo Mask R-CNN (UniFormer hybrid backbone 32-64-128-256, layers 2-2-4-2, FPN 64) trained on "
            f"synthetic shapes scenes (tasks/demo/shapes.py) by tasks/demo/train_det.py: "
            f"{args.iters + args.restart_cycles * args.restart_iters} iterations x batch {args.batch} "
            f"(AdamW, {schedule}; the schedule in tasks/demo/train.sh), {init}. "
            f"5 classes: {', '.join(CLASSES)}.")


def init_from_seg(model, path: str) -> int:
    from safetensors.torch import load_file
    sd = load_file(path)
    bb = {k[len("backbone."):]: v.float() for k, v in sd.items() if k.startswith("backbone.")}
    own = model.backbone.state_dict()
    bad = [k for k in own if k not in bb and not k.endswith("num_batches_tracked")]
    bad += [k for k in bb if k in own and bb[k].shape != own[k].shape]
    if bad:
        raise SystemExit(f"{path}: backbone does not fit ({bad[:5]})")
    model.backbone.load_state_dict(bb, strict=False)
    return len(bb)


def ensure_split(out: str, split: str, count: int) -> None:
    """shapes.py with its default seed of the split (so the segmentation demo's folders can be shared)"""
    if os.path.exists(os.path.join(out, "annotations.json")):
        with open(os.path.join(out, "annotations.json")) as f:
            n = len(json.load(f)["images"])
        if n >= count:
            return
    elif os.path.isdir(os.path.join(out, "images")) and len(os.listdir(os.path.join(out, "images"))) >= count:
        return   # annotations derived from the PNGs (Shapes)
    print(f"generating {count} {split} images into {out}", flush=True)
    subprocess.run([sys.executable, SHAPES, "--out", out, "--split", split, "--count", str(count)], check=True)


# ----------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-dir", default="/tmp/shapes-train")
    ap.add_argument("--val-dir", default="/tmp/shapes-val")
    ap.add_argument("--train-count", type=int, default=3000)
    ap.add_argument("--val-count", type=int, default=200)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--restart-iters", type=int, default=250,
                    help="after --iters, a second cosine cycle of this many iterations (warm restart)")
    ap.add_argument("--restart-lr", type=float, default=4e-4)
    ap.add_argument("--restart-cycles", type=int, default=0, help="how many such cycles")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--fp32", action="store_true",
                    help="no bf16 autocast in the training step (default: matmuls and convolutions in bf16 "
                         "with float32 weights, gradients and optimiser state)")
    ap.add_argument("--init-seg", default="none",
                    help=f"backbone.* from this file (e.g. {os.path.relpath(SEG_WEIGHTS, ROOT)}); default none: from scratch")
    ap.add_argument("--eval-every", type=int, default=500, help="val AP on 50 images every N iterations")
    ap.add_argument("--ckpt", default="/tmp/train_det_ckpt.pth", help="float32 state saved every 100 iters")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-generate", action="store_true")
    ap.add_argument("--weights-out", default=WEIGHTS_OUT)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--config-only", action="store_true", help="only (re)write configs/demo-shapes-det.json")
    args = ap.parse_args()

    if args.config_only:
        init = "from scratch (PyTorch default init + mmdet's head inits)" if args.init_seg == "none" else \
            f"backbone from {os.path.relpath(args.init_seg, ROOT)}"
        write_config(model_dict(), describe(args, init))
        print(f"wrote {CONFIG_OUT}")
        return
    if not args.no_generate:
        ensure_split(args.train_dir, "train", args.train_count)
        ensure_split(args.val_dir, "val", args.val_count)
    train, val = Shapes(args.train_dir, args.train_count), Shapes(args.val_dir, args.val_count)

    print(f"RoIAlign gradient: max |diff| to torchvision's {check_roi_align_grad():.1e}", flush=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model_cfg = model_dict()
    model = build(model_cfg)
    init = "from scratch (PyTorch default init + mmdet's head inits)"
    if args.init_seg != "none":
        n = init_from_seg(model, args.init_seg)
        init = f"backbone from {os.path.relpath(args.init_seg, ROOT)} ({n} tensors)"
    print("init:", init, flush=True)
    speed_up_training(model)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"parameters: {nparams}", flush=True)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.999))

    total = args.iters + args.restart_cycles * args.restart_iters

    def lr_at(it):
        if it >= args.iters:                     # warm restart: a second cosine from restart_lr to 0
            t = ((it - args.iters) % max(1, args.restart_iters)) / max(1, args.restart_iters)
            return args.restart_lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if it < args.warmup:
            return args.lr * (0.05 + 0.95 * it / args.warmup)
        t = (it - args.warmup) / max(1, args.iters - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    start = 0
    if args.resume and os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start = ck["iter"]
        rng = np.random.default_rng([args.seed, start])
        torch.manual_seed(args.seed + start)
        print(f"resumed at iteration {start}", flush=True)

    model.train()
    order = rng.permutation(len(train))
    pos = (start * args.batch) % len(train)
    t0 = time.time()
    smooth = {}
    for it in range(start, total):
        items = []
        for _ in range(args.batch):
            if pos >= len(order):
                order, pos = rng.permutation(len(train)), 0
            items.append(train_sample(train, int(order[pos]), rng))
            pos += 1
        inputs, samples = collate(items)
        for g in opt.param_groups:
            g["lr"] = lr_at(it)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.fp32):
            losses = model.loss(inputs, samples)
        loss_sum = 0.0
        parts = {}
        for k, v in losses.items():
            if "loss" not in k:
                continue
            v = sum(x.sum() for x in v) if isinstance(v, (list, tuple)) else v.sum()
            parts[k] = float(v)
            loss_sum = loss_sum + v
        opt.zero_grad(set_to_none=True)
        loss_sum.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        for k, v in parts.items():
            smooth[k] = v if k not in smooth else 0.9 * smooth[k] + 0.1 * v
        if it % 10 == 0 or it == total - 1:
            el = time.time() - t0
            rate = el / (it - start + 1)
            print(f"it {it:5d} lr {lr_at(it):.2e} loss {float(loss_sum):.3f} "
                  + " ".join(f"{k.replace('loss_', '')} {v:.3f}" for k, v in smooth.items())
                  + f" | gn {float(gn):.1f} | {rate:.2f} s/it, {el / 60:.1f} min, eta {(total - it - 1) * rate / 60:.1f} min",
                  flush=True)
        if (it + 1) % 100 == 0 or it == total - 1:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "iter": it + 1}, args.ckpt)
        if args.eval_every and (it + 1) % args.eval_every == 0 and it + 1 < total:
            s = evaluate(model, val, 50)
            print(f"  val[50] box AP50 {s['bbox'][1]:.3f} AP {s['bbox'][0]:.3f} | "
                  f"mask AP50 {s['segm'][1]:.3f} AP {s['segm'][0]:.3f}", flush=True)
    train_min = (time.time() - t0) / 60
    print(f"training: {total - start} iterations in {train_min:.1f} min "
          f"(TRAIN_THREADS={torch.get_num_threads()})", flush=True)

    # export fp16 and evaluate what was exported (fp16 weights computed in float32)
    description = describe(args, init)
    if args.no_export:
        return
    size = export(model, args.weights_out, {"format": "pt", "generator": "tasks/demo/train_det.py",
                                            "iters": args.iters, "restart_iters": args.restart_iters,
                                            "batch": args.batch, "seed": args.seed})
    print(f"wrote {args.weights_out} ({size / 1e6:.2f} MB)", flush=True)
    write_config(model_cfg, description)
    print(f"wrote {CONFIG_OUT}", flush=True)
    check = build(model_dict(), init=False)
    load_exported(check, args.weights_out)
    t1 = time.time()
    s = evaluate(check, val)
    print(f"val ({len(val)} images, exported fp16 weights, 2.11 inference): "
          f"box AP50 {s['bbox'][1]:.4f} AP {s['bbox'][0]:.4f} | mask AP50 {s['segm'][1]:.4f} AP {s['segm'][0]:.4f} "
          f"({time.time() - t1:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
