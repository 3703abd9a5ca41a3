"""Writes configs/ for the UniFormer ADE20K segmentation entries of the upstream model zoo.

Each config is the effective mmseg `model` dict of the upstream experiment (the `_base_` file
configs/_base_/models/upernet_uniformer.py or fpn_uniformer.py with the experiment's overrides
applied, flattened), plus the test pipeline as `data` (img_scale (2048, 512), keep ratio, no
padding; Semantic FPN's AlignResize(size_divisor=32) as `align_divisor`), and ADE20K's 150 class
names and palette (tasks/configs/ade20k.json, as mmsegmentation's ADE20KDataset lists them).
The w32/h32 entries are upstream's test_config_w32.py / test_config_h32.py: the global-trained
checkpoint run with windowed or hybrid stage-3 attention of window 32.

Run: python3 tasks/configs/segmentation_configs.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "configs")

DIMS = [64, 128, 320, 512]
LAYERS = {"small": [3, 4, 8, 3], "base": [5, 8, 20, 7]}
BN = {"type": "SyncBN", "requires_grad": True}
DATA = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "to_rgb": True,
        "scale": [2048, 512], "keep_ratio": True, "size_divisor": None, "align_divisor": None}


def backbone(size, attention):
    b = {"type": "UniFormer", "embed_dim": DIMS, "layers": LAYERS[size], "head_dim": 64, "mlp_ratio": 4.0,
         "qkv_bias": True, "drop_rate": 0.0, "attn_drop_rate": 0.0, "drop_path_rate": 0.1,
         "windows": False, "hybrid": False}
    if attention == "w32":
        b.update(windows=True, window_size=32)
    elif attention == "h32":
        b.update(hybrid=True, window_size=32)
    elif attention == "h14":
        b.update(hybrid=True, window_size=14)
    return b


def upernet(size, attention):
    return {"type": "EncoderDecoder", "pretrained": None, "backbone": backbone(size, attention),
            "decode_head": {"type": "UPerHead", "in_channels": DIMS, "in_index": [0, 1, 2, 3],
                            "pool_scales": [1, 2, 3, 6], "channels": 512, "dropout_ratio": 0.1,
                            "num_classes": 150, "norm_cfg": BN, "align_corners": False},
            "auxiliary_head": {"type": "FCNHead", "in_channels": 320, "in_index": 2, "channels": 256,
                               "num_convs": 1, "concat_input": False, "dropout_ratio": 0.1,
                               "num_classes": 150, "norm_cfg": BN, "align_corners": False},
            "train_cfg": {}, "test_cfg": {"mode": "whole"}}


def fpn(size, attention):
    return {"type": "EncoderDecoder", "backbone": backbone(size, attention),
            "neck": {"type": "FPN", "in_channels": DIMS, "out_channels": 256, "num_outs": 4},
            "decode_head": {"type": "FPNHead", "in_channels": [256, 256, 256, 256], "in_index": [0, 1, 2, 3],
                            "feature_strides": [4, 8, 16, 32], "channels": 128, "dropout_ratio": 0.1,
                            "num_classes": 150, "norm_cfg": BN, "align_corners": False},
            "train_cfg": {}, "test_cfg": {"mode": "whole"}}


# name: (head, size, attention, checkpoint of the upstream zoo, upstream config)
ENTRIES = {}
for size in ("small", "base"):
    for att, suffix, cfg in (("global", "", "test_config_g.py"), ("w32", "-w32", "test_config_w32.py"),
                             ("h32", "-h32", "test_config_h32.py")):
        ENTRIES[f"upernet-global-{size}{suffix}"] = ("upernet", size, att, f"upernet_global_{size}.pth",
                                                     f"semantic_segmentation/exp/upernet_global_{size}/{cfg}")
        ENTRIES[f"fpn-global-{size}{suffix}"] = ("fpn", size, att, f"fpn_global_{size}.pth",
                                                 f"semantic_segmentation/fpn_seg/exp/fpn_global_{size}/{cfg}")
    ENTRIES[f"upernet-hybrid-{size}"] = ("upernet", size, "h14", f"upernet_hybrid_{size}.pth (log only upstream)",
                                         f"semantic_segmentation/exp/upernet_hybrid_{size}/config.py")
    ENTRIES[f"fpn-hybrid-{size}"] = ("fpn", size, "h14", f"fpn_hybrid_{size}.pth",
                                     f"semantic_segmentation/fpn_seg/exp/fpn_hybrid_{size}/config.py")


def main():
    ade = json.load(open(os.path.join(HERE, "ade20k.json")))
    assert len(ade["classes"]) == 150 and len(ade["palette"]) == 150
    os.makedirs(OUT, exist_ok=True)
    for name, (head, size, att, ckpt, upstream) in sorted(ENTRIES.items()):
        model = upernet(size, att) if head == "upernet" else fpn(size, att)
        data = dict(DATA, align_divisor=32 if head == "fpn" else None)
        cfg = {"checkpoint": ckpt, "upstream_config": upstream, "model": model, "data": data,
               "classes": ade["classes"], "palette": ade["palette"]}
        path = os.path.join(OUT, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
            f.write("\n")
        print("wrote", os.path.relpath(path))


if __name__ == "__main__":
    main()
