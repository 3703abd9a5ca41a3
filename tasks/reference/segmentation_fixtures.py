"""Semantic-segmentation parity fixtures: tiny UniFormer + UPerNet / Semantic FPN run by mmseg itself.

Runs in the mmsegmentation venv (bash tasks/reference/mmseg_env.sh creates it):

    tasks/reference/.venv/bin/python tasks/reference/segmentation_fixtures.py

Our reference backbone (uniformer_ref.UniFormer) is registered as `UniFormer` in mmseg's MODELS
registry, and mmseg 1.2.2's real EncoderDecoder / UPerHead / FCNHead / FPN / FPNHead are built
from the upstream model dicts (semantic_segmentation/configs/_base_/models/upernet_uniformer.py and
fpn_uniformer.py of Sense-X/UniFormer), shrunk: embed_dim 16,32,48,64, head_dim 16, layers
1,1,4,1, UPerHead channels 32 (+ FCNHead auxiliary head, channels 16), FPN out_channels 24 and
FPNHead channels 16, 7 classes, BN in eval instead of SyncBN.

Writes Tests/UniFormerTests/Fixtures/segmentation/<case>/:
  config.json     our config format: {"model": <upstream model dict>, "data": {...}, "classes",
                  "palette"} (+ "override" for upernet_global_as_window) and a "fixture" record
                  (generator, package versions, seed, sizes, crops, label histogram, logit std, ...)
  weights.pth     the checkpoint, saved as mmcv's save_checkpoint does: {'meta': {'CLASSES',
                  'PALETTE', ...}, 'state_dict': OrderedDict} with mmseg's key names (the FPN
                  cases: {'state_dict': ...} without meta, as some released files are)
  image.png       the input picture (generated: smooth shapes + noise), read with cv2.imread
  io.safetensors  float32: input [1,3,h,w] (normalised network input after the resize(s)),
                  stage1..stage4 (backbone outputs on `input`; slide: on its first, top-left crop),
                  neck1..neck4 (FPN cases), head_logits [1,K,h/4,w/4] (decode head output before
                  any resize; not for slide), logits [1,K,H,W] at the ORIGINAL image size, labels
                  [H,W] (argmax, as floats)

The test pipeline is mmseg 0.13's (the one the released checkpoints were evaluated with), done here
with the real mmcv/cv2 calls: cv2.imread (BGR) -> mmcv.imrescale keep-ratio to `scale` (cv2
INTER_LINEAR) -> [Semantic FPN only: upstream's AlignResize second resize, mmcv.imresize to
ceil(h/32)*32 x ceil(w/32)*32] -> mmcv.imnormalize (to_rgb) -> no padding. Then mode 'whole':
decode-head logits resized bilinear (align_corners False) to the network input size
(encode_decode), then to the original image size, argmax; or mode 'slide' (0.13's
EncoderDecoder.slide_inference). Every case is cross-checked against mmseg's own code paths
(model.predict, slide_inference, inference_model from the image file with a strict
load_checkpoint of weights.pth); see `self_check`.

Weights are random but informative (backbone_fixtures.randomize_: BN statistics and affine and LN
affine randomised, N(0, 1/fan_in) convs), and the decode head's conv_seg is rescaled so that its
logits have std 2.5 and re-centred per class on a calibration image, so that the argmax labels
spread over the classes. To keep the folder small, the checkpoints are stored in float16 (the
reference outputs are computed in float32 from the fp16-rounded weights, so they are exact for
them), and the UPerNet cases share one set of weights (upernet_*: byte-identical files, one git
blob), the FPN cases another: window/hybrid/global only change how stage 3 attends, not the
parameters.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import mmcv_ops_stub

    mmcv_ops_stub.install()  # mmcv-lite has no compiled mmcv.ops; mmseg imports a few names
    import mmcv
    import mmengine
    import mmseg
except ImportError as e:  # pragma: no cover
    sys.exit(f"{e}\nrun this in the mmsegmentation venv: bash tasks/reference/mmseg_env.sh && "
             f"tasks/reference/.venv/bin/python tasks/reference/segmentation_fixtures.py")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from PIL import Image  # noqa: E402

from backbone_fixtures import dump_json, randomize_, save_safetensors  # noqa: E402
from uniformer_ref import SABlock, UniFormer, attention_override  # noqa: E402

warnings.filterwarnings("ignore")  # mmcv-lite's "install mmcv rather than mmcv-lite" etc.
init_default_scope("mmseg")
from mmseg.apis import inference_model  # noqa: E402
from mmseg.registry import MODELS, TRANSFORMS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

MODELS.register_module("UniFormer", module=UniFormer, force=True)

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "segmentation")
SEED = 20240712
WEIGHTS_DTYPE = torch.float16  # see the module docstring; float32 would triple the folder

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
CLASSES = ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]
PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
           [145, 30, 180], [70, 240, 240]]
NUM_CLASSES = len(CLASSES)

# upstream dicts (semantic_segmentation/configs/_base_/models/*_uniformer.py), tiny
BACKBONE = {"type": "UniFormer", "layers": [1, 1, 4, 1], "embed_dim": [16, 32, 48, 64], "head_dim": 16,
            "mlp_ratio": 4, "qkv_bias": True, "windows": False, "hybrid": False, "window_size": 14,
            "drop_path_rate": 0.1}
SYNC_BN = {"type": "SyncBN", "requires_grad": True}
UPERNET = {
    "type": "EncoderDecoder",
    "backbone": BACKBONE,
    "decode_head": {"type": "UPerHead", "in_channels": [16, 32, 48, 64], "in_index": [0, 1, 2, 3],
                    "pool_scales": [1, 2, 3, 6], "channels": 32, "dropout_ratio": 0.1,
                    "num_classes": NUM_CLASSES, "norm_cfg": SYNC_BN, "align_corners": False},
    "auxiliary_head": {"type": "FCNHead", "in_channels": 48, "in_index": 2, "channels": 16,
                       "num_convs": 1, "concat_input": False, "dropout_ratio": 0.1,
                       "num_classes": NUM_CLASSES, "norm_cfg": SYNC_BN, "align_corners": False},
    "test_cfg": {"mode": "whole"},
}
FPN = {
    "type": "EncoderDecoder",
    "backbone": BACKBONE,
    "neck": {"type": "FPN", "in_channels": [16, 32, 48, 64], "out_channels": 24, "num_outs": 4},
    "decode_head": {"type": "FPNHead", "in_channels": [24, 24, 24, 24], "in_index": [0, 1, 2, 3],
                    "feature_strides": [4, 8, 16, 32], "channels": 16, "dropout_ratio": 0.1,
                    "num_classes": NUM_CLASSES, "norm_cfg": SYNC_BN, "align_corners": False},
    "test_cfg": {"mode": "whole"},
}

# One weight set per head type, shared by the cases that name it (byte-identical weights.pth).
#   container "mmcv":       {'meta': {...CLASSES, PALETTE...}, 'state_dict': OrderedDict}
#   container "state_dict": {'state_dict': OrderedDict}   (a released checkpoint without meta)
WEIGHT_SETS = {
    "upernet": dict(model=UPERNET, container="mmcv", calibrate_on="upernet_global"),
    "fpn": dict(model=FPN, container="state_dict", calibrate_on="fpn_global"),
}

# image: generated picture (width, height); scale: the keep-ratio Resize scale (long, short edge
# bounds, as upstream's (2048, 512)); align: upstream's AlignResize(size_divisor) for Semantic FPN.
CASES = [
    # upscaled 64x44 -> 105x72 (odd width: every stride-2 step floors); stage 3 is 4x6
    dict(name="upernet_global", weights="upernet", image=(64, 44), scale=(128, 72)),
    # downscaled 100x66 -> 97x64; stage 3 is 4x6: windows of 3 pad the 4 rows to 6
    dict(name="upernet_window", weights="upernet", backbone={"windows": True, "window_size": 3},
         image=(100, 66), scale=(112, 64)),
    # portrait 48x70 -> 72x105; stage 3 is 6x4 (padded to 6x6); blocks3.3 global
    dict(name="upernet_hybrid", weights="upernet", backbone={"hybrid": True, "window_size": 3},
         image=(48, 70), scale=(128, 72)),
    # upernet_global's config, weights and picture run with the stage-3 override window:3
    dict(name="upernet_global_as_window", same_as="upernet_global", override="window:3"),
    # 72x49 -> imrescale 94x64 -> AlignResize 96x64 (width only, as with upstream's short side 512)
    dict(name="fpn_global", weights="fpn", image=(72, 49), scale=(128, 64), align=32),
    # portrait 46x67 -> imrescale 60x87 -> AlignResize 64x96 (both sides); stage 3 is 6x4
    dict(name="fpn_hybrid", weights="fpn", backbone={"hybrid": True, "window_size": 3},
         image=(46, 67), scale=(112, 60), align=32),
    # 62x48 -> 103x80, slide crops 64x64 (h, w) with stride 32: 2 rows x 3 columns; the second
    # row is clamped to y 16..80 and the last column to x 39..103 (the border)
    dict(name="upernet_slide", weights="upernet", image=(62, 48), scale=(128, 80),
         test_cfg={"mode": "slide", "crop_size": [64, 64], "stride": [32, 32]}),
]


# ----------------------------------------------------------------------------------------------
# the test picture

def make_picture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A generated BGR uint8 picture: smooth colour waves, a few anti-aliased shapes, noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.empty((height, width, 3))
    for c in range(3):
        fx, fy = rng.uniform(0.5, 2.0, 2)
        phase = rng.uniform(0, 2 * np.pi)
        img[..., c] = 128 + 80 * np.sin(2 * np.pi * (fx * x / width + fy * y / height) + phase)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(4):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            axes = (int(rng.integers(width // 8, width // 3)), int(rng.integers(height // 8, height // 3)))
            cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        else:
            pts = np.stack([rng.integers(0, width, 4), rng.integers(0, height, 4)], axis=1).astype(np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# mmseg 0.13's test pipeline (LoadImageFromFile, Resize / AlignResize, Normalize, ImageToTensor)

def align_resize(img: np.ndarray, size_divisor: int) -> np.ndarray:
    """The second resize of upstream's AlignResize (semantic_segmentation/fpn_seg/align_resize.py,
    `_align`, keep_ratio branch): after the keep-ratio imrescale, mmcv.imresize (cv2 INTER_LINEAR,
    on the uint8 image, before Normalize) to ceil(h/d)*d x ceil(w/d)*d. Sizes that are already
    multiples still go through imresize (an identity for cv2)."""
    align_h = int(np.ceil(img.shape[0] / size_divisor)) * size_divisor
    align_w = int(np.ceil(img.shape[1] / size_divisor)) * size_divisor
    return mmcv.imresize(img, (align_w, align_h))


def preprocess(path: str, data: dict):
    """image file -> (resized uint8 BGR after imrescale, after AlignResize, input [1,3,h,w] float32)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)                       # what mmcv.imfrombytes(cv2) gives
    resized = mmcv.imrescale(bgr, tuple(data["scale"]), interpolation="bilinear", backend="cv2")
    aligned = align_resize(resized, data["align_divisor"]) if data.get("align_divisor") else resized
    # 0.13's Normalize: mmcv.imnormalize on the float32 image (cv2 BGR->RGB, subtract mean,
    # multiply by 1/std). mmseg 1.x normalises in torch ((x - mean) / std) in SegDataPreProcessor;
    # the two differ in the last bit, and 0.13 wins.
    norm = mmcv.imnormalize(aligned.astype(np.float32), np.array(data["mean"]), np.array(data["std"]),
                            data["to_rgb"])
    inp = torch.from_numpy(np.ascontiguousarray(norm.transpose(2, 0, 1)))[None]
    return bgr, resized, aligned, inp


