"""Writes configs/ for the UniFormer COCO detection entries of the upstream model zoo (+ one RetinaNet).

Each config is the effective mmdet 2.11 `model` dict of the upstream experiment -- the `_base_` file
object_detection/configs/_base_/models/{mask_rcnn,cascade_mask_rcnn}_uniformer_fpn.py with the
experiment's overrides (object_detection/exp/<name>/config.py) applied, as mmcv's Config merges
them (a list, like the cascade `bbox_head`, replaces the base list) -- flattened into JSON with
mmdet 2.11's field names, plus the test pipeline as `data` (coco_instance.py: img_scale (1333, 800),
keep ratio, Normalize, Pad size_divisor 32) and COCO's 80 class names (tasks/configs/coco.json, which
also holds the 80 -> 91 category ids and mmdet's palette).

    mask-rcnn-hybrid-{small,base}-{1x,3x}       exp/mask_rcnn_{1x,3x_ms}_hybrid_{small,base}
    cascade-mask-rcnn-hybrid-{small,base}-3x    exp/cascade_mask_rcnn_3x_ms_hybrid_{small,base}
    retinanet-hybrid-small-1x                   mmdet's configs/_base_/models/retinanet_r50_fpn.py with
                                                the UniFormer-S h14 backbone of mask_rcnn_1x_hybrid_small
                                                (no UniFormer RetinaNet checkpoint exists upstream)

The light XXS/XS Mask R-CNN entries (exp_light/, backbone uniformer_light) are not written: their
backbone is a different architecture from the UniFormer this project implements.

Run: python3 tasks/configs/detection_configs.py
     tasks/reference/.venv-mmdet/bin/python tasks/configs/detection_configs.py --check
        (also loads every upstream config.py with mmengine's Config from the Sense-X/UniFormer mirror
         -- $UNIFORMER_MIRROR or /work/.mirror/Sense-X+UniFormer/repo -- and compares its `model`
         with the dict written here, field for field; needs mmengine, i.e. the mmdet venv)
"""
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "configs")

DIMS = [64, 128, 320, 512]
LAYERS = {"small": [3, 4, 8, 3], "base": [5, 8, 20, 7]}
SYNC_BN = {"type": "SyncBN", "requires_grad": True}
DATA = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "to_rgb": True,
        "scale": [1333, 800], "keep_ratio": True, "size_divisor": 32}


def coder(stds):
    return {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0], "target_stds": stds}


def backbone(size, drop_path, checkpoint_num=None):
    """The exp configs' backbone dict merged into the base one (use_checkpoint/checkpoint_num are
    training switches: activation checkpointing)."""
    b = {"type": "UniFormer", "embed_dim": DIMS, "layers": LAYERS[size], "head_dim": 64, "mlp_ratio": 4.0,
         "qkv_bias": True, "drop_rate": 0.0, "attn_drop_rate": 0.0, "drop_path_rate": drop_path}
    if checkpoint_num is None:
        b["use_checkpoint"] = False
    else:
        b.update(use_checkpoint=True, checkpoint_num=checkpoint_num)
    b.update(windows=False, hybrid=True, window_size=14)
    return b


def fpn(**extra):
    return {"type": "FPN", "in_channels": DIMS, "out_channels": 256, **extra, "num_outs": 5}


def rpn_head(loss_bbox):
    return {"type": "RPNHead", "in_channels": 256, "feat_channels": 256,
            "anchor_generator": {"type": "AnchorGenerator", "scales": [8], "ratios": [0.5, 1.0, 2.0],
                                 "strides": [4, 8, 16, 32, 64]},
            "bbox_coder": coder([1.0, 1.0, 1.0, 1.0]),
            "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0},
            "loss_bbox": loss_bbox}


def roi_extractor(size):
    return {"type": "SingleRoIExtractor", "roi_layer": {"type": "RoIAlign", "output_size": size, "sampling_ratio": 0},
            "out_channels": 256, "featmap_strides": [4, 8, 16, 32]}


