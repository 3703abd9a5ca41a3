"""Object-detection parity fixtures: tiny UniFormer Mask R-CNN / Cascade Mask R-CNN / RetinaNet.

Runs in the mmdetection venv (bash tasks/reference/mmdet_env.sh creates it):

    tasks/reference/.venv-mmdet/bin/python tasks/reference/detection_fixtures.py
    tasks/reference/.venv-mmdet/bin/python tasks/reference/detection_fixtures.py --check-env

Our reference backbone (uniformer_ref.UniFormer) is registered as `UniFormer` in mmdet's MODELS
registry, and mmdet 3.3.0's own detectors (MaskRCNN, CascadeRCNN, RetinaNet with FPN, RPNHead,
StandardRoIHead / CascadeRoIHead, Shared2FCBBoxHead / ConvFCBBoxHead, FCNMaskHead, RetinaHead) are
built from the model dicts of tasks/configs/detection_configs.py (the upstream configs), shrunk:
backbone embed_dim 16,32,48,64, head_dim 16, layers 1,1,4,1 (hybrid: window 3, blocks3.3 global),
FPN out_channels 32, RPN feat_channels 32, RoI extractors 32 channels, Shared2FC fc_out_channels 32,
cascade ConvFC heads 4 shared convs x 8 channels + BN and 1 fc of 32, FCNMaskHead 4 convs x 16
channels, RetinaHead 4 stacked convs x 16 channels, 5 made-up classes (small, because the weights are
committed: 0.6-0.7 MB per set in float16). Anchors, coders, RoIAlign,
test_cfg: as upstream.

What the committed numbers follow: mmdetection 2.11 (the version the UniFormer checkpoints were
trained and evaluated with; its code is in the Sense-X/UniFormer repository, object_detection/mmdet,
version 2.11.0), written out below in `two_stage_211` (own code, from reading 2.11), run on the
modules of mmdet 3.3. Where 3.x differs, 2.11 wins, except for RetinaNet, whose candidate selection
follows 3.x (no UniFormer RetinaNet checkpoint exists; `retinanet_3x`). The differences found
(`DIFFERENCES` below, also in tasks/reference/README.md):

  1. RPN `min_bbox_size: 0`: 2.11 filters only when min_bbox_size > 0 (`w >= m & h >= m`), so
     zero-width/height proposals (anchors clipped at the image border) are kept and go through NMS
     (their IoU is 0, or 0/0 = NaN, which never suppresses) into the RoI head. 3.x filters whenever
     min_bbox_size >= 0 with `w > m & h > m`, dropping them. The fixture configs keep the 2.11 value
     0; the 3.x model built for the cross-checks gets -1, which switches the 3.x filter off, so the
     two then agree exactly.
  2. Mask R-CNN / Cascade: 2.11 rescales the class boxes to the original image *before* the class-wise
     NMS (NMS on original-image coordinates) and builds the mask RoIs from det_bboxes * scale_factor
     (a float round trip); the masks are pasted at (det_bboxes * scale_factor) / scale_factor. 3.x
     runs NMS on network-input coordinates, uses the unrescaled boxes as mask RoIs and pastes at
     boxes / scale_factor. Same boxes, scores and labels here; mask probabilities differ in the last
     bits (counted in each case's record).
  3. Cascade masks: 2.11 averages the three stages' sigmoid maps in numpy float32 (merge_aug_masks,
     np.mean over axis 0); 3.x in torch.
  4. 2.11's StandardRoIHead.simple_test_bboxes (batched since 2.10) zeroes the logits and deltas of
     every RoI whose y2 == 0 (meant for padding rows), and simple_test_mask drops detections whose
     y2 * scale == 0 from the mask results. Both only touch boxes squashed onto the top border; the
     generator counts them and requires 0 so that no fixture depends on that accident.
  5. Rescaling: 2.11 divides by scale_factor; 3.x's bbox heads multiply by 1/scale_factor when
     there is no mask head (RetinaNet, here), a last-bit difference.
  6. RetinaNet (3.x followed): 2.11 keeps per level the nms_pre anchors with the highest max-class
     score and then thresholds every (anchor, class) pair at score_thr; 3.x thresholds first and keeps
     per level the nms_pre highest (anchor, class) pairs (filter_scores_and_topk), rescales, drops
     boxes with w <= 0 or h <= 0 (min_bbox_size 0), then runs the class-wise NMS.
  7. Test pipeline: 2.11 normalises with mmcv.imnormalize (cv2: (x - mean) * (1/std) with a double
     1/std) and pads with mmcv.impad_to_multiple; 3.x's DetDataPreprocessor computes (x - mean) / std
     in float32 torch. They can differ in the last bit (the inference_detector check has a tolerance);
     on the fixture pictures the inputs are identical (recorded).

mmcv-lite has no compiled ops. Instead of a stub, `install_mmcv_ext()` puts a module of our own
into sys.modules['mmcv._ext'] whose two kernels mmdet needs at test time are torchvision 0.29.2's
(built against torch's stable ABI, so it loads with torch 2.15):
  nms(boxes, scores, iou_threshold, offset)  -> torchvision.ops.nms (offset must be 0, mmcv's default
      and mmdet's: IoU = inter / (area_i + area_j - inter), areas (x2-x1)*(y2-y1), suppression when
      IoU > threshold, boxes visited in descending score order with a stable sort, so of tied scores
      the lower index is kept; mmcv's CPU kernel sorts without `stable` and CUDA's is stable, see
      units.json)
  roi_align_forward(...) -> torchvision.ops.roi_align (average pooling only; `aligned` passed through;
      sampling_ratio <= 0 = adaptive ceil(roi_size / output_size) samples per bin in both libraries)
mmcv's own Python stays in front of them: mmcv.ops.nms, batched_nms (class offsets: boxes +
label * (max coordinate + 1)) and RoIAlign. Every other mmcv._ext name raises if called. Both kernels
are checked against pure-torch loops written from the semantics (`reference_nms`,
`reference_roi_align`) and RoIAlign against the closed form on a linear ramp; the numbers are in
units.json.

Writes Tests/UniFormerTests/Fixtures/detection/:
  weights/<set>.pth   one checkpoint per weight set, mmcv's layout {'meta': {'CLASSES', 'mmdet_version',
                      ...}, 'state_dict': OrderedDict} with the upstream key names (backbone.*,
                      neck.lateral_convs.0.conv.weight, rpn_head.rpn_conv.weight, roi_head.bbox_head.
                      fc_cls.weight, roi_head.bbox_head.0.shared_convs.0.conv.weight (cascade),
                      roi_head.mask_head.0.convs.0.conv.weight (cascade), bbox_head.retina_cls.weight, ...,
                      BN num_batches_tracked), every floating tensor float16 (outputs are computed in
                      float32 from the rounded weights). The cases of a set differ only in stage-3
                      attention, score_thr or the picture, so they share the file (config.json names it).
  <case>/config.json  our config format ({"model": 2.11 dict, "data", "classes"}) + "weights" (path of
                      the checkpoint, relative to the case folder) + a "fixture" record (versions, sizes,
                      counts, score range, mask areas, the results of every self-check)
  <case>/image.png    the picture (generated), read with cv2.imread
  <case>/io.safetensors
                      input [1,3,H,W] float32 (normalised, padded), fpn0..fpn4 (neck outputs),
                      rpn_proposals [N,5] (x1,y1,x2,y2,score; network-input pixels; after NMS and
                      max_per_img; not for RetinaNet), det_bboxes [M,5] (original-image pixels),
                      det_labels [M] (float), for mask models det_masks [M,H0,ceil(W0/8)] uint8:
                      the 0/1 masks at the original size, np.packbits along the width (MSB first)
  <case>/detections.json
                      the detections as `uniformer detect` writes them (bbox [x, y, w, h] with
                      w = x2 - x1 in double, as 2.11's xyxy2xywh; score; category_id = label index;
                      label; segmentation = COCO RLE by pycocotools, counts as a string)
  units.json          mmdet's numbers for anchors, DeltaXYWH decoding (mmdet's own test numbers and a
                      clamping case), NMS with ties, RoIAlign on ramps, RoI level mapping, mask pasting,
                      COCO RLE

The test pipeline is 2.11's: cv2.imread (BGR) -> mmcv.imrescale keep-ratio (cv2 INTER_LINEAR) with
scale_factor = (new_w / w, new_h / h) per axis -> mmcv.imnormalize (to_rgb) -> mmcv.impad_to_multiple(32),
zeros at the bottom/right; img_shape is the resized (unpadded) size, which all clipping uses.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import subprocess
import sys
import types
import warnings
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tasks", "configs"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ENV_HINT = ("run this in the mmdetection venv: bash tasks/reference/mmdet_env.sh && "
            "tasks/reference/.venv-mmdet/bin/python tasks/reference/detection_fixtures.py")


# ----------------------------------------------------------------------------------------------
# mmcv._ext: the two kernels mmdet's test path needs, on torchvision

def install_mmcv_ext() -> types.ModuleType:
    """Register our `mmcv._ext` (before anything imports mmcv.ops). Idempotent."""
    existing = sys.modules.get("mmcv._ext")
    if existing is not None and getattr(existing, "__torchvision_kernels__", False):
        return existing
    import torchvision.ops

    mod = types.ModuleType("mmcv._ext", "mmcv's compiled ops replaced by torchvision kernels "
                                        "(tasks/reference/detection_fixtures.py)")
    mod.__torchvision_kernels__ = True

    def nms(boxes, scores, iou_threshold, offset=0):
        if offset != 0:
            raise NotImplementedError("mmcv._ext.nms: offset=1 (legacy +1 areas) has no torchvision kernel")
        return torchvision.ops.nms(boxes.float(), scores.float(), float(iou_threshold))

    def roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height, aligned_width,
                          spatial_scale, sampling_ratio, pool_mode, aligned):
        if pool_mode != 1:
            raise NotImplementedError("mmcv._ext.roi_align_forward: only pool_mode 'avg' (torchvision)")
        out = torchvision.ops.roi_align(input, rois, (int(aligned_height), int(aligned_width)),
                                        float(spatial_scale), int(sampling_ratio), bool(aligned))
        output.copy_(out)

    mod.nms = nms
    mod.roi_align_forward = roi_align_forward

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise NotImplementedError(f"mmcv._ext.{name}: not available (mmcv-lite; only nms and "
                                      "roi_align_forward are provided, on torchvision)")
        unavailable.__name__ = name
        return unavailable

    mod.__getattr__ = __getattr__
    sys.modules["mmcv._ext"] = mod
    return mod


try:
    install_mmcv_ext()
    import cv2
    import mmcv
    import mmcv.ops
    import mmdet
    import mmengine
    import PIL
    import pycocotools
    import pycocotools.mask as mask_util
    import torchvision
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from PIL import Image
except ImportError as e:  # pragma: no cover
    sys.exit(f"{e}\n{ENV_HINT}")

warnings.filterwarnings("ignore")  # mmcv-lite's "install mmcv rather than mmcv-lite" etc.
init_default_scope("mmdet")
from mmcv.ops import batched_nms  # noqa: E402
from mmdet.apis import inference_detector  # noqa: E402
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask as paste_mask_3x  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402

import detection_configs  # noqa: E402  (tasks/configs)
from backbone_fixtures import randomize_  # noqa: E402
from uniformer_ref import SABlock, UniFormer, attention_override, stage3_windows  # noqa: E402

MODELS.register_module("UniFormer", module=UniFormer, force=True)

OUT = os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "detection")
SEED = 20240801
WEIGHTS_DTYPE = torch.float16
CLASSES = ["apple", "kite", "lamp", "boat", "chair"]  # made up, 5
NUM_CLASSES = len(CLASSES)
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
MIRROR = os.environ.get("UNIFORMER_MIRROR", "/work/.mirror/Sense-X+UniFormer/repo")

DIFFERENCES = [
    "RPN min_bbox_size 0: 2.11 keeps zero-width/height proposals (filters only when > 0, w >= m & h >= m); "
    "3.x drops them (filters when >= 0, w > m & h > m). The fixtures follow 2.11; the 3.x model of the "
    "cross-checks runs with min_bbox_size -1, which reproduces 2.11.",
    "Mask R-CNN / Cascade: 2.11 rescales boxes before the class-wise NMS, takes mask RoIs from "
    "det_bboxes * scale_factor and pastes at (det_bboxes * scale_factor) / scale_factor; 3.x runs NMS "
    "on input coordinates, uses the unrescaled boxes as mask RoIs and pastes at boxes / scale_factor.",
    "Cascade masks: 2.11 averages the stage sigmoids in numpy float32 (np.mean), 3.x in torch.",
    "2.11 simple_test_bboxes zeroes logits/deltas of RoIs with y2 == 0 and simple_test_mask drops "
    "detections with y2 * scale == 0 (padding logic); the fixtures contain no such box (checked).",
    "Rescale: 2.11 divides by scale_factor; 3.x multiplies by 1 / scale_factor in heads without a mask "
    "head (RetinaNet here).",
    "RetinaNet (3.x followed): 3.x thresholds (anchor, class) pairs at score_thr, keeps the nms_pre best "
    "pairs per level, rescales, drops w <= 0 or h <= 0 boxes (min_bbox_size 0), class-wise NMS; 2.11 "
    "keeps the nms_pre anchors with the best max-class score per level, thresholds after, no size filter.",
    "Normalisation: 2.11 mmcv.imnormalize ((x - mean) * (1 / std), cv2 with a double 1/std); 3.x "
    "DetDataPreprocessor ((x - mean) / std in float32 torch): can differ in the last bit (identical inputs "
    "on the fixture pictures; inference_detector check has a tolerance).",
]


# ----------------------------------------------------------------------------------------------
# tiny model dicts (the upstream dicts of tasks/configs/detection_configs.py, shrunk)

TINY_BACKBONE = {"embed_dim": [16, 32, 48, 64], "layers": [1, 1, 4, 1], "head_dim": 16}
TINY_DIMS = TINY_BACKBONE["embed_dim"]


def tiny_model(kind: str, attention: str) -> dict:
    """kind: mask_rcnn | cascade | retinanet; attention: global | hybrid:3 | window:3 (stage 3)."""
    build = {"mask_rcnn": detection_configs.mask_rcnn, "cascade": detection_configs.cascade_mask_rcnn,
             "retinanet": detection_configs.retinanet}[kind]
    m = build("small", 0.2, [0, 0, 4, 0])
    b = dict(m["backbone"], **TINY_BACKBONE)
    b["checkpoint_num"] = [0, 0, 4, 0]
    m["backbone"] = attention_override(b, attention)
    if attention == "global":
        m["backbone"]["window_size"] = 14  # unused; as upstream's global configs leave it
    m["neck"].update(in_channels=TINY_DIMS, out_channels=32)
    if kind == "retinanet":
        m["bbox_head"].update(num_classes=NUM_CLASSES, in_channels=32, feat_channels=16)
        return m
    m["rpn_head"].update(in_channels=32, feat_channels=32)
    rh = m["roi_head"]
    rh["bbox_roi_extractor"]["out_channels"] = 32
    rh["mask_roi_extractor"]["out_channels"] = 32
    heads = rh["bbox_head"] if isinstance(rh["bbox_head"], list) else [rh["bbox_head"]]
    for h in heads:
        h.update(in_channels=32, fc_out_channels=32, num_classes=NUM_CLASSES)
        if "conv_out_channels" in h:
            h["conv_out_channels"] = 8
    rh["mask_head"].update(in_channels=32, conv_out_channels=16, num_classes=NUM_CLASSES)
    return m


# weight sets: model kind, the cases whose pictures calibrate it (layer gains on the first; the
# score shift so that the detections on all of them add up to about `target` each)
WEIGHT_SETS = {
    "mask_rcnn": dict(kind="mask_rcnn", attention="global", calibrate_on=["mask_rcnn_global", "mask_rcnn_hybrid"],
                      target=14),
    "cascade_mask_rcnn": dict(kind="cascade", attention="hybrid:3", calibrate_on=["cascade_mask_rcnn"], target=12),
    "retinanet": dict(kind="retinanet", attention="hybrid:3", calibrate_on=["retinanet"], target=15),
}

# image: generated picture (width, height); scale: keep-ratio bounds (long, short) as (1333, 800).
# The scales are small because io.safetensors stores the float32 input and the five FPN maps (a
# 128x96 input: 280 KB); the pictures are larger, so every case also tests the downscaling resize.
CASES = [
    # landscape 240x170 -> 128x91 (x0.533), padded 128x96; stage 3 6x8, global
    dict(name="mask_rcnn_global", weights="mask_rcnn", attention="global", image=(240, 170), scale=(128, 96)),
    # portrait 170x230 -> 95x128 (x0.557), padded 96x128; stage 3 8x6: windows of 3 pad 8 rows to 9
    dict(name="mask_rcnn_hybrid", weights="mask_rcnn", attention="hybrid:3", image=(170, 230), scale=(128, 96)),
    # mask_rcnn's weights with score_thr 0.999: nothing survives, empty outputs; 150x110 -> 87x64
    dict(name="mask_rcnn_empty", weights="mask_rcnn", attention="global", image=(150, 110), scale=(96, 64),
         rcnn={"score_thr": 0.999}),
    # 20x14 -> 23x16 (x1.143), padded 32x32: smaller than the strides 32 and 64; anchors at the padded
    # cells clip to zero-width boxes at x = 23 / y = 16 (kept by 2.11, see DIFFERENCES); score_thr 0.02
    # so that a few of its weak detections come through
    dict(name="mask_rcnn_tiny_image", weights="mask_rcnn", attention="global", image=(20, 14), scale=(24, 16),
         rcnn={"score_thr": 0.02}),
    # 200x160 -> 120x96 (x0.6), padded 128x96; hybrid window 3 as upstream's h14
    dict(name="cascade_mask_rcnn", weights="cascade_mask_rcnn", attention="hybrid:3", image=(200, 160),
         scale=(128, 96)),
    # 230x150 -> 128x83 (x0.557), padded 128x96
    dict(name="retinanet", weights="retinanet", attention="hybrid:3", image=(230, 150), scale=(128, 96)),
]


def case_config(case: dict) -> dict:
    wset = WEIGHT_SETS[case["weights"]]
    model = tiny_model(wset["kind"], case["attention"])
    if "rcnn" in case:
        model["test_cfg"]["rcnn"].update(case["rcnn"])
    data = {"mean": MEAN, "std": STD, "to_rgb": True, "scale": list(case["scale"]), "keep_ratio": True,
            "size_divisor": 32}
    return {"model": model, "data": data, "classes": CLASSES,
            "weights": f"../weights/{case['weights']}.pth"}


# ----------------------------------------------------------------------------------------------
# the mmdet 3.3 model

def mmdet_cfg(model: dict, data: dict | None = None, translate_min_bbox_size: bool = True) -> ConfigDict:
    """Our 2.11 model dict -> the 3.x config that computes the same: SyncBN -> BN (eval), no
    `pretrained`, RPN min_bbox_size 0 -> -1 (2.11 filters only when > 0), + DetDataPreprocessor."""
    def walk(v):
        if isinstance(v, dict):
            v = {k: walk(x) for k, x in v.items()}
            if v.get("type") == "SyncBN":
                v["type"] = "BN"
            return v
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v
    cfg = walk(copy.deepcopy(model))
    cfg.pop("pretrained", None)
    rpn = cfg.get("test_cfg", {}).get("rpn")
    if rpn is not None and translate_min_bbox_size:
        m = rpn.get("min_bbox_size", 0)
        if m > 0:
            raise ValueError("min_bbox_size > 0: 2.11 keeps w >= m, 3.x w > m; not translated")
        rpn["min_bbox_size"] = -1
    if data is not None:
        cfg["data_preprocessor"] = dict(type="DetDataPreprocessor", mean=data["mean"], std=data["std"],
                                        bgr_to_rgb=data["to_rgb"], pad_size_divisor=data["size_divisor"])
    return ConfigDict(cfg)


def build_detector(model: dict, data: dict | None = None, translate_min_bbox_size: bool = True) -> nn.Module:
    det = MODELS.build(mmdet_cfg(model, data, translate_min_bbox_size)).eval()
    det.backbone_cfg = dict(model["backbone"])
    return det


# ----------------------------------------------------------------------------------------------
# the picture and the 2.11 test pipeline

def make_picture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """BGR uint8: a soft two-colour gradient, 5-8 flat anti-aliased objects (ellipses, boxes,
    polygons) of distinct colours, a little noise (sigma 1, so the PNG stays small)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    c0, c1 = rng.integers(40, 216, 3), rng.integers(40, 216, 3)
    t = (x / max(width - 1, 1) + y / max(height - 1, 1)) / 2
    img = (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None])
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(5, 9))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        kind = rng.integers(0, 3)
        sw, sh = max(width // 10, 2), max(height // 10, 2)
        if kind == 0:
            axes = (int(rng.integers(sw, max(width // 4, sw + 1))), int(rng.integers(sh, max(height // 4, sh + 1))))
            cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            w, h = int(rng.integers(sw, max(width // 3, sw + 1))), int(rng.integers(sh, max(height // 3, sh + 1)))
            cv2.rectangle(img, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), colour, -1, cv2.LINE_AA)
        else:
            pts = np.stack([cx + rng.integers(-sw * 2, sw * 2 + 1, 5), cy + rng.integers(-sh * 2, sh * 2 + 1, 5)],
                           axis=1).astype(np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    noise = rng.normal(0, 1.0, img.shape)
    return np.clip(img + noise + 0.5, 0, 255).astype(np.uint8)


def preprocess(path: str, data: dict):
    """2.11: LoadImageFromFile, Resize(keep_ratio), Normalize, Pad(size_divisor) with mmcv's calls.
    Returns (bgr, resized uint8, input [1,3,Hp,Wp], meta)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    resized = mmcv.imrescale(bgr, tuple(data["scale"]), interpolation="bilinear", backend="cv2")
    h, w = bgr.shape[:2]
    new_h, new_w = resized.shape[:2]
    w_scale, h_scale = new_w / w, new_h / h
    norm = mmcv.imnormalize(resized, np.array(data["mean"], dtype=np.float32),
                            np.array(data["std"], dtype=np.float32), data["to_rgb"])
    padded = mmcv.impad_to_multiple(norm, data["size_divisor"], pad_val=0)
    inp = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None].float()
    # scale_factor: 2.11's float32 array (w, h, w, h); scale_factor_3x: 3.x's (w, h) python floats
    meta = dict(ori_shape=(h, w), img_shape=(new_h, new_w), pad_shape=tuple(padded.shape[:2]),
                scale_factor=np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32),
                scale_factor_3x=(w_scale, h_scale))
    return bgr, resized, inp, meta


# ----------------------------------------------------------------------------------------------
# 2.11 test semantics, written out (own code)

def delta2bbox_211(rois: torch.Tensor, deltas: torch.Tensor, means, stds, max_shape,
                   wh_ratio_clip: float = 16 / 1000) -> torch.Tensor:
    """DeltaXYWHBBoxCoder.decode: rois [N,4], deltas [N,4k] -> boxes [N,4k], clipped to max_shape (h, w)."""
    k = deltas.size(-1) // 4
    d = deltas * deltas.new_tensor(stds).repeat(k) + deltas.new_tensor(means).repeat(k)
    dx, dy, dw, dh = d[:, 0::4], d[:, 1::4], d[:, 2::4], d[:, 3::4]
    limit = float(np.abs(np.log(wh_ratio_clip)))
    dw, dh = dw.clamp(-limit, limit), dh.clamp(-limit, limit)
    px = ((rois[:, 0] + rois[:, 2]) * 0.5)[:, None]
    py = ((rois[:, 1] + rois[:, 3]) * 0.5)[:, None]
    pw = (rois[:, 2] - rois[:, 0])[:, None]
    ph = (rois[:, 3] - rois[:, 1])[:, None]
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = px + pw * dx, py + ph * dy
    boxes = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], dim=-1).view(deltas.shape)
    if max_shape is not None:
        h, w = float(max_shape[0]), float(max_shape[1])
        lim = deltas.new_tensor([w, h, w, h]).repeat(k)
        zero = deltas.new_tensor(0.0)
        boxes = torch.where(boxes < zero, zero, boxes)
        boxes = torch.where(boxes > lim, lim, boxes)
    return boxes


def rpn_proposals_211(head, cls_scores, bbox_preds, anchors, img_shape, cfg) -> tuple[torch.Tensor, dict]:
    """RPNHead._get_bboxes (2.11): per level sigmoid scores of (h, w, anchor) in that order, the
    nms_pre best by a descending sort, decode, [filter only if min_bbox_size > 0], NMS across the
    batch with the level as the class (mmcv batched_nms), the first max_per_img."""
    scores_l, deltas_l, anchors_l, ids_l = [], [], [], []
    for lvl, (cls, reg, anc) in enumerate(zip(cls_scores, bbox_preds, anchors)):
        s = cls[0].permute(1, 2, 0).reshape(-1).sigmoid()
        d = reg[0].permute(1, 2, 0).reshape(-1, 4)
        if s.numel() > cfg["nms_pre"]:
            s, order = s.sort(descending=True)
            s, order = s[:cfg["nms_pre"]], order[:cfg["nms_pre"]]
            d, anc = d[order], anc[order]
        scores_l.append(s)
        deltas_l.append(d)
        anchors_l.append(anc)
        ids_l.append(torch.full((s.numel(),), lvl, dtype=torch.long))
    scores, ids = torch.cat(scores_l), torch.cat(ids_l)
    coder = head.bbox_coder
    boxes = delta2bbox_211(torch.cat(anchors_l), torch.cat(deltas_l), coder.means, coder.stds, img_shape)
    info = {"before_nms": int(boxes.shape[0]),
            "degenerate": int(((boxes[:, 2] - boxes[:, 0] <= 0) | (boxes[:, 3] - boxes[:, 1] <= 0)).sum())}
    if cfg["min_bbox_size"] > 0:
        m = cfg["min_bbox_size"]
        keep = ((boxes[:, 2] - boxes[:, 0]) >= m) & ((boxes[:, 3] - boxes[:, 1]) >= m)
        boxes, scores, ids = boxes[keep], scores[keep], ids[keep]
    assert boxes.shape[0] < 10000, "mmcv batched_nms would split (split_thr)"
    dets, _ = batched_nms(boxes, scores, ids, dict(cfg["nms"]))
    dets = dets[:cfg["max_per_img"]]
    info["degenerate_after_nms"] = int(((dets[:, 2] - dets[:, 0] <= 0) | (dets[:, 3] - dets[:, 1] <= 0)).sum())
    return dets, info


def multiclass_nms_211(boxes: torch.Tensor, scores: torch.Tensor, score_thr: float, nms: dict, max_num: int):
    """boxes [N,4K] (class-specific) or [N,4], scores [N,K+1] (last = background): every (box, class)
    with score > score_thr, batched (class-offset) NMS, the first max_num. -> dets [M,5], labels [M]."""
    n, k = scores.shape[0], scores.shape[1] - 1
    b = boxes.view(n, -1, 4) if boxes.shape[1] > 4 else boxes[:, None].expand(n, k, 4)
    s = scores[:, :-1]
    labels = torch.arange(k, dtype=torch.long).view(1, -1).expand_as(s)
    b, s, labels = b.reshape(-1, 4), s.reshape(-1), labels.reshape(-1)
    keep = (s > score_thr).nonzero(as_tuple=False).squeeze(1)
    b, s, labels = b[keep], s[keep], labels[keep]
    if b.numel() == 0:
        return b.new_zeros((0, 5)), labels
    dets, kept = batched_nms(b, s, labels, dict(nms))
    if max_num > 0:
        dets, kept = dets[:max_num], kept[:max_num]
    return dets, labels[kept]


def paste_masks_211(probs: torch.Tensor, boxes: torch.Tensor, img_h: int, img_w: int, thr: float) -> torch.Tensor:
    """FCNMaskHead.get_seg_masks' pasting on the CPU (one box at a time, skip_empty): probs [N,28,28]
    (the label's channel), boxes [N,4] in image pixels -> bool [N, img_h, img_w]. Each output pixel
    centre (x + 0.5) maps to (x + 0.5 - x1) / (x2 - x1) * 2 - 1 in grid_sample's [-1, 1] (inf -> 0),
    bilinear with zero padding, align_corners False; only the window floor(min) - 1 .. ceil(max) + 1
    of the box is sampled, the rest stays 0; then >= thr."""
    out = torch.zeros(probs.shape[0], img_h, img_w, dtype=torch.bool)
    for i in range(probs.shape[0]):
        x1, y1, x2, y2 = boxes[i]
        x0_int = int(torch.clamp(torch.floor(x1) - 1, min=0))
        y0_int = int(torch.clamp(torch.floor(y1) - 1, min=0))
        x1_int = int(torch.clamp(torch.ceil(x2) + 1, max=img_w))
        y1_int = int(torch.clamp(torch.ceil(y2) + 1, max=img_h))
        ys = torch.arange(y0_int, y1_int, dtype=torch.float32) + 0.5
        xs = torch.arange(x0_int, x1_int, dtype=torch.float32) + 0.5
        gy = (ys - y1) / (y2 - y1) * 2 - 1
        gx = (xs - x1) / (x2 - x1) * 2 - 1
        gx = torch.where(torch.isinf(gx), torch.zeros_like(gx), gx)
        gy = torch.where(torch.isinf(gy), torch.zeros_like(gy), gy)
        grid = torch.stack([gx[None, :].expand(len(ys), len(xs)), gy[:, None].expand(len(ys), len(xs))], dim=2)
        sampled = F.grid_sample(probs[i][None, None].float(), grid[None], align_corners=False)[0, 0]
        out[i, y0_int:y1_int, x0_int:x1_int] = sampled >= thr
    return out


def rois_of(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes.new_zeros((boxes.shape[0], 1)), boxes[:, :4]], dim=1)


@torch.no_grad()
def two_stage_211(model: nn.Module, inp: torch.Tensor, meta: dict) -> tuple[dict, dict]:
    """mmdet 2.11's TwoStageDetector.simple_test(rescale=True) for Mask R-CNN and Cascade Mask R-CNN
    on the modules of `model` (mmdet 3.3). Returns (tensors, details)."""
    x = model.neck(model.backbone(inp))
    out = {f"fpn{i}": f for i, f in enumerate(x)}
    img_shape, sf = meta["img_shape"], torch.from_numpy(meta["scale_factor"])
    rpn_cfg, rcnn_cfg = model.rpn_head.test_cfg, model.roi_head.test_cfg
    rpn_cfg = dict(rpn_cfg, min_bbox_size=max(rpn_cfg["min_bbox_size"], 0))  # the -1 of mmdet_cfg is 2.11's 0

    cls_scores, bbox_preds = model.rpn_head(x)
    sizes = [c.shape[-2:] for c in cls_scores]
    anchors = model.rpn_head.prior_generator.grid_priors(sizes, device=inp.device)
    proposals, rpn_info = rpn_proposals_211(model.rpn_head, cls_scores, bbox_preds, anchors, img_shape, rpn_cfg)
    out["rpn_proposals"] = proposals
    rh = model.roi_head
    cascade = isinstance(rh.bbox_head, nn.ModuleList)
    details = {"rpn": rpn_info, "proposals_with_y2_zero": int((proposals[:, 3] == 0).sum())}
    rois = rois_of(proposals)
    if not cascade:
        feats = rh.bbox_roi_extractor(x[:rh.bbox_roi_extractor.num_inputs], rois)
        cls, reg = rh.bbox_head(feats)
        zero = rois[:, 4] == 0                       # 2.11 simple_test_bboxes' padding mask (see DIFFERENCES)
        cls[zero], reg[zero] = 0, 0
        last = rh.bbox_head
    else:
        ms = []
        for i in range(rh.num_stages):
            feats = rh.bbox_roi_extractor[i](x[:rh.bbox_roi_extractor[i].num_inputs], rois)
            cls, reg = rh.bbox_head[i](feats)
            ms.append(cls)
            if i < rh.num_stages - 1:                # regress_by_class with the argmax foreground label
                head = rh.bbox_head[i]
                label = cls[:, :-1].argmax(dim=1)
                if not head.reg_class_agnostic:
                    idx = torch.stack([label * 4 + j for j in range(4)], dim=1)
                    d = torch.gather(reg, 1, idx)
                else:
                    d = reg
                refined = delta2bbox_211(rois[:, 1:], d, head.bbox_coder.means, head.bbox_coder.stds, img_shape)
                rois = torch.cat([rois[:, [0]], refined], dim=1)
        cls = sum(ms) / float(len(ms))               # mean of the stages' logits (python sum from 0)
        last = rh.bbox_head[-1]
    scores = F.softmax(cls, dim=-1)
    boxes = delta2bbox_211(rois[:, 1:], reg, last.bbox_coder.means, last.bbox_coder.stds, img_shape)
    boxes = boxes / sf.repeat(boxes.shape[1] // 4)   # rescale=True: divide, before the NMS
    dets, labels = multiclass_nms_211(boxes, scores, rcnn_cfg["score_thr"], rcnn_cfg["nms"], rcnn_cfg["max_per_img"])
    out["det_bboxes"], out["det_labels"] = dets, labels.float()
    details["max_foreground_score"] = float(scores[:, :-1].max()) if scores.numel() else None

    # masks: RoIs at det * scale_factor, pasted at (det * scale_factor) / scale_factor, original size
    h0, w0 = meta["ori_shape"]
    thr = rcnn_cfg["mask_thr_binary"]
    if dets.shape[0] == 0:
        out["det_masks"] = torch.zeros((0, h0, w0), dtype=torch.bool)
        details["mask_rois_with_y2_zero"] = 0
        details["standard_roi_head"] = not cascade
        return out, details
    scaled = dets[:, :4] * sf
    details["mask_rois_with_y2_zero"] = int((scaled[:, 3] == 0).sum())
    details["standard_roi_head"] = not cascade
    mrois = rois_of(scaled)
    if not cascade:
        logits = rh.mask_head(rh.mask_roi_extractor(x[:rh.mask_roi_extractor.num_inputs], mrois))
        probs = logits.sigmoid()
    else:
        stages = [rh.mask_head[i](rh.mask_roi_extractor[i](x[:rh.mask_roi_extractor[i].num_inputs], mrois))
                  .sigmoid().numpy() for i in range(rh.num_stages)]
        probs = torch.from_numpy(np.mean(stages, axis=0))   # merge_aug_masks: numpy float32 mean
    probs = probs[torch.arange(probs.shape[0]), labels]
    out["det_masks"] = paste_masks_211(probs, scaled / sf, h0, w0, thr)
    return out, details


@torch.no_grad()
def retinanet_3x(model: nn.Module, inp: torch.Tensor, meta: dict) -> tuple[dict, dict]:
    """mmdet 3.x's RetinaNet test path (BaseDenseHead._predict_by_feat_single + _bbox_post_process),
    written out: per level the (anchor, class) pairs with sigmoid score > score_thr, the nms_pre best
    (descending sort), decode, rescale (x 1/scale), drop w <= 0 or h <= 0 (min_bbox_size 0), class-wise
    NMS, the first max_per_img."""
    x = model.neck(model.backbone(inp))
    out = {f"fpn{i}": f for i, f in enumerate(x)}
    cfg = model.bbox_head.test_cfg
    cls_scores, bbox_preds = model.bbox_head(x)
    sizes = [c.shape[-2:] for c in cls_scores]
    anchors = model.bbox_head.prior_generator.grid_priors(sizes, device=inp.device)
    k = model.bbox_head.cls_out_channels
    boxes_l, scores_l, labels_l, candidates = [], [], [], []
    for cls, reg, anc in zip(cls_scores, bbox_preds, anchors):
        s = cls[0].permute(1, 2, 0).reshape(-1, k).sigmoid()
        d = reg[0].permute(1, 2, 0).reshape(-1, 4)
        valid = s > cfg["score_thr"]
        vs = s[valid]
        vidx = valid.nonzero(as_tuple=False)
        n = min(cfg["nms_pre"], vidx.shape[0])
        vs, order = vs.sort(descending=True)
        vs, pick = vs[:n], vidx[order[:n]]
        a_idx, lab = pick[:, 0], pick[:, 1]
        coder = model.bbox_head.bbox_coder
        boxes_l.append(delta2bbox_211(anc[a_idx], d[a_idx], coder.means, coder.stds, meta["img_shape"]))
        scores_l.append(vs)
        labels_l.append(lab)
        candidates.append(int(n))
    boxes, scores, labels = torch.cat(boxes_l), torch.cat(scores_l), torch.cat(labels_l)
    boxes = boxes * boxes.new_tensor([1 / s for s in meta["scale_factor_3x"]]).repeat(2)  # 3.x scale_boxes(1/s)
    wh_ok = ((boxes[:, 2] - boxes[:, 0]) > cfg["min_bbox_size"]) & ((boxes[:, 3] - boxes[:, 1]) > cfg["min_bbox_size"])
    details = {"candidates_per_level": candidates, "dropped_by_min_bbox_size": int((~wh_ok).sum())}
    boxes, scores, labels = boxes[wh_ok], scores[wh_ok], labels[wh_ok]
    if boxes.numel():
        dets, keep = batched_nms(boxes, scores, labels, dict(cfg["nms"]))
        dets, keep = dets[:cfg["max_per_img"]], keep[:cfg["max_per_img"]]
        labels = labels[keep]
    else:
        dets = boxes.new_zeros((0, 5))
    out["det_bboxes"], out["det_labels"] = dets, labels.float()
    return out, details


def run_case(model: nn.Module, inp: torch.Tensor, meta: dict) -> tuple[dict, dict]:
    if isinstance(model.neck, nn.Module) and hasattr(model, "roi_head"):
        return two_stage_211(model, inp, meta)
    return retinanet_3x(model, inp, meta)


# ----------------------------------------------------------------------------------------------
# random, informative weights

def _centre_scale_(layer: nn.Module, out: torch.Tensor, std: float, centre: bool,
                   per_channel: bool = False) -> float:
    """`out` = the layer's output with a zero bias, channels last ([N, C]). Scales the weight so the
    output has `std` (each output channel on its own when per_channel: no class dominates the
    argmax), and sets the bias to -mean per channel (centre) or 0."""
    if per_channel:
        gain = std / out.std(dim=0)                                   # [C]
        layer.weight.mul_(gain.view(-1, *([1] * (layer.weight.dim() - 1))))
        layer.bias.copy_(-out.mean(dim=0) * gain if centre else torch.zeros_like(layer.bias))
        return round(float(gain.mean()), 4)
    gain = std / float(out.std())
    layer.weight.mul_(gain)
    layer.bias.copy_(-out.mean(dim=0) * gain if centre else torch.zeros_like(layer.bias))
    return round(gain, 4)


def _channels_last(maps, channels_per_group: int | None = None) -> torch.Tensor:
    """list of [1, C, H, W] -> [sum HW(, groups), C or channels_per_group]"""
    flat = torch.cat([m[0].permute(1, 2, 0).reshape(-1, m.shape[1]) for m in maps])
    return flat if channels_per_group is None else flat.reshape(-1, channels_per_group)


def set_stage3(model: nn.Module, attention: str) -> None:
    """switch the stage-3 attention of a built model in place (the parameters do not change)."""
    b = attention_override(dict(model.backbone_cfg), attention)
    sizes = stage3_windows(len(model.backbone.blocks3), b["windows"], b["hybrid"], b.get("window_size", 14))
    for blk, ws in zip(model.backbone.blocks3, sizes):
        blk.window_size = ws


def _count(model, calib) -> int:
    n = 0
    for attention, inp, meta in calib:
        set_stage3(model, attention)
        out, _ = run_case(model, inp, meta)
        n += int(out["det_bboxes"].shape[0])
    set_stage3(model, calib[0][0])
    return n


def _search_bias(model, calib, target: int, apply) -> float:
    """bisection on a scalar bias shift b (the count of detections falls as b grows) so that the
    pictures of `calib` give about target detections each."""
    lo, hi, target = -12.0, 12.0, target * len(calib)
    best = None
    for _ in range(30):
        mid = (lo + hi) / 2
        apply(mid)
        n = _count(model, calib)
        apply(-mid)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (mid, n)
        if n == target:
            break
        if n > target:
            lo = mid
        else:
            hi = mid
    apply(best[0])
    return round(best[0], 4)


@torch.no_grad()
def informative_weights_(model: nn.Module, kind: str, gen: torch.Generator, calib: list, target: int) -> dict:
    """randomize_ (backbone_fixtures: BN statistics and affine, LN affine, N(0, 1/fan_in) convs and
    linears, bias 0.1 N) + the deconvolution of the mask head; then, on the calibration picture,
    rescale each prediction layer: RPN objectness logits std 2 (centred per anchor), RPN deltas std
    0.25; RoI class logits std 2 (centred per class), deltas std 1 (before target_stds); mask logits
    std 3 (centred per class); RetinaNet class logits std 1.5, deltas std 0.2; finally a common shift
    of the background logit (RoI heads) or of the class biases (RetinaNet), by bisection, so that
    about `target` detections survive score_thr and NMS. Every floating tensor is then rounded to
    WEIGHTS_DTYPE (the reference outputs are computed from the rounded values).
    calib: [(attention, input, meta)], the layer gains come from the first."""
    _, inp, meta = calib[0]
    set_stage3(model, calib[0][0])
    randomize_(model, gen)
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):  # not an nn.Conv2d: randomize_ leaves it alone
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / m.weight.shape[0] ** 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    info = {}
    x = model.neck(model.backbone(inp))
    if kind == "retinanet":
        head = model.bbox_head
        head.retina_cls.bias.zero_()
        head.retina_reg.bias.zero_()
        cls, reg = head(x)
        k = head.cls_out_channels
        info["retina_cls_gain"] = _centre_scale_(head.retina_cls, _channels_last(cls), 1.5, True, True)
        info["retina_reg_gain"] = _centre_scale_(head.retina_reg, _channels_last(reg), 0.2, False)
        del k

        def shift(b):
            head.retina_cls.bias.sub_(b)
        info["class_bias_shift"] = _search_bias(model, calib, target, shift)
    else:
        rpn = model.rpn_head
        rpn.rpn_cls.bias.zero_()
        rpn.rpn_reg.bias.zero_()
        cls, reg = rpn(x)
        info["rpn_cls_gain"] = _centre_scale_(rpn.rpn_cls, _channels_last(cls), 2.0, True)
        info["rpn_reg_gain"] = _centre_scale_(rpn.rpn_reg, _channels_last(reg), 0.25, False)
        cls, reg = rpn(x)
        anchors = rpn.prior_generator.grid_priors([c.shape[-2:] for c in cls], device=inp.device)
        rpn_cfg = dict(rpn.test_cfg, min_bbox_size=0)
        proposals, _ = rpn_proposals_211(rpn, cls, reg, anchors, meta["img_shape"], rpn_cfg)
        rh = model.roi_head
        cascade = isinstance(rh.bbox_head, nn.ModuleList)
        heads = list(rh.bbox_head) if cascade else [rh.bbox_head]
        extractors = list(rh.bbox_roi_extractor) if cascade else [rh.bbox_roi_extractor]
        rois = rois_of(proposals)
        for i, (head, ext) in enumerate(zip(heads, extractors)):
            head.fc_cls.bias.zero_()
            head.fc_reg.bias.zero_()
            c, r = head(ext(x[:ext.num_inputs], rois))
            info[f"fc_cls_gain.{i}"] = _centre_scale_(head.fc_cls, c, 2.0, True, True)
            info[f"fc_reg_gain.{i}"] = _centre_scale_(head.fc_reg, r, 1.0, False)
            c, r = head(ext(x[:ext.num_inputs], rois))
            label = c[:, :-1].argmax(dim=1)
            d = torch.gather(r, 1, torch.stack([label * 4 + j for j in range(4)], dim=1))
            rois = torch.cat([rois[:, [0]], delta2bbox_211(rois[:, 1:], d, head.bbox_coder.means,
                                                            head.bbox_coder.stds, meta["img_shape"])], dim=1)

        def shift(b):
            for head in heads:
                head.fc_cls.bias[-1] += b
        info["background_bias_shift"] = _search_bias(model, calib, target, shift)
        out, _ = two_stage_211(model, inp, meta)
        scaled = out["det_bboxes"][:, :4] * torch.from_numpy(meta["scale_factor"])
        mheads = list(rh.mask_head) if cascade else [rh.mask_head]
        mexts = list(rh.mask_roi_extractor) if cascade else [rh.mask_roi_extractor]
        for i, (head, ext) in enumerate(zip(mheads, mexts)):
            head.conv_logits.bias.zero_()
            logits = head(ext(x[:ext.num_inputs], rois_of(scaled)))
            flat = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
            info[f"mask_logits_gain.{i}"] = _centre_scale_(head.conv_logits, flat, 3.0, True)
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            t.copy_(t.to(WEIGHTS_DTYPE).float())
    return info


def save_checkpoint(model: nn.Module, path: str, config: dict) -> None:
    """mmcv's save_checkpoint layout, meta as an mmdet 2.11 run writes it; float16 tensors."""
    sd = OrderedDict((k, v.detach().clone().to(WEIGHTS_DTYPE) if v.is_floating_point() else v.detach().clone())
                     for k, v in model.state_dict().items())
    meta = {"env_info": "fixture (tasks/reference/detection_fixtures.py)", "config": json.dumps(config["model"]),
            "seed": SEED, "exp_name": "config.py", "mmdet_version": "2.11.0+fixture", "CLASSES": tuple(CLASSES),
            "epoch": 12, "iter": 87960, "mmcv_version": "1.3.1", "time": "Thu Aug  1 12:00:00 2024"}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"meta": meta, "state_dict": sd}, path)


# ----------------------------------------------------------------------------------------------
# cross-checks against mmdet 3.3's own code paths

def sample_for(meta: dict) -> DetDataSample:
    return DetDataSample(metainfo=dict(img_shape=meta["img_shape"], ori_shape=meta["ori_shape"],
                                       pad_shape=meta["pad_shape"], batch_input_shape=meta["pad_shape"],
                                       scale_factor=meta["scale_factor_3x"]))


def mask_mismatch(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.bool() != b.bool()).sum()) if a.shape == b.shape else -1


def compare_dets(name: str, what: str, ours: dict, res, box_tol: float, score_tol: float) -> dict:
    """ours: tensors of the fixture; res: a 3.x InstanceData. Same count, labels; boxes/scores within
    the tolerances; mask pixel mismatches counted."""
    n = ours["det_bboxes"].shape[0]
    if len(res) != n:
        raise RuntimeError(f"{name}: {what} gives {len(res)} detections, the fixture {n}")
    rec = {"detections": n}
    if n == 0:
        return rec
    if not torch.equal(res.labels.float(), ours["det_labels"]):
        raise RuntimeError(f"{name}: {what} labels differ")
    db = float((res.bboxes - ours["det_bboxes"][:, :4]).abs().max())
    ds = float((res.scores - ours["det_bboxes"][:, 4]).abs().max())
    rec.update(max_abs_diff_boxes=db, max_abs_diff_scores=ds)
    if db > box_tol or ds > score_tol:
        raise RuntimeError(f"{name}: {what} boxes/scores differ ({db}, {ds})")
    if "det_masks" in ours:
        mm = mask_mismatch(res.masks, ours["det_masks"])
        rec["mask_pixel_mismatches"] = mm
        if mm < 0 or mm > max(10, ours["det_masks"].sum() // 1000):
            raise RuntimeError(f"{name}: {what} masks differ in {mm} pixels")
    return rec


@torch.no_grad()
def self_check(case: dict, config: dict, weights: str, image: str, inp: torch.Tensor, meta: dict,
               out: dict) -> dict:
    name = case["name"]
    checks = {}
    # 1. a fresh mmdet 3.3 detector loads weights.pth strictly (mmengine load_checkpoint)
    model = build_detector(config["model"], config["data"])
    ckpt = load_checkpoint(model, weights, map_location="cpu", strict=True, logger="silent")
    assert list(ckpt["meta"]["CLASSES"]) == CLASSES
    model.dataset_meta = {"classes": CLASSES}
    again, _ = run_case(model, inp, meta)
    same = all(torch.equal(again[k], out[k]) for k in out)
    if not same:
        raise RuntimeError(f"{name}: the reloaded checkpoint gives other outputs")
    checks["strict_load_checkpoint_same_outputs"] = True

    # 2. mmdet 3.3's predict on the same input (its own RPN/RoI/mask code; 2.11 config translated)
    sample = sample_for(meta)
    if "rpn_proposals" in out:
        x = model.extract_feat(inp)
        props = model.rpn_head.predict(x, [sample], rescale=False)[0]
        p3 = torch.cat([props.bboxes, props.scores[:, None]], dim=1)
        if p3.shape != out["rpn_proposals"].shape:
            raise RuntimeError(f"{name}: 3.x RPN gives {p3.shape[0]} proposals, 2.11 {out['rpn_proposals'].shape[0]}")
        checks["rpn_predict_max_abs_diff"] = float((p3 - out["rpn_proposals"]).abs().max()) if p3.numel() else 0.0
        if checks["rpn_predict_max_abs_diff"] != 0:
            raise RuntimeError(f"{name}: 3.x RPN proposals differ")
    res = model.predict(inp.clone(), [sample_for(meta)], rescale=True)[0].pred_instances
    checks["predict"] = compare_dets(name, "model.predict", out, res, 1e-4, 1e-6)
    if "rpn_proposals" in out:
        # what 3.x gives with the config as written (min_bbox_size 0: zero-size proposals dropped)
        m0 = build_detector(config["model"], config["data"], translate_min_bbox_size=False)
        m0.load_state_dict(model.state_dict(), strict=True)
        x0 = m0.extract_feat(inp)
        p0 = m0.rpn_head.predict(x0, [sample_for(meta)], rescale=False)[0]
        r0 = m0.predict(inp.clone(), [sample_for(meta)], rescale=True)[0].pred_instances
        checks["mmdet_3x_with_min_bbox_size_0"] = {"proposals": len(p0), "detections": len(r0)}

    # 3. the whole 3.x path from the file: inference_detector (LoadImageFromFile, Resize keep_ratio,
    # PackDetInputs, DetDataPreprocessor normalisation in torch and padding)
    pipeline = Compose([dict(type="LoadImageFromFile"),
                        dict(type="Resize", scale=tuple(config["data"]["scale"]), keep_ratio=True),
                        dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape",
                                                              "scale_factor"))])
    model.cfg = ConfigDict()  # inference_detector reads model.cfg (unused with an explicit pipeline)
    res = inference_detector(model, image, test_pipeline=pipeline).pred_instances
    checks["inference_detector"] = compare_dets(name, "inference_detector", out, res, 2e-3, 1e-4)
    data = pipeline(dict(img_path=image, img_id=0))
    x3 = model.data_preprocessor(dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]), False)["inputs"]
    checks["inference_detector"]["input_max_abs_diff"] = float((x3 - inp).abs().max()) if x3.shape == inp.shape else None
    return checks


# ----------------------------------------------------------------------------------------------
# unit numbers (units.json)

def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list:
    """Greedy NMS as a plain loop in float64: visit in descending score (ties: lower index first),
    drop every later box whose IoU with a kept one is > thr (areas (x2-x1)*(y2-y1), no +1)."""
    b, s = boxes.double().tolist(), scores.double().tolist()
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    area = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in b]
    keep, dead = [], set()
    for pos, i in enumerate(order):
        if i in dead:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if j in dead:
                continue
            w = max(0.0, min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
            h = max(0.0, min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
            inter = w * h
            union = area[i] + area[j] - inter
            if union > 0 and inter / union > thr:
                dead.add(j)
    return keep


def reference_roi_align(feat: torch.Tensor, rois: torch.Tensor, out_hw, scale: float, sampling: int,
                        aligned: bool) -> torch.Tensor:
    """RoIAlign (average) as plain loops in float64, from its definition: the RoI scaled and (aligned)
    shifted by -0.5; bins of roi/out; per bin grid_h x grid_w samples at the sub-cell centres
    (sampling <= 0: ceil(roi_h / out_h) x ceil(roi_w / out_w)); bilinear with the border rules (0
    outside [-1, size], clamped to the last pixel inside); mean over max(count, 1) samples."""
    f = feat.double()
    _, c, hgt, wid = f.shape
    ph, pw = out_hw
    out = torch.zeros(rois.shape[0], c, ph, pw, dtype=torch.float64)

    def bilinear(ch, y, x):
        if y < -1.0 or y > hgt or x < -1.0 or x > wid:
            return 0.0
        y, x = max(y, 0.0), max(x, 0.0)
        yl, xl = int(y), int(x)
        if yl >= hgt - 1:
            yl = yh = hgt - 1
            y = float(yl)
        else:
            yh = yl + 1
        if xl >= wid - 1:
            xl = xh = wid - 1
            x = float(xl)
        else:
            xh = xl + 1
        ly, lx = y - yl, x - xl
        hy, hx = 1 - ly, 1 - lx
        v = f[int(rois[0, 0]), ch]
        return float(hy * hx * v[yl, xl] + hy * lx * v[yl, xh] + ly * hx * v[yh, xl] + ly * lx * v[yh, xh])

    for r, roi in enumerate(rois.double().tolist()):
        off = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = (v * scale - off for v in roi[1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling if sampling > 0 else int(np.ceil(rh / ph))
        gw = sampling if sampling > 0 else int(np.ceil(rw / pw))
        count = max(gh * gw, 1)
        for ch in range(c):
            for i in range(ph):
                for j in range(pw):
                    acc = 0.0
                    for iy in range(gh):
                        y = y1 + i * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            x = x1 + j * bw + (ix + 0.5) * bw / gw
                            acc += bilinear(ch, y, x)
                    out[r, ch, i, j] = acc / count
    return out


def _tl(t: torch.Tensor):
    return [[float(v) for v in row] for row in t.tolist()] if t.dim() == 2 else [float(v) for v in t.tolist()]


@torch.no_grad()
def make_units(mirror_211) -> dict:
    from mmdet.models.task_modules.prior_generators import AnchorGenerator
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

    units = {"generator": "tasks/reference/detection_fixtures.py", **versions()}

    # anchors: upstream RPN and RetinaNet generators; base anchors of every level, the grid of level 0
    # on a 3x4 feature map (rows = y, columns = x): row-major locations, the A anchors of each in a row
    anchors = {}
    for name, cfg in (("rpn", detection_configs.rpn_head(None)["anchor_generator"]),
                      ("retinanet", detection_configs.retinanet("small", 0.2, None)["bbox_head"]["anchor_generator"])):
        gen = AnchorGenerator(**{k: v for k, v in cfg.items() if k != "type"})
        grid = gen.single_level_grid_priors((3, 4), 0, device="cpu")
        entry = {"config": cfg, "featmap_hw": [3, 4], "level": 0,
                 "base_anchors": [_tl(b) for b in gen.base_anchors], "grid_anchors_level0": _tl(grid)}
        if mirror_211 is not None:
            ok = mirror_211.check_anchors(cfg, gen.base_anchors, grid)
            entry["equal_to_mmdet_2_11"] = ok
        anchors[name] = entry
    units["anchors"] = anchors

    # DeltaXYWH decoding
    rois = torch.tensor([[0., 0., 1., 1.], [0., 0., 1., 1.], [0., 0., 1., 1.], [5., 5., 5., 5.]])
    deltas = torch.tensor([[0., 0., 0., 0.], [1., 1., 1., 1.], [0., 0., 2., -1.], [0.7, -1.9, -0.5, 0.3]])
    mm_test = DeltaXYWHBBoxCoder().decode(rois, deltas, max_shape=(32, 32))
    assert torch.equal(mm_test, delta2bbox_211(rois, deltas, [0.] * 4, [1.] * 4, (32, 32)))
    # clamping: dw/dh beyond log(1000/16) = 4.1352 are clamped, boxes clipped to (h 90, w 120);
    # class-specific deltas [N, 2 * 4] with the RoI head's target_stds
    rois2 = torch.tensor([[10., 10., 50., 30.], [0., 0., 20., 20.], [100., 40., 140., 80.], [60., 60., 60., 70.]])
    deltas2 = torch.tensor([[0.5, -0.3, 30.0, -25.0, 0.0, 0.0, 0.0, 0.0],
                            [-2.0, -2.0, 10.0, 10.0, 3.0, 1.0, -1.0, 0.5],
                            [4.0, 2.0, 0.5, 0.5, 0.2, -0.4, 0.3, 0.1],
                            [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    stds = [0.1, 0.1, 0.2, 0.2]
    coder = DeltaXYWHBBoxCoder(target_means=[0.0] * 4, target_stds=stds)
    clamp = coder.decode(rois2, deltas2, max_shape=(90, 120))
    ours = delta2bbox_211(rois2, deltas2, [0.0] * 4, stds, (90, 120))
    assert torch.equal(clamp, ours), (clamp, ours)
    decode = {
        "mmdet_test": {"source": "mmdetection tests/test_utils/test_coder.py::test_delta_bbox_coder",
                       "target_means": [0.0] * 4, "target_stds": [1.0] * 4, "max_shape_hw": [32, 32],
                       "rois": _tl(rois), "deltas": _tl(deltas),
                       "expected_rounded": [[0.0, 0.0, 1.0, 1.0], [0.1409, 0.1409, 2.8591, 2.8591],
                                            [0.0, 0.3161, 4.1945, 0.6839], [5.0, 5.0, 5.0, 5.0]],
                       "decoded": _tl(mm_test)},
        "clamped": {"target_means": [0.0] * 4, "target_stds": stds, "max_shape_hw": [90, 120],
                    "wh_ratio_clip": 16 / 1000, "max_ratio": float(np.abs(np.log(16 / 1000))),
                    "rois": _tl(rois2), "deltas": _tl(deltas2), "decoded": _tl(clamp)},
    }
    if mirror_211 is not None:
        decode["equal_to_mmdet_2_11"] = mirror_211.check_decode(rois, deltas, mm_test, rois2, deltas2, stds, clamp)
    units["delta_xywh_decode"] = decode

    # NMS: ties (equal scores) and IoU exactly at the threshold
    boxes = torch.tensor([[0., 0., 10., 10.],    # 0: 0.9
                          [1., 1., 11., 11.],    # 1: 0.9, IoU with 0 = 81/119 > 0.5, tie: 0 (lower index) wins
                          [20., 20., 30., 30.],  # 2: 0.9, disjoint
                          [0., 0., 10., 10.],    # 3: 0.8, duplicate of 0
                          [0., 0., 10., 20.],    # 4: 0.7, IoU with 0 exactly 0.5: kept (suppression needs > thr)
                          [21., 21., 31., 31.],  # 5: 0.95, IoU with 2 = 81/119: 2 is suppressed
                          [50., 50., 50., 60.]])  # 6: 0.6, zero width: IoU 0 with everything
    scores = torch.tensor([0.9, 0.9, 0.9, 0.8, 0.7, 0.95, 0.6])
    dets, keep = mmcv.ops.nms(boxes, scores, 0.5)
    ref = reference_nms(boxes, scores, 0.5)
    assert keep.tolist() == ref, (keep.tolist(), ref)
    labels = torch.tensor([0, 1, 0, 0, 1, 1, 0])
    bdets, bkeep = batched_nms(boxes, scores, labels, dict(type="nms", iou_threshold=0.5))
    bref = []
    for lab in sorted(set(labels.tolist())):
        idx = [i for i in range(len(labels)) if labels[i] == lab]
        bref += [idx[k] for k in reference_nms(boxes[idx], scores[idx], 0.5)]
    bref.sort(key=lambda i: (-float(scores[i]), i))
    assert bkeep.tolist() == bref, (bkeep.tolist(), bref)
    units["nms"] = {
        "iou_threshold": 0.5, "boxes": _tl(boxes), "scores": _tl(scores), "keep": keep.tolist(),
        "dets": _tl(dets),
        "batched": {"labels": labels.tolist(), "keep": bkeep.tolist(), "dets": _tl(bdets),
                    "note": "mmcv batched_nms: boxes + label * (max coordinate + 1) through one NMS; the "
                            "kept boxes in descending score order (ties: lower index first)"},
        "semantics": "greedy in descending score order with a stable sort (torchvision's CPU kernel and "
                     "mmcv's CUDA kernel; mmcv's CPU kernel sorts without `stable`), suppress when "
                     "IoU > threshold, IoU = inter / (area_i + area_j - inter) with areas (x2-x1)*(y2-y1)",
    }

    # RoIAlign on ramps: channel 0 = x + 10 y (linear: an aligned, inside RoI gives the value at each
    # bin centre), channel 1 = x^2 (the number of samples matters)
    hgt, wid = 6, 8
    yy, xx = torch.meshgrid(torch.arange(hgt, dtype=torch.float32), torch.arange(wid, dtype=torch.float32),
                            indexing="ij")
    feat = torch.stack([xx + 10 * yy, xx * xx])[None]
    rois = torch.tensor([[0., 1.5, 1.0, 6.3, 4.2],     # inside: 4.8 x 3.2 -> 3 x 2 bins, adaptive 2 x 2 samples
                         [0., -2.0, -1.0, 3.0, 2.0],   # over the top-left border
                         [0., 5.0, 2.0, 5.0, 5.0],     # zero width: adaptive 0 samples -> 0
                         [0., 2.0, 1.0, 7.9, 5.5]])    # up to the bottom-right edge
    ra = {"input_hw": [hgt, wid], "input": [_tl(feat[0, 0]), _tl(feat[0, 1])], "rois": _tl(rois), "cases": []}
    for out_hw, scale, sampling in (((2, 3), 1.0, 0), ((2, 3), 1.0, 2), ((3, 3), 0.5, 0), ((7, 7), 1.0, 0)):
        op = mmcv.ops.RoIAlign(out_hw, spatial_scale=scale, sampling_ratio=sampling, aligned=True)
        got = op(feat, rois)
        ref = reference_roi_align(feat, rois, out_hw, scale, sampling, True)
        diff = float((got.double() - ref).abs().max())
        assert diff < 1e-4, (out_hw, scale, sampling, diff)
        ra["cases"].append({"output_hw": list(out_hw), "spatial_scale": scale, "sampling_ratio": sampling,
                            "aligned": True, "output": [[_tl(c) for c in r] for r in got],
                            "max_abs_diff_to_reference_loop": diff})
    # the closed form for the linear channel of the inside RoI (first case)
    x1, y1, x2, y2 = 1.5 - 0.5, 1.0 - 0.5, 6.3 - 0.5, 4.2 - 0.5
    cx = torch.tensor([x1 + (j + 0.5) * (x2 - x1) / 3 for j in range(3)])
    cy = torch.tensor([y1 + (i + 0.5) * (y2 - y1) / 2 for i in range(2)])
    closed = cx[None, :] + 10 * cy[:, None]
    assert float((closed - torch.tensor(ra["cases"][0]["output"][0][0])).abs().max()) < 1e-4
    ra["closed_form_roi0_channel0"] = _tl(closed)
    # adaptive = explicit ceil(roi / out): the same numbers
    adaptive = mmcv.ops.RoIAlign((2, 3), 1.0, 0, aligned=True)(feat, rois[:1])
    explicit = mmcv.ops.RoIAlign((2, 3), 1.0, 2, aligned=True)(feat, rois[:1])
    assert torch.equal(adaptive, explicit)
    ra["note"] = ("mmcv.ops.RoIAlign(aligned=True) with the torchvision kernel (average); checked against "
                  "a float64 loop (reference_roi_align) and, for roi 0 / channel 0, the closed form; "
                  "sampling_ratio 0 = ceil(roi_size / output_size) samples per bin (roi 0: 2 x 2, the same "
                  "numbers as sampling_ratio 2)")
    units["roi_align"] = ra

    # RoI level mapping of SingleRoIExtractor (finest_scale 56, 4 levels): floor(log2(sqrt(w h) / 56 + 1e-6))
    ext = SingleRoIExtractor(dict(type="RoIAlign", output_size=7, sampling_ratio=0), 256, [4, 8, 16, 32])
    lrois = torch.tensor([[0, 0, 0, 10, 10], [0, 0, 0, 111.9, 112], [0, 0, 0, 112, 112], [0, 5, 5, 229, 229],
                          [0, 0, 0, 224, 224], [0, 0, 0, 447, 449], [0, 0, 0, 448, 448], [0, 0, 0, 1000, 900],
                          [0, 3, 3, 3, 50]], dtype=torch.float32)
    units["roi_levels"] = {"finest_scale": 56, "num_levels": 4, "rois": _tl(lrois),
                           "levels": ext.map_roi_levels(lrois, 4).tolist()}

    # mask pasting (FCNMaskHead._do_paste_mask, CPU: skip_empty) of a 4x4 probability map at a
    # fractional box into a 10x12 image, then >= 0.5
    probs = torch.tensor([[0.1, 0.4, 0.6, 0.2], [0.3, 0.9, 0.8, 0.5], [0.55, 0.7, 0.95, 0.45],
                          [0.05, 0.5, 0.49, 0.2]])
    pbox = torch.tensor([[2.3, 1.6, 9.1, 8.7]])
    soft, (ys, xs) = paste_mask_3x(probs[None, None], pbox, 10, 12, skip_empty=True)
    full = torch.zeros(10, 12)
    full[ys, xs] = soft[0]
    binary = paste_masks_211(probs[None], pbox, 10, 12, 0.5)[0]
    assert torch.equal(binary, full >= 0.5)
    units["paste_mask"] = {"probs": _tl(probs), "box": _tl(pbox[0]), "image_hw": [10, 12],
                           "window_rows": [int(ys.start), int(ys.stop)], "window_cols": [int(xs.start), int(xs.stop)],
                           "pasted": _tl(full), "binary": _tl(binary.float()), "threshold": 0.5}

    # COCO RLE (pycocotools), column-major run lengths starting with a run of zeros
    m = np.zeros((5, 7), dtype=np.uint8)
    m[1:4, 2:6] = 1
    m[0, 0] = 1
    m[4, 6] = 1
    rle = [{"mask": m.tolist(), **rle_of(m), "area": int(mask_util.area(mask_util.encode(np.asfortranarray(m)))),
            "bbox_xywh": [float(v) for v in mask_util.toBbox(mask_util.encode(np.asfortranarray(m)))]}]
    for mm in (np.zeros((3, 4), np.uint8), np.ones((3, 4), np.uint8)):
        rle.append({"mask": mm.tolist(), **rle_of(mm)})
    big = np.zeros((40, 60), dtype=np.uint8)
    big[5:35, 10:50] = 1
    big[20:25, :] = 1
    rle.append({"mask_rle_of": "40x60 zeros, [5:35, 10:50] and [20:25, :] set", **rle_of(big)})
    units["coco_rle"] = rle
    return units


# ----------------------------------------------------------------------------------------------
# mmdet 2.11's own test code, compiled from the mirror (a cross-check; nothing of it is stored)

class Mmdet211:
    """The test-time functions of mmdet 2.11.0 (Sense-X/UniFormer's object_detection/mmdet), read
    from a git mirror at run time and compiled one function at a time: decorators (@force_fp32,
    @mmcv.jit, registries) dropped, mmcv 1.3 names supplied from mmcv 2.1 / mmengine (ConfigDict,
    mmcv.ops batched_nms with our torchvision kernel). `two_stage(model, ...)` and `single_stage(...)`
    run 2.11's TwoStageDetector / SingleStageDetector.simple_test on shims that hold the mmdet 3.3
    modules (backbone, neck, heads' forward) and 2.11's AnchorGenerator and delta2bbox."""

    SOURCES = {
        "core/bbox/coder/delta_xywh_bbox_coder.py": ["delta2bbox"],
        "core/anchor/anchor_generator.py": ["AnchorGenerator"],
        "core/post_processing/bbox_nms.py": ["multiclass_nms"],
        "core/post_processing/merge_augs.py": ["merge_aug_masks"],
        "core/bbox/transforms.py": ["bbox2roi", "bbox2result"],
        "models/dense_heads/anchor_head.py": ["AnchorHead.get_bboxes", "AnchorHead._get_bboxes"],
        "models/dense_heads/rpn_head.py": ["RPNHead._get_bboxes"],
        "models/dense_heads/rpn_test_mixin.py": ["RPNTestMixin.simple_test_rpn"],
        "models/roi_heads/bbox_heads/bbox_head.py": ["BBoxHead.get_bboxes", "BBoxHead.regress_by_class"],
        "models/roi_heads/mask_heads/fcn_mask_head.py": ["FCNMaskHead.get_seg_masks", "_do_paste_mask"],
        "models/roi_heads/test_mixins.py": ["BBoxTestMixin.simple_test_bboxes", "MaskTestMixin.simple_test_mask"],
        "models/roi_heads/standard_roi_head.py": ["StandardRoIHead._bbox_forward", "StandardRoIHead._mask_forward",
                                                  "StandardRoIHead.simple_test"],
        "models/roi_heads/cascade_roi_head.py": ["CascadeRoIHead._bbox_forward", "CascadeRoIHead._mask_forward",
                                                 "CascadeRoIHead.simple_test"],
        "models/detectors/two_stage.py": ["TwoStageDetector.simple_test"],
        "models/detectors/single_stage.py": ["SingleStageDetector.simple_test"],
    }

    def __init__(self, mirror: str):
        ver = subprocess.run(["git", "-C", mirror, "show", "HEAD:object_detection/mmdet/version.py"],
                             check=True, capture_output=True, text=True).stdout
        assert "__version__ = '2.11.0'" in ver, "the mirror's mmdet is not 2.11.0"
        self.ns = {"torch": torch, "np": np, "F": F, "nn": nn, "copy": copy, "warnings": warnings, "sys": sys,
                   "ConfigDict": ConfigDict, "batched_nms": batched_nms, "_pair": torch.nn.modules.utils._pair,
                   "BYTES_PER_FLOAT": 4, "GPU_MEM_LIMIT": 1024 ** 3, "mmcv": mmcv}
        self.fn = {}
        for path, names in self.SOURCES.items():
            src = subprocess.run(["git", "-C", mirror, "show", f"HEAD:object_detection/mmdet/{path}"],
                                 check=True, capture_output=True, text=True).stdout
            tree = ast.parse(src)
            for name in names:
                cls_name, _, meth = name.rpartition(".")
                nodes = tree.body
                if cls_name:
                    nodes = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name).body
                node = next(n for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == meth)
                node = copy.deepcopy(node)
                node.decorator_list = []
                if isinstance(node, ast.ClassDef):
                    node.bases = []
                    for sub in node.body:
                        if isinstance(sub, ast.FunctionDef):
                            sub.decorator_list = [d for d in sub.decorator_list
                                                  if isinstance(d, ast.Name) and d.id == "property"]
                local = {}
                exec(compile(ast.Module(body=[node], type_ignores=[]), f"mmdet-2.11/{path}", "exec"), self.ns, local)
                self.fn[name] = local[meth]
                if not cls_name:
                    self.ns[meth] = local[meth]

    # -- pieces ------------------------------------------------------------------------------
    def check_anchors(self, cfg: dict, base_3x, grid_3x) -> bool:
        gen = self.fn["AnchorGenerator"](**{k: v for k, v in cfg.items() if k != "type"})
        grid = gen.single_level_grid_anchors(gen.base_anchors[0], (3, 4), gen.strides[0], device="cpu")
        ok = all(torch.equal(a, b) for a, b in zip(gen.base_anchors, base_3x)) and torch.equal(grid, grid_3x)
        if not ok:
            raise RuntimeError("anchors differ from mmdet 2.11's AnchorGenerator")
        return ok

    def check_decode(self, rois, deltas, out1, rois2, deltas2, stds, out2) -> bool:
        d = self.fn["delta2bbox"]
        ok = torch.equal(d(rois, deltas, max_shape=(32, 32)), out1) and \
            torch.equal(d(rois2, deltas2, (0.0,) * 4, stds, max_shape=(90, 120)), out2)
        if not ok:
            raise RuntimeError("decoding differs from mmdet 2.11's delta2bbox")
        return ok

    def _bind(self, obj, *names):
        for n in names:
            setattr(obj, n.rpartition(".")[2], types.MethodType(self.fn[n], obj))
        return obj

    def _coder(self, c3):
        d = self.fn["delta2bbox"]
        c = types.SimpleNamespace(means=c3.means, stds=c3.stds)
        c.decode = lambda bboxes, pred, max_shape=None, wh_ratio_clip=16 / 1000: d(
            bboxes, pred, c3.means, c3.stds, max_shape, wh_ratio_clip, True)
        return c

    class _Shim:
        def __init__(self, module=None, **attrs):
            self._module = module
            self.__dict__.update(attrs)

        def __call__(self, *a, **k):
            return self._module(*a, **k)

    def _bbox_head(self, h3):
        sh = self._Shim(h3, bbox_coder=self._coder(h3.bbox_coder), reg_class_agnostic=h3.reg_class_agnostic,
                        num_classes=h3.num_classes)
        return self._bind(sh, "BBoxHead.get_bboxes", "BBoxHead.regress_by_class")

    def _mask_head(self, h3):
        return self._bind(self._Shim(h3, num_classes=h3.num_classes, class_agnostic=False),
                          "FCNMaskHead.get_seg_masks")

    def _anchor_gen(self, cfg: dict):
        return self.fn["AnchorGenerator"](**{k: v for k, v in cfg.items() if k != "type"})

    @staticmethod
    def metas(meta: dict) -> list:
        return [dict(img_shape=(*meta["img_shape"], 3), ori_shape=(*meta["ori_shape"], 3),
                     pad_shape=(*meta["pad_shape"], 3), scale_factor=meta["scale_factor"].copy(),
                     flip=False, flip_direction=None)]

    # -- whole detectors ---------------------------------------------------------------------
    def two_stage(self, model: nn.Module, model_json: dict, inp: torch.Tensor, meta: dict):
        """2.11 TwoStageDetector.simple_test(rescale=True) -> (proposals [N,5], bbox_results per
        class, segm_results per class)"""
        rpn_cfg = dict(model_json["test_cfg"]["rpn"])
        rpn = self._Shim(model.rpn_head, anchor_generator=self._anchor_gen(model_json["rpn_head"]["anchor_generator"]),
                         bbox_coder=self._coder(model.rpn_head.bbox_coder), test_cfg=ConfigDict(rpn_cfg),
                         use_sigmoid_cls=True, cls_out_channels=1)
        rpn._get_bboxes = types.MethodType(self.fn["RPNHead._get_bboxes"], rpn)
        self._bind(rpn, "AnchorHead.get_bboxes", "RPNTestMixin.simple_test_rpn")
        rh3 = model.roi_head
        rcnn = ConfigDict(model_json["test_cfg"]["rcnn"])
        if isinstance(rh3.bbox_head, nn.ModuleList):
            rh = self._Shim(None, bbox_roi_extractor=rh3.bbox_roi_extractor, mask_roi_extractor=rh3.mask_roi_extractor,
                            bbox_head=[self._bbox_head(h) for h in rh3.bbox_head],
                            mask_head=[self._mask_head(h) for h in rh3.mask_head], num_stages=rh3.num_stages,
                            test_cfg=rcnn, with_bbox=True, with_mask=True, with_shared_head=False,
                            share_roi_extractor=False)
            self._bind(rh, "CascadeRoIHead._bbox_forward", "CascadeRoIHead._mask_forward", "CascadeRoIHead.simple_test")
        else:
            rh = self._Shim(None, bbox_roi_extractor=rh3.bbox_roi_extractor, mask_roi_extractor=rh3.mask_roi_extractor,
                            bbox_head=self._bbox_head(rh3.bbox_head), mask_head=self._mask_head(rh3.mask_head),
                            test_cfg=rcnn, with_bbox=True, with_mask=True, with_shared_head=False,
                            share_roi_extractor=False)
            self._bind(rh, "StandardRoIHead._bbox_forward", "StandardRoIHead._mask_forward", "StandardRoIHead.simple_test",
                       "BBoxTestMixin.simple_test_bboxes", "MaskTestMixin.simple_test_mask")
        det = self._Shim(None, rpn_head=rpn, roi_head=rh, with_bbox=True,
                         extract_feat=lambda img: model.neck(model.backbone(img)))
        self._bind(det, "TwoStageDetector.simple_test")
        metas = self.metas(meta)
        proposals = rpn.simple_test_rpn(det.extract_feat(inp), metas)[0]
        bbox_results, segm_results = det.simple_test(inp, metas, rescale=True)[0]
        return proposals, bbox_results, segm_results

    def single_stage(self, model: nn.Module, model_json: dict, inp: torch.Tensor, meta: dict):
        """2.11 SingleStageDetector.simple_test(rescale=True) for RetinaNet -> bbox_results per class"""
        h3 = model.bbox_head
        head = self._Shim(h3, anchor_generator=self._anchor_gen(model_json["bbox_head"]["anchor_generator"]),
                          bbox_coder=self._coder(h3.bbox_coder), test_cfg=ConfigDict(model_json["test_cfg"]),
                          use_sigmoid_cls=True, cls_out_channels=h3.cls_out_channels, num_classes=h3.num_classes)
        self._bind(head, "AnchorHead.get_bboxes", "AnchorHead._get_bboxes")
        det = self._Shim(None, bbox_head=head, extract_feat=lambda img: model.neck(model.backbone(img)))
        self._bind(det, "SingleStageDetector.simple_test")
        return det.simple_test(inp, self.metas(meta), rescale=True)[0]


def per_class(out: dict) -> tuple[list, list]:
    """our detections grouped as 2.11's bbox2result / segm lists (per class, in detection order)"""
    boxes, masks = [], []
    for c in range(NUM_CLASSES):
        sel = (out["det_labels"] == c).nonzero(as_tuple=False).squeeze(1)
        boxes.append(out["det_bboxes"][sel].numpy())
        if "det_masks" in out:
            masks.append([out["det_masks"][i].numpy() for i in sel.tolist()])
    return boxes, masks


@torch.no_grad()
def check_211(m211: Mmdet211, model: nn.Module, config: dict, inp: torch.Tensor, meta: dict, out: dict) -> dict:
    """our fixture vs mmdet 2.11's own code (Mask R-CNN / Cascade: equal; RetinaNet: what 2.11 gives)"""
    if "rpn_proposals" in out:
        proposals, bbox_results, segm_results = m211.two_stage(model, config["model"], inp, meta)
        if not torch.equal(proposals, out["rpn_proposals"]):
            raise RuntimeError("RPN proposals differ from mmdet 2.11's")
        boxes, masks = per_class(out)
        for c in range(NUM_CLASSES):
            if not np.array_equal(bbox_results[c], boxes[c]):
                raise RuntimeError(f"class {c} boxes differ from mmdet 2.11's")
            if len(segm_results[c]) != len(masks[c]) or not all(np.array_equal(a, b) for a, b in zip(segm_results[c], masks[c])):
                raise RuntimeError(f"class {c} masks differ from mmdet 2.11's")
        return {"equal_to_mmdet_2_11": True, "compared": "rpn proposals, per-class boxes+scores, per-class masks (bitwise)"}
    bbox_results = m211.single_stage(model, config["model"], inp, meta)
    boxes, _ = per_class(out)
    n211 = int(sum(len(b) for b in bbox_results))
    same = all(np.array_equal(a, b) for a, b in zip(bbox_results, boxes))
    close = n211 == out["det_bboxes"].shape[0] and all(
        a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-4) for a, b in zip(bbox_results, boxes))
    return {"equal_to_mmdet_2_11": same, "equal_to_mmdet_2_11_within_1e-4": close, "mmdet_2_11_detections": n211,
            "note": "RetinaNet follows mmdet 3.x (DIFFERENCES 5-6); this records what 2.11's code gives"}


# ----------------------------------------------------------------------------------------------
# writing

_ST_DTYPES = {torch.float32: "F32", torch.uint8: "U8"}


def save_safetensors(tensors: dict, path: str, metadata: dict) -> None:
    """safetensors with F32 and U8 tensors and a byte-stable header (sorted names, sorted metadata)."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        if t.dtype not in _ST_DTYPES:
            t = t.float()
        blob = t.numpy().astype("<f4" if t.dtype == torch.float32 else "u1").tobytes()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def dump_json(obj, indent: int = 0) -> str:
    """indent 1 per level; a list of scalars (numbers, strings, booleans, null) on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dump_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return json.dumps(list(obj))
        return "[\n" + ",\n".join(inner + dump_json(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def rle_of(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def detections_json(image: str, ori_hw, out: dict) -> dict:
    """`uniformer detect`'s JSON for the fixture: bbox [x, y, w, h] as 2.11's xyxy2xywh (python floats
    of the float32 values, w = x2 - x1 in double), category_id = label index."""
    dets = []
    for i in range(out["det_bboxes"].shape[0]):
        x1, y1, x2, y2, s = [float(v) for v in out["det_bboxes"][i].tolist()]
        label = int(out["det_labels"][i])
        d = {"bbox": [x1, y1, x2 - x1, y2 - y1], "score": s, "category_id": label, "label": CLASSES[label]}
        if "det_masks" in out:
            d["segmentation"] = rle_of(out["det_masks"][i].numpy())
        dets.append(d)
    return {"image": os.path.basename(image), "width": int(ori_hw[1]), "height": int(ori_hw[0]), "detections": dets}


def versions() -> dict:
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "mmdet": mmdet.__version__,
            "mmcv": mmcv.__version__, "mmengine": mmengine.__version__, "numpy": np.__version__,
            "cv2": cv2.__version__, "Pillow": PIL.__version__, "pycocotools": "2.0.11"}


def stage3_kinds(model: nn.Module) -> list:
    return ["global" if b.window_size is None else f"window{b.window_size}"
            for b in model.backbone.blocks3 if isinstance(b, SABlock)]


def folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def summary(out: dict) -> dict:
    s = {"proposals": int(out["rpn_proposals"].shape[0]) if "rpn_proposals" in out else None,
         "detections": int(out["det_bboxes"].shape[0])}
    if s["detections"]:
        sc = out["det_bboxes"][:, 4]
        s["score_range"] = [round(float(sc.min()), 5), round(float(sc.max()), 5)]
        s["labels"] = torch.bincount(out["det_labels"].long(), minlength=NUM_CLASSES).tolist()
        wh = out["det_bboxes"][:, 2:4] - out["det_bboxes"][:, :2]
        s["zero_area_boxes"] = int(((wh[:, 0] <= 0) | (wh[:, 1] <= 0)).sum())
    if "det_masks" in out:
        s["mask_areas"] = out["det_masks"].flatten(1).sum(1).tolist()
    return s


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-env", action="store_true", help="only check that the venv has what is needed")
    args = ap.parse_args()
    if args.check_env:
        m = build_detector(tiny_model("mask_rcnn", "hybrid:3"))
        assert isinstance(m.backbone, UniFormer)
        print(f"mmdet venv ok: mmdet {mmdet.__version__}, mmcv(-lite) {mmcv.__version__} with torchvision "
              f"{torchvision.__version__} kernels, mmengine {mmengine.__version__}, torch {torch.__version__}, "
              f"numpy {np.__version__}, cv2 {cv2.__version__}, pycocotools, Pillow {PIL.__version__}")
        return

    try:
        m211 = Mmdet211(MIRROR)
    except (OSError, subprocess.CalledProcessError, StopIteration) as e:
        m211 = None
        print(f"(no usable Sense-X/UniFormer mirror at {MIRROR}: not compared with mmdet 2.11's code: {e})")
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for c in CASES:
        shutil.rmtree(os.path.join(OUT, c["name"]), ignore_errors=True)
    shutil.rmtree(os.path.join(OUT, "weights"), ignore_errors=True)

    # pictures and inputs first (a weight set is calibrated on the pictures of several cases)
    prepared = {}
    for i, case in enumerate(CASES):
        d = os.path.join(OUT, case["name"])
        os.makedirs(d)
        config = case_config(case)
        seed = SEED + i
        bgr_pic = make_picture(*case["image"], np.random.default_rng(seed))
        Image.fromarray(np.ascontiguousarray(bgr_pic[..., ::-1]), "RGB").save(os.path.join(d, "image.png"), optimize=True)
        image = os.path.join(d, "image.png")
        prepared[case["name"]] = (config, seed, image, *preprocess(image, config["data"]))

    states, report, total = {}, [], 0
    for case in CASES:
        name = case["name"]
        d = os.path.join(OUT, name)
        config, seed, image, bgr, resized, inp, meta = prepared[name]
        meta_rec = {"generator": "tasks/reference/detection_fixtures.py", **versions(), "seed": seed}

        wname = case["weights"]
        wset = WEIGHT_SETS[wname]
        wpath = os.path.join(OUT, "weights", wname + ".pth")
        if wname not in states:
            assert wset["calibrate_on"][0] == name, "a weight set is made on its first calibration case"
            model = build_detector(tiny_model(wset["kind"], wset["attention"]))
            calib = [(c["attention"], prepared[c["name"]][5], prepared[c["name"]][6])
                     for c in CASES if c["name"] in wset["calibrate_on"]]
            gains = informative_weights_(model, wset["kind"], torch.Generator().manual_seed(seed + 1000), calib,
                                         wset["target"])
            save_checkpoint(model, wpath, config)
            states[wname] = model.state_dict()
            meta_rec["weights"] = {"set": wname, "seed": seed + 1000, "calibrated_on": wset["calibrate_on"],
                                   "calibration": gains}
        else:
            meta_rec["weights"] = {"set": wname, "calibrated_on": wset["calibrate_on"]}
        meta_rec["weights"].update(file=config["weights"], dtype=str(WEIGHTS_DTYPE).replace("torch.", ""))

        model = build_detector(config["model"])
        model.load_state_dict(states[wname], strict=True)
        out, details = run_case(model, inp, meta)
        if details.get("standard_roi_head", True) and "rpn_proposals" in out and (
                details["proposals_with_y2_zero"] or details.get("mask_rois_with_y2_zero")):
            # only 2.11's StandardRoIHead has the padding masks (DIFFERENCES 4); CascadeRoIHead does not
            raise RuntimeError(f"{name}: a box with y2 == 0 (2.11's padding-mask accident); change the seed")
        checks = self_check(case, config, wpath, image, inp, meta, out)
        if m211 is not None:
            checks["mmdet_2_11"] = check_211(m211, model, config, inp, meta, out)
        s = summary(out)
        if name == "mask_rcnn_empty":
            if s["detections"] != 0:
                raise RuntimeError(f"{name}: expected no detections")
        elif name != "mask_rcnn_tiny_image" and not 5 <= s["detections"] <= 30:
            raise RuntimeError(f"{name}: {s['detections']} detections (want 5..30)")
        if s["detections"] and name != "mask_rcnn_tiny_image" and sum(1 for c in s["labels"] if c) < 3:
            raise RuntimeError(f"{name}: labels not spread {s['labels']}")

        tensors = {"input": inp, **{k: v for k, v in out.items() if k != "det_masks"}}
        if "det_masks" in out:
            packed = np.packbits(out["det_masks"].numpy().astype(np.uint8), axis=-1)
            tensors["det_masks"] = torch.from_numpy(packed)
        meta_rec.update(case=name, image_hw=list(bgr.shape[:2]), resized_hw=list(resized.shape[:2]),
                        input_hw=list(inp.shape[2:]), scale_factor=[float(v) for v in meta["scale_factor"]],
                        stage3_blocks=stage3_kinds(model), **s, details=details, checks=checks,
                        follows="mmdet 3.x (RetinaNet)" if "rpn_proposals" not in out else "mmdet 2.11",
                        tensors={k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in tensors.items()})
        cfg_out = dict(config, fixture=meta_rec)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(dump_json(cfg_out) + "\n")
        with open(os.path.join(d, "detections.json"), "w") as f:
            f.write(dump_json(detections_json(image, bgr.shape[:2], out)) + "\n")
        save_safetensors(tensors, os.path.join(d, "io.safetensors"),
                         metadata={"case": name, "generator": meta_rec["generator"],
                                   "det_masks": "uint8 np.packbits(masks, axis=-1): [M, H0, ceil(W0/8)], MSB first"})
        size = folder_size(d)
        total += size
        report.append(f"{name:22s} image {bgr.shape[1]}x{bgr.shape[0]} -> input {inp.shape[3]}x{inp.shape[2]}"
                      f"  proposals {s['proposals']}  detections {s['detections']}"
                      f"  scores {s.get('score_range')}  {size / 1e3:.0f} KB\n"
                      f"{'':22s} masks {s.get('mask_areas')}\n{'':22s} checks {json.dumps(checks)}")
    units = make_units(m211)
    with open(os.path.join(OUT, "units.json"), "w") as f:
        f.write(dump_json(units) + "\n")
    total += os.path.getsize(os.path.join(OUT, "units.json"))
    wsize = folder_size(os.path.join(OUT, "weights"))
    total += wsize
    print("\n".join(report))
    print(f"weights/: {wsize / 1e3:.0f} KB")
    print(f"detection fixtures: {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