# ----------------------------------------------------------------------------------------------
# the mmseg model

def mmseg_cfg(model: dict, override: str | None = None) -> ConfigDict:
    """The model dict of a config as mmseg builds it: SyncBN -> BN (single process, eval), and the
    stage-3 attention override applied to the backbone."""
    def walk(v):
        if isinstance(v, dict):
            if v.get("type") == "SyncBN":
                return dict(v, type="BN")
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v
    cfg = walk(copy.deepcopy(model))
    cfg["backbone"] = attention_override(cfg["backbone"], override)
    return ConfigDict(cfg)


def build_segmentor(model: dict, override: str | None = None, data: dict | None = None) -> nn.Module:
    cfg = mmseg_cfg(model, override)
    if data is not None:  # mmseg 1.x normalises in the model (used by the inference_model check)
        cfg["data_preprocessor"] = dict(type="SegDataPreProcessor", mean=data["mean"], std=data["std"],
                                        bgr_to_rgb=data["to_rgb"], pad_val=0, seg_pad_val=255)
    return MODELS.build(cfg).eval()


@torch.no_grad()
def informative_weights_(model: nn.Module, gen: torch.Generator, calib: torch.Tensor) -> dict:
    """randomize_ everything, then rescale each conv_seg so that its logits on `calib` have std 2.5
    and zero mean per class (bias = -mean): the argmax then spreads over the classes. Finally round
    every floating tensor to WEIGHTS_DTYPE (the reference is computed from the rounded values)."""
    randomize_(model, gen)
    info = {}
    feats = model.extract_feat(calib)
    for name in ("decode_head", "auxiliary_head"):
        head = getattr(model, name, None)
        if head is None:
            continue
        seg = head.conv_seg
        seg.bias.zero_()
        raw = head.forward(feats)                                 # [1, K, h, w] without bias
        gain = 2.5 / float(raw.std())
        seg.weight.mul_(gain)
        seg.bias.copy_(-raw.mean(dim=(0, 2, 3)) * gain)
        info[name] = round(gain, 4)
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            t.copy_(t.to(WEIGHTS_DTYPE).float())
    return info


