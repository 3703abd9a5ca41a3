"""Writes configs/ for the UniFormer backbones and ImageNet classifiers of the upstream model zoo.

Each config is the upstream model dict as JSON (field names as in the mmdet/mmseg configs and the
classification `register_model` functions of Sense-X/UniFormer), plus `data` and `classes`.
ImageNet class names: tasks/configs/imagenet_classes.json (the torchvision list, 1000 names).

Run: python3 tasks/configs/backbone_configs.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "configs")

S = dict(layers=[3, 4, 8, 3], embed_dim=[64, 128, 320, 512])
B = dict(layers=[5, 8, 20, 7], embed_dim=[64, 128, 320, 512])
S_PLUS = dict(layers=[3, 5, 9, 3], embed_dim=[64, 128, 320, 512], conv_stem=True)
L = dict(layers=[5, 10, 24, 7], embed_dim=[128, 192, 448, 640])

IMAGENET = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "to_rgb": True,
            "scale": None, "keep_ratio": True, "size_divisor": None}

# name: (model dict, upstream checkpoint it loads, note)
CLASSIFIERS = {
    "uniformer-s-in1k": (dict(S, head_dim=64), "uniformer_small_in1k.pth"),
    "uniformer-s-plus-in1k": (dict(S_PLUS, head_dim=32), "uniformer_small_plus_in1k.pth"),
    "uniformer-b-in1k": (dict(B, head_dim=64), "uniformer_base_in1k.pth"),
    "uniformer-b-ls-in1k": (dict(B, head_dim=64, layer_scale="attention"), "uniformer_base_ls_in1k.pth"),
    "uniformer-s-tl-224": (dict(S, head_dim=32, return_dense=True), "uniformer_small_tl_224.pth"),
    "uniformer-s-plus-tl-224": (dict(S_PLUS, head_dim=32, return_dense=True), "uniformer_small_plus_tl_224.pth"),
    "uniformer-b-tl-224": (dict(B, head_dim=32, return_dense=True), "uniformer_base_tl_224.pth"),
    "uniformer-l-tl-224": (dict(L, head_dim=64, layer_scale=True, return_dense=True), "uniformer_large_tl_224.pth"),
}

# Dense backbones (features): the mmdet/mmseg backbone dicts. Stage 3 can be overridden at run time.
BACKBONES = {
    "uniformer-s": (dict(S, head_dim=64), "the backbone.* of any UniFormer-S detection/segmentation checkpoint"),
    "uniformer-s-h14": (dict(S, head_dim=64, hybrid=True, window_size=14), "mask_rcnn_1x_hybrid_small.pth (backbone.*)"),
    "uniformer-b": (dict(B, head_dim=64), "the backbone.* of any UniFormer-B detection/segmentation checkpoint"),
    "uniformer-b-h14": (dict(B, head_dim=64, hybrid=True, window_size=14), "mask_rcnn_1x_hybrid_base.pth (backbone.*)"),
}


def write(name, cfg):
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    print("wrote", os.path.relpath(path))


def main():
    classes = json.load(open(os.path.join(HERE, "imagenet_classes.json")))
    assert len(classes) == 1000
    os.makedirs(OUT, exist_ok=True)
    for name, (model, ckpt) in CLASSIFIERS.items():
        write(name, {"checkpoint": ckpt,
                     "model": dict({"type": "UniFormer"}, **model, num_classes=1000),
                     "data": IMAGENET, "classes": classes})
    for name, (model, ckpt) in BACKBONES.items():
        write(name, {"checkpoint": ckpt, "model": dict({"type": "UniFormer"}, **model), "data": IMAGENET})


if __name__ == "__main__":
    main()