MASK_HEAD = {"type": "FCNMaskHead", "num_convs": 4, "in_channels": 256, "conv_out_channels": 256, "num_classes": 80,
             "loss_mask": {"type": "CrossEntropyLoss", "use_mask": True, "loss_weight": 1.0}}


def assigner(pos, neg, min_pos, low_quality):
    return {"type": "MaxIoUAssigner", "pos_iou_thr": pos, "neg_iou_thr": neg, "min_pos_iou": min_pos,
            "match_low_quality": low_quality, "ignore_iof_thr": -1}


def sampler(num, frac, gt):
    return {"type": "RandomSampler", "num": num, "pos_fraction": frac, "neg_pos_ub": -1, "add_gt_as_proposals": gt}


def mask_rcnn(size, drop_path, checkpoint_num):
    """configs/_base_/models/mask_rcnn_uniformer_fpn.py + exp/mask_rcnn_*_hybrid_*/config.py"""
    return {
        "type": "MaskRCNN", "pretrained": None,
        "backbone": backbone(size, drop_path, checkpoint_num),
        "neck": fpn(),
        "rpn_head": rpn_head({"type": "L1Loss", "loss_weight": 1.0}),
        "roi_head": {
            "type": "StandardRoIHead",
            "bbox_roi_extractor": roi_extractor(7),
            "bbox_head": {"type": "Shared2FCBBoxHead", "in_channels": 256, "fc_out_channels": 1024, "roi_feat_size": 7,
                          "num_classes": 80, "bbox_coder": coder([0.1, 0.1, 0.2, 0.2]), "reg_class_agnostic": False,
                          "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
                          "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}},
            "mask_roi_extractor": roi_extractor(14),
            "mask_head": copy.deepcopy(MASK_HEAD)},
        "train_cfg": {
            "rpn": {"assigner": assigner(0.7, 0.3, 0.3, True), "sampler": sampler(256, 0.5, False),
                    "allowed_border": -1, "pos_weight": -1, "debug": False},
            "rpn_proposal": {"nms_pre": 2000, "max_per_img": 1000, "nms": {"type": "nms", "iou_threshold": 0.7},
                             "min_bbox_size": 0},
            "rcnn": {"assigner": assigner(0.5, 0.5, 0.5, True), "sampler": sampler(512, 0.25, True),
                     "mask_size": 28, "pos_weight": -1, "debug": False}},
        "test_cfg": {
            "rpn": {"nms_pre": 1000, "max_per_img": 1000, "nms": {"type": "nms", "iou_threshold": 0.7},
                    "min_bbox_size": 0},
            "rcnn": {"score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100,
                     "mask_thr_binary": 0.5}},
    }


CASCADE_STDS = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]


def cascade_bbox_head(stds):
    """the exp configs' ConvFCBBoxHead (4 shared convs with SyncBN, 1 shared fc, class-specific
    regression decoded to boxes for the GIoU loss); it replaces the base file's Shared2FCBBoxHead list"""
    return {"type": "ConvFCBBoxHead", "num_shared_convs": 4, "num_shared_fcs": 1, "in_channels": 256,
            "conv_out_channels": 256, "fc_out_channels": 1024, "roi_feat_size": 7, "num_classes": 80,
            "bbox_coder": coder(stds), "reg_class_agnostic": False, "reg_decoded_bbox": True,
            "norm_cfg": dict(SYNC_BN),
            "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
            "loss_bbox": {"type": "GIoULoss", "loss_weight": 10.0}}