def save_checkpoint(model: nn.Module, path: str, container: str) -> None:
    sd = OrderedDict((k, v.detach().clone().to(WEIGHTS_DTYPE) if v.is_floating_point() else v.detach().clone())
                     for k, v in model.state_dict().items())
    if container == "mmcv":
        # the keys an mmseg 0.13 run writes (mmcv save_checkpoint + the runner's meta)
        meta = {"mmseg_version": "0.13.0+fixture", "mmcv_version": "1.3.0",
                "config": "model = dict(type='EncoderDecoder', backbone=dict(type='UniFormer'))",
                "CLASSES": tuple(CLASSES), "PALETTE": [list(p) for p in PALETTE],
                "epoch": 1, "iter": 160000, "time": "Fri Jul 12 12:00:00 2024"}
        obj = {"meta": meta, "state_dict": sd}
    elif container == "state_dict":
        obj = {"state_dict": sd}
    else:
        raise ValueError(container)
    torch.save(obj, path)


# ----------------------------------------------------------------------------------------------
# inference (0.13 semantics, written out; self_check compares with mmseg's own code)

def resize_bilinear(x: torch.Tensor, hw) -> torch.Tensor:
    return F.interpolate(x, size=tuple(int(v) for v in hw), mode="bilinear", align_corners=False)


def slide_crops(h_img: int, w_img: int, crop, stride):
    """Crop boxes (y1, y2, x1, x2) of mmseg 0.13's EncoderDecoder.slide_inference, in its order."""
    h_crop, w_crop = crop
    h_stride, w_stride = stride
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    boxes = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * h_stride, w_idx * w_stride
            y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)   # crops at the border are clamped
            boxes.append((y1, y2, x1, x2))
    return boxes


def head_forward(model: nn.Module, x: torch.Tensor, out: dict | None = None) -> torch.Tensor:
    """backbone (+ neck) + decode head, recording the intermediate maps into `out`."""
    stages = model.backbone(x)
    feats = model.neck(stages) if getattr(model, "neck", None) is not None else stages
    if out is not None:
        out.update({f"stage{i + 1}": s for i, s in enumerate(stages)})
        if feats is not stages:
            out.update({f"neck{i + 1}": s for i, s in enumerate(feats)})
    return model.decode_head.forward(feats)


@torch.no_grad()
def run(model: nn.Module, inp: torch.Tensor, ori_hw, test_cfg: dict):
    """(tensors for io.safetensors, details). logits at ori_hw; 0.13 whole/slide inference."""
    out = {}
    h_img, w_img = inp.shape[2:]
    if test_cfg["mode"] == "whole":
        head = head_forward(model, inp, out)                          # [1, K, h/4, w/4]
        out["head_logits"] = head
        net = resize_bilinear(head, (h_img, w_img))                   # encode_decode
        details = {}
    else:
        boxes = slide_crops(h_img, w_img, test_cfg["crop_size"], test_cfg["stride"])
        net = inp.new_zeros((1, NUM_CLASSES, h_img, w_img))
        count = inp.new_zeros((1, 1, h_img, w_img))
        for i, (y1, y2, x1, x2) in enumerate(boxes):
            crop = inp[:, :, y1:y2, x1:x2]
            logit = resize_bilinear(head_forward(model, crop, out if i == 0 else None), crop.shape[2:])
            net += F.pad(logit, (x1, w_img - x2, y1, h_img - y2))
            count[:, :, y1:y2, x1:x2] += 1
        assert (count == 0).sum() == 0
        net = net / count
        # stage1..4 are the backbone outputs of the first (top-left) crop, the first thing the
        # slide path computes
        details = {"crops": [list(b) for b in boxes],
                   "stages_from": "the first crop: input rows %d..%d, columns %d..%d" % boxes[0]}
    logits = resize_bilinear(net, ori_hw)                             # rescale to ori_shape
    out["logits"] = logits
    out["labels"] = logits[0].argmax(dim=0).float()
    return out, net, details