def cascade_mask_rcnn(size, drop_path, checkpoint_num):
    """configs/_base_/models/cascade_mask_rcnn_uniformer_fpn.py + exp/cascade_mask_rcnn_3x_ms_hybrid_*/config.py"""
    rcnn_train = [{"assigner": assigner(t, t, t, False), "sampler": sampler(512, 0.25, True), "mask_size": 28,
                   "pos_weight": -1, "debug": False} for t in (0.5, 0.6, 0.7)]
    return {
        "type": "CascadeRCNN", "pretrained": None,
        "backbone": backbone(size, drop_path, checkpoint_num),
        "neck": fpn(),
        "rpn_head": rpn_head({"type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 1.0}),
        "roi_head": {
            "type": "CascadeRoIHead", "num_stages": 3, "stage_loss_weights": [1, 0.5, 0.25],
            "bbox_roi_extractor": roi_extractor(7),
            "bbox_head": [cascade_bbox_head(s) for s in CASCADE_STDS],
            "mask_roi_extractor": roi_extractor(14),
            "mask_head": copy.deepcopy(MASK_HEAD)},
        "train_cfg": {
            "rpn": {"assigner": assigner(0.7, 0.3, 0.3, True), "sampler": sampler(256, 0.5, False),
                    "allowed_border": 0, "pos_weight": -1, "debug": False},
            "rpn_proposal": {"nms_across_levels": False, "nms_pre": 2000, "nms_post": 2000, "max_per_img": 2000,
                             "nms": {"type": "nms", "iou_threshold": 0.7}, "min_bbox_size": 0},
            "rcnn": rcnn_train},
        "test_cfg": {
            "rpn": {"nms_across_levels": False, "nms_pre": 1000, "nms_post": 1000, "max_per_img": 1000,
                    "nms": {"type": "nms", "iou_threshold": 0.7}, "min_bbox_size": 0},
            "rcnn": {"score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100,
                     "mask_thr_binary": 0.5}},
    }


def retinanet(size, drop_path, checkpoint_num):
    """mmdet 2.11's configs/_base_/models/retinanet_r50_fpn.py (as in the mirror) with the UniFormer
    backbone and FPN in_channels of mask_rcnn_1x_hybrid_small; `pretrained` None as in the UniFormer
    configs (the backbone's ImageNet weights come through pretrained_path in training)."""
    return {
        "type": "RetinaNet", "pretrained": None,
        "backbone": backbone(size, drop_path, checkpoint_num),
        "neck": fpn(start_level=1, add_extra_convs="on_input"),
        "bbox_head": {
            "type": "RetinaHead", "num_classes": 80, "in_channels": 256, "stacked_convs": 4, "feat_channels": 256,
            "anchor_generator": {"type": "AnchorGenerator", "octave_base_scale": 4, "scales_per_octave": 3,
                                 "ratios": [0.5, 1.0, 2.0], "strides": [8, 16, 32, 64, 128]},
            "bbox_coder": coder([1.0, 1.0, 1.0, 1.0]),
            "loss_cls": {"type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
            "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}},
        "train_cfg": {"assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0,
                                   "ignore_iof_thr": -1},
                      "allowed_border": -1, "pos_weight": -1, "debug": False},
        "test_cfg": {"nms_pre": 1000, "min_bbox_size": 0, "score_thr": 0.05,
                     "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100},
    }


# name: (builder, size, drop_path_rate, checkpoint_num, checkpoint file, upstream config)
ENTRIES = {
    "mask-rcnn-hybrid-small-1x": (mask_rcnn, "small", 0.2, [0, 0, 8, 0], "mask_rcnn_1x_hybrid_small.pth",
                                  "object_detection/exp/mask_rcnn_1x_hybrid_small/config.py"),
    "mask-rcnn-hybrid-small-3x": (mask_rcnn, "small", 0.1, [0, 0, 8, 0], "mask_rcnn_3x_ms_hybrid_small.pth",
                                  "object_detection/exp/mask_rcnn_3x_ms_hybrid_small/config.py"),
    "mask-rcnn-hybrid-base-1x": (mask_rcnn, "base", 0.3, None, "mask_rcnn_1x_hybrid_base.pth",
                                 "object_detection/exp/mask_rcnn_1x_hybrid_base/config.py"),
    "mask-rcnn-hybrid-base-3x": (mask_rcnn, "base", 0.3, [0, 0, 20, 0], "mask_rcnn_3x_ms_hybrid_base.pth",
                                 "object_detection/exp/mask_rcnn_3x_ms_hybrid_base/config.py"),
    "cascade-mask-rcnn-hybrid-small-3x": (cascade_mask_rcnn, "small", 0.2, [0, 0, 8, 0],
                                          "cascade_mask_rcnn_3x_ms_hybrid_small.pth",
                                          "object_detection/exp/cascade_mask_rcnn_3x_ms_hybrid_small/config.py"),
    "cascade-mask-rcnn-hybrid-base-3x": (cascade_mask_rcnn, "base", 0.4, [0, 0, 20, 0],
                                         "cascade_mask_rcnn_3x_ms_hybrid_base.pth",
                                         "object_detection/exp/cascade_mask_rcnn_3x_ms_hybrid_base/config.py"),
    "retinanet-hybrid-small-1x": (retinanet, "small", 0.2, [0, 0, 8, 0], None,
                                  "object_detection/configs/_base_/models/retinanet_r50_fpn.py (mmdet 2.11) "
                                  "+ the backbone of object_detection/exp/mask_rcnn_1x_hybrid_small/config.py"),
}


def build(name):
    fn, size, dp, ckn, ckpt, upstream = ENTRIES[name]
    coco = json.load(open(os.path.join(HERE, "coco.json")))
    return {"checkpoint": ckpt, "upstream_config": upstream, "model": fn(size, dp, ckn), "data": dict(DATA),
            "classes": coco["classes"]}


def dump_json(obj) -> str:
    """indent 1, with every list of numbers/strings on one line (as the other generated configs)"""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[[^\[\]{}\"]*\]", lambda m: json.dumps(json.loads(m.group(0))), text)


def check_against_mirror(mirror: str) -> None:
    """mmengine Config.fromfile on the upstream files (extracted from the mirror into a temp dir)
    vs our model dicts. RetinaNet: the base retinanet_r50_fpn.py with the backbone swapped."""
    from mmengine.config import Config

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    def diff(a, b, path="model"):
        out = []
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if k not in a or k not in b:
                    out.append(f"{path}.{k}: only in {'upstream' if k in a else 'ours'}")
                else:
                    out += diff(a[k], b[k], f"{path}.{k}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                out += diff(x, y, f"{path}[{i}]")
        elif a != b or type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            out.append(f"{path}: upstream {a!r} ours {b!r}")
        return out

    with tempfile.TemporaryDirectory() as tmp:
        tar = subprocess.run(["git", "-C", mirror, "archive", "HEAD", "object_detection/configs/_base_",
                              "object_detection/exp"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        for name, entry in ENTRIES.items():
            ours = build(name)["model"]
            if name.startswith("retinanet"):
                up = plain(Config.fromfile(os.path.join(tmp, "object_detection/configs/_base_/models/retinanet_r50_fpn.py")).model)
                up["pretrained"] = None
                up["backbone"] = plain(Config.fromfile(os.path.join(tmp, entry[5].split(" + the backbone of ")[1])).model.backbone)
                up["neck"]["in_channels"] = DIMS
            else:
                up = plain(Config.fromfile(os.path.join(tmp, entry[5])).model)
            problems = diff(up, ours)
            if problems:
                sys.exit(f"{name}: differs from upstream:\n  " + "\n  ".join(problems))
            print(f"{name}: model dict equal to upstream {entry[5]}")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in ENTRIES:
        path = os.path.join(OUT, name + ".json")
        with open(path, "w") as f:
            f.write(dump_json(build(name)) + "\n")
        print("wrote", os.path.relpath(path))
    if "--check" in sys.argv[1:]:
        mirror = os.environ.get("UNIFORMER_MIRROR", "/work/.mirror/Sense-X+UniFormer/repo")
        check_against_mirror(mirror)


if __name__ == "__main__":
    main()