# ----------------------------------------------------------------------------------------------
# cross-checks against mmseg's own code paths

@TRANSFORMS.register_module(force=True)
class AlignResize:
    """mmseg 1.x has no AlignResize: this transform applies upstream's second resize
    (`align_resize` above) after mmcv's Resize, so inference_model can run the Semantic FPN
    pipeline. (The first resize is mmcv's own Resize transform.)"""

    def __init__(self, size_divisor: int = 32):
        self.size_divisor = size_divisor

    def __call__(self, results: dict) -> dict:
        results["img"] = align_resize(results["img"], self.size_divisor)
        results["img_shape"] = results["img"].shape[:2]
        return results


def upstream_align(mirror: str | None):
    """upstream's AlignResize._align, compiled from the Sense-X/UniFormer mirror at run time (only
    that method; nothing of it is stored), or None without a mirror."""
    if not mirror or not os.path.isdir(mirror):
        return None
    try:
        src = subprocess.run(["git", "-C", mirror, "show", "HEAD:semantic_segmentation/fpn_seg/align_resize.py"],
                             check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "AlignResize")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "_align")
    ns = {"np": np, "mmcv": mmcv}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "align_resize.py", "exec"), ns)
    return lambda img, d: ns["_align"](None, img, d)


def mmseg_pipeline(data: dict) -> list:
    """mmseg 1.x's test pipeline for our data dict (the 1.x configs' form of 0.13's)."""
    pipe = [dict(type="LoadImageFromFile"),
            dict(type="Resize", scale=tuple(data["scale"]), keep_ratio=True)]
    if data.get("align_divisor"):
        pipe.append(dict(type="AlignResize", size_divisor=data["align_divisor"]))
    return pipe + [dict(type="PackSegInputs")]


@torch.no_grad()
def self_check(case: dict, config: dict, weights: str, image: str, resized: np.ndarray,
               aligned: np.ndarray, inp: torch.Tensor, out: dict, net: torch.Tensor, align_fn) -> dict:
    """Compare this generator's pipeline with mmseg's own code where they overlap. Raises on a
    mismatch; returns the numbers for the fixture record."""
    data, model_json = config["data"], config["model"]
    override = config.get("override")
    ori_hw = tuple(out["labels"].shape)
    checks = {}

    # 1. mmseg 1.x's transforms (LoadImageFromFile, mmcv Resize keep_ratio) give the same uint8 image
    from mmengine.dataset import Compose
    packed = Compose(mmseg_pipeline(data))(dict(img_path=image))
    net_img = packed["inputs"].numpy().transpose(1, 2, 0)            # HWC BGR uint8
    if not np.array_equal(net_img, aligned):
        raise RuntimeError(f"{case['name']}: mmseg's Resize pipeline gives another image")
    if data.get("align_divisor") and align_fn is not None:
        if not np.array_equal(align_fn(resized, data["align_divisor"]), aligned):
            raise RuntimeError(f"{case['name']}: upstream AlignResize._align disagrees")
        checks["align_resize"] = "equal to upstream's AlignResize._align (from the mirror)"

    # 2. a fresh mmseg EncoderDecoder, weights.pth loaded strictly by mmengine's load_checkpoint
    model = build_segmentor(model_json, override, data)
    ckpt = load_checkpoint(model, weights, map_location="cpu", strict=True, logger="silent")
    if "meta" in ckpt:
        model.dataset_meta = {"classes": ckpt["meta"]["CLASSES"], "palette": ckpt["meta"]["PALETTE"]}
        assert list(ckpt["meta"]["CLASSES"]) == config["classes"]

    # 3. model.predict on the same normalised input: mmseg's inference + postprocess_result
    meta = dict(ori_shape=ori_hw, img_shape=tuple(inp.shape[2:]), pad_shape=tuple(inp.shape[2:]))
    pred = model.predict(inp.clone(), [SegDataSample(metainfo=meta)])[0]
    d_predict = float((pred.seg_logits.data[None] - out["logits"]).abs().max())
    if d_predict > 1e-5 or not torch.equal(pred.pred_sem_seg.data[0].float(), out["labels"]):
        raise RuntimeError(f"{case['name']}: model.predict differs (max |dlogits| {d_predict})")
    checks["predict_max_abs_diff"] = d_predict

    # 4. mmseg 1.x's slide_inference on the network input == the 0.13 loop in run()
    if config["model"]["test_cfg"]["mode"] == "slide":
        metas = [dict(meta)]
        sl = model.slide_inference(inp.clone(), metas)
        d_slide = float((sl - net).abs().max())
        if d_slide > 1e-5:
            raise RuntimeError(f"{case['name']}: slide_inference differs ({d_slide})")
        checks["slide_inference_max_abs_diff"] = d_slide
    else:
        enc = model.encode_decode(inp.clone(), [dict(meta)])
        checks["encode_decode_max_abs_diff"] = float((enc - net).abs().max())
        if checks["encode_decode_max_abs_diff"] > 1e-5:
            raise RuntimeError(f"{case['name']}: encode_decode differs")

    # 5. mmseg 0.13 takes the argmax of softmax(logits) (EncoderDecoder.inference): same labels
    soft = F.softmax(out["logits"], dim=1)[0].argmax(dim=0).float()
    checks["softmax_argmax_equal"] = bool(torch.equal(soft, out["labels"]))
    if not checks["softmax_argmax_equal"]:
        raise RuntimeError(f"{case['name']}: argmax(softmax) != argmax(logits)")

    # 6. the whole mmseg 1.x path from the file: inference_model (pipeline, SegDataPreProcessor's
    # torch normalisation, test_step, postprocess). Normalisation differs from mmcv.imnormalize
    # in the last bit, so logits agree to ~1e-5 and labels except at near-ties.
    model.cfg = ConfigDict(test_pipeline=mmseg_pipeline(data))
    res = inference_model(model, image)
    d_file = float((res.seg_logits.data[None] - out["logits"]).abs().max())
    mism = int((res.pred_sem_seg.data[0].float() != out["labels"]).sum())
    checks["inference_model_max_abs_diff"] = d_file
    checks["inference_model_label_mismatches"] = mism
    if d_file > 1e-3 or mism > 0:
        raise RuntimeError(f"{case['name']}: inference_model differs ({d_file}, {mism} labels)")
    return checks


# ----------------------------------------------------------------------------------------------
# writing

def label_histogram(labels: torch.Tensor) -> list:
    return torch.bincount(labels.long().flatten(), minlength=NUM_CLASSES).tolist()


def near_ties(logits: torch.Tensor, gap: float = 1e-3) -> int:
    top2 = logits[0].topk(2, dim=0).values
    return int(((top2[0] - top2[1]) < gap).sum())


def stage3_kinds(model: nn.Module) -> list:
    return ["global" if b.window_size is None else f"window{b.window_size}"
            for b in model.backbone.blocks3 if isinstance(b, SABlock)]


def versions() -> dict:
    return {"torch": torch.__version__, "mmsegmentation": mmseg.__version__, "mmcv": mmcv.__version__,
            "mmengine": mmengine.__version__, "numpy": np.__version__, "cv2": cv2.__version__,
            "Pillow": PIL.__version__}


def case_config(case: dict, base: dict | None) -> dict:
    if base is not None:
        cfg = copy.deepcopy(base)
        cfg["override"] = case["override"]
        return cfg
    wset = WEIGHT_SETS[case["weights"]]
    model = copy.deepcopy(wset["model"])
    model["backbone"] = dict(model["backbone"], **case.get("backbone", {}))
    if "test_cfg" in case:
        model["test_cfg"] = copy.deepcopy(case["test_cfg"])
    data = {"mean": MEAN, "std": STD, "to_rgb": True, "scale": list(case["scale"]), "keep_ratio": True,
            "size_divisor": None, "align_divisor": case.get("align")}
    return {"model": model, "data": data, "classes": CLASSES, "palette": PALETTE}


def folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


@torch.no_grad()
def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    mirror = os.environ.get("UNIFORMER_MIRROR", "/work/.mirror/Sense-X+UniFormer/repo")
    align_fn = upstream_align(mirror)
    if align_fn is None:
        print("(no Sense-X/UniFormer mirror: AlignResize is not compared with upstream's code)")

    # keep eval/ (tasks/segmentation/check_with_mmseg.py writes it), rebuild the cases
    os.makedirs(OUT, exist_ok=True)
    for c in CASES:
        shutil.rmtree(os.path.join(OUT, c["name"]), ignore_errors=True)

    states, weight_files, configs, report, total = {}, {}, {}, [], 0
    for i, case in enumerate(CASES):
        name = case["name"]
        d = os.path.join(OUT, name)
        os.makedirs(d)
        base = configs.get(case.get("same_as"))
        config = case_config(case, base)
        configs[name] = config
        seed = SEED + i
        meta = {"generator": "tasks/reference/segmentation_fixtures.py", **versions()}

        # picture (own or the base case's)
        if base is not None:
            shutil.copyfile(os.path.join(OUT, case["same_as"], "image.png"), os.path.join(d, "image.png"))
            meta["image"] = f"copy of {case['same_as']}/image.png"
        else:
            rgb = make_picture(*case["image"], np.random.default_rng(seed))[..., ::-1]
            Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(os.path.join(d, "image.png"), optimize=True)
            meta["seed"] = seed
        image = os.path.join(d, "image.png")
        bgr, resized, aligned, inp = preprocess(image, config["data"])

        # weights: made once per weight set (calibrated on its first case's picture), then copied
        wname = CASES[[c["name"] for c in CASES].index(case["same_as"])]["weights"] if base else case["weights"]
        wset = WEIGHT_SETS[wname]
        if wname not in states:
            assert wset["calibrate_on"] == name, "a weight set is made on its calibration case"
            model = build_segmentor(wset["model"])
            gains = informative_weights_(model, torch.Generator().manual_seed(seed + 1000), inp)
            save_checkpoint(model, os.path.join(d, "weights.pth"), wset["container"])
            states[wname] = model.state_dict()
            weight_files[wname] = name
            meta["weights"] = {"set": wname, "seed": seed + 1000, "conv_seg_gain": gains}
        else:
            shutil.copyfile(os.path.join(OUT, weight_files[wname], "weights.pth"), os.path.join(d, "weights.pth"))
            meta["weights"] = {"set": wname, "file": f"same bytes as {weight_files[wname]}/weights.pth"}
        meta["weights"].update(container=wset["container"], dtype=str(WEIGHTS_DTYPE).replace("torch.", ""))

        model = build_segmentor(config["model"], config.get("override"))
        model.load_state_dict(states[wname], strict=True)
        ori_hw = bgr.shape[:2]
        out, net, details = run(model, inp, ori_hw, config["model"]["test_cfg"])
        checks = self_check(case, config, os.path.join(d, "weights.pth"), image, resized, aligned, inp,
                            out, net, align_fn)

        hist = label_histogram(out["labels"])
        n = sum(hist)
        busy = sum(1 for h in hist if h >= 0.03 * n)
        if busy < 4:
            raise RuntimeError(f"{name}: labels not spread enough {hist}")
        logits_std = float(out["logits"].std())
        meta.update(
            case=name, image_hw=list(ori_hw), resized_hw=list(resized.shape[:2]),
            input_hw=list(inp.shape[2:]), stage3_blocks=stage3_kinds(model), **details,
            label_histogram=hist, logits_std=round(logits_std, 4),
            near_ties={"1e-3": near_ties(out["logits"], 1e-3), "1e-4": near_ties(out["logits"], 1e-4)},
            output_std={k: round(float(v.std()), 4) for k, v in out.items() if k != "labels"},
            checks=checks)
        tensors = {"input": inp, **out}
        meta["tensors"] = {k: list(v.shape) for k, v in tensors.items()}
        config = dict(config, fixture=meta)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(dump_json(config) + "\n")
        save_safetensors(tensors, os.path.join(d, "io.safetensors"),
                         metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
        size = folder_size(d)
        total += size
        report.append(f"{name:25s} image {ori_hw[1]}x{ori_hw[0]} -> input {inp.shape[3]}x{inp.shape[2]}"
                      f"{' (imrescale %dx%d)' % (resized.shape[1], resized.shape[0]) if resized.shape != aligned.shape else ''}"
                      f"  logits std {logits_std:.3f}  labels {hist}  {size / 1e3:.0f} KB\n"
                      f"{'':25s} checks: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    print("\n".join(report))
    print(f"segmentation fixtures: {total / 1e6:.2f} MB in {OUT} (eval/ not included)")


if __name__ == "__main__":
    main()
