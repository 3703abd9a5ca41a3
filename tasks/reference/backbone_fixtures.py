"""Backbone parity fixtures for the Swift tests: tiny UniFormers with random, informative weights.

Writes Tests/UniFormerTests/Fixtures/backbone/<case>/:
  config.json     our config format {"model": <upstream backbone dict>, "data": {...}}, plus
                  "override" ("hybrid:2": the stage-3 attention the outputs were computed with,
                  when it differs from the model dict) and "fixture" (generator, torch version,
                  seed, weights format and dtype, input size, per-output std, stage-3 blocks)
  weights.pth     a checkpoint saved the way the official files are (the containers below)
  io.safetensors  float32 `input` [1,3,H,W] (already normalised) and `stage1`..`stage4` [1,C,h,w],
                  or `logits` [1,K] and `top5` [5] (class indices as floats) for the classifier;
                  its header metadata repeats the "fixture" record
and, for the classifier, picture.png (a generated test picture) whose timm/DeiT eval
preprocessing is the stored `input`.

Run from the repository root:  python3 tasks/reference/backbone_fixtures.py
Every number comes from uniformer_ref.py; check_ref.py then re-runs the stored fixtures through
upstream's own module code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageDraw
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uniformer_ref import SABlock, build  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "backbone")
SEED = 20240611

# mmdet/mmseg test pipelines' ImageNet normalisation in 0..255 units, as in the model-zoo configs
DATA = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "to_rgb": True,
        "scale": None, "keep_ratio": True, "size_divisor": None}

TINY = {"type": "UniFormer", "layers": [2, 2, 2, 1], "embed_dim": [16, 32, 48, 64], "head_dim": 16,
        "mlp_ratio": 4, "qkv_bias": True, "qk_scale": None, "windows": False, "hybrid": False,
        "window_size": 14, "conv_stem": False, "layer_scale": False, "num_classes": 0,
        "drop_path_rate": 0.1}

# weights.pth containers:
#   mmcv        {'meta': {...}, 'state_dict': OrderedDict('backbone.' + key)}   (mmcv save_checkpoint)
#   bare        OrderedDict(key)                                                (a plain backbone state_dict)
#   model       {'model': OrderedDict(key)}                                     (the ImageNet checkpoints)
CASES = [
    dict(name="global", model={}, size=(64, 96), fmt="mmcv"),
    dict(name="windows_pad", model={"layers": [1, 1, 2, 1], "windows": True, "window_size": 3}, size=(83, 115), fmt="bare"),
    dict(name="hybrid", model={"layers": [1, 1, 4, 1], "hybrid": True, "window_size": 3},
         size=(96, 128), fmt="mmcv"),
    dict(name="global_as_hybrid", same_as="global", override="hybrid:2"),
    dict(name="conv_stem", model={"layers": [1, 1, 1, 1], "conv_stem": True, "head_dim": 8}, size=(70, 90), fmt="mmcv"),
    dict(name="layer_scale", model={"layer_scale": True, "layers": [1, 2, 2, 1]}, size=(64, 64),
         fmt="bare"),
    dict(name="fp16", model={}, size=(64, 96), fmt="mmcv", half=True),
    dict(name="classifier", model={"num_classes": 20, "layers": [1, 1, 2, 1]}, picture=(300, 260),
         fmt="model"),
    # uniformer_base_ls (image_classification/models/uniformer.py): layer scale in SABlocks only
    dict(name="classifier_ls", model={"num_classes": 12, "layers": [1, 1, 2, 1], "layer_scale": "attention"},
         size=(64, 80), fmt="model"),
    # token labeling (tlt/models/uniformer.py): layer scale everywhere, aux_head added at eval
    dict(name="classifier_tl", model={"num_classes": 12, "layers": [1, 1, 2, 1], "layer_scale": True,
                                      "return_dense": True}, size=(64, 80), fmt="model"),
]


# ----------------------------------------------------------------------------------------------
# random, informative weights

@torch.no_grad()
def randomize_(model: nn.Module, gen: torch.Generator) -> None:
    """Fill every parameter and BN buffer so that no part of the network is an identity or a no-op.

    conv/linear: N(0, 1/fan_in) (qkv 1.5x, so attention is peaked enough to tell windows apart;
    the classifier head 3x, so the logits spread out and the top-5 does not hinge on 1e-3),
    bias 0.1 N; BN running_mean 0.5 N, running_var U(0.5, 2); BN/LN weight 1 + 0.3 N, bias 0.2 N;
    layer-scale gammas U(0.5, 1.5).
    """
    def normal(t, std, mean=0.0):
        t.copy_(torch.randn(t.shape, generator=gen) * std + mean)

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            gain = {"head": 3.0}.get(name, 1.5 if name.endswith("attn.qkv") else 1.0)
            normal(m.weight, gain / fan_in ** 0.5)
            if m.bias is not None:
                normal(m.bias, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            normal(m.running_mean, 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
            normal(m.weight, 0.3, 1.0)
            normal(m.bias, 0.2)
            m.num_batches_tracked.fill_(1000)
        elif isinstance(m, nn.LayerNorm):
            normal(m.weight, 0.3, 1.0)
            normal(m.bias, 0.2)
        for g in ("gamma_1", "gamma_2"):
            p = getattr(m, g, None)
            if isinstance(p, nn.Parameter):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)


# ----------------------------------------------------------------------------------------------
# the classifier's test picture and its timm/DeiT eval preprocessing

def make_picture(width: int, height: int, gen: np.random.Generator) -> Image.Image:
    """A synthetic, non-square RGB picture: smooth gradients, a few filled shapes, a speckled patch."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / (width - 1)
    g = 255 * y / (height - 1)
    b = 127.5 + 127.5 * np.sin(x / 17.0) * np.cos(y / 23.0)
    img = np.stack([r, g, b], axis=-1)
    img[150:250, 20:110] += gen.normal(0, 25, (100, 90, 3))  # texture, kept small for the PNG size
    pic = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(pic)
    d.ellipse([40, 30, 150, 120], fill=(230, 40, 40))
    d.rectangle([170, 140, 280, 230], fill=(20, 60, 200))
    d.polygon([(60, 240), (130, 150), (200, 250)], fill=(250, 220, 30))
    d.line([(0, 0), (width - 1, height - 1)], fill=(255, 255, 255), width=5)
    return pic


def eval_preprocess(pic: Image.Image, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """torchvision's Resize(256, BICUBIC) + CenterCrop(224) + ToTensor + Normalize(ImageNet) on a
    PIL image, written out (timm/DeiT eval transform; UniFormer's image_classification datasets.py).

    Resize: the short side becomes `resize`, the long side int(resize * long / short) (truncated);
    PIL bicubic. CenterCrop: top = int(round((h - crop) / 2.0)), left likewise (Python round).
    """
    pic = pic.convert("RGB")
    w, h = pic.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    pic = pic.resize((nw, nh), Image.BICUBIC)
    top = int(round((nh - crop) / 2.0))
    left = int(round((nw - crop) / 2.0))
    pic = pic.crop((left, top, left + crop, top + crop))
    x = torch.from_numpy(np.asarray(pic, dtype=np.float32) / 255.0).permute(2, 0, 1)  # [3, 224, 224]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0).contiguous()  # [1, 3, 224, 224]


# ----------------------------------------------------------------------------------------------
# writing

def save_weights(model: nn.Module, path: str, fmt: str, half: bool) -> None:
    sd = OrderedDict()
    for k, v in model.state_dict().items():
        v = v.detach().clone()
        if half and v.is_floating_point():
            v = v.half()
        sd[k] = v
    if fmt == "mmcv":
        obj = {"meta": {"mmcv_version": "1.3.0", "time": "Tue Jun 11 12:00:00 2024", "epoch": 12,
                        "iter": 7330},
               "state_dict": OrderedDict(("backbone." + k, v) for k, v in sd.items())}
    elif fmt == "bare":
        obj = sd
    elif fmt == "model":
        obj = {"model": sd}
    else:
        raise ValueError(fmt)
    torch.save(obj, path)


def save_safetensors(tensors: dict, path: str, metadata: dict) -> None:
    """float32 safetensors with a byte-stable header (safetensors.torch.save_file orders the
    metadata differently from run to run, which would churn the committed fixtures)."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        blob = tensors[name].detach().float().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header with spaces to 8 bytes
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def dump_json(obj) -> str:
    """JSON with one key per line and every list of numbers/strings on one line."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[[^\[\]{}]*\]", lambda m: json.dumps(json.loads(m.group(0))), text)


def write_case(case: dict, outputs: dict, inp: torch.Tensor, model_cfg: dict, meta: dict) -> dict:
    """config.json (+ "override" and a "fixture" record) and io.safetensors of one case."""
    d = os.path.join(OUT, case["name"])
    os.makedirs(d, exist_ok=True)
    tensors = {"input": inp.float().contiguous()}
    for k, v in outputs.items():
        tensors[k] = v.float().contiguous()
    stds = {k: round(float(v.std()), 4) for k, v in outputs.items() if k != "top5"}
    meta = dict(meta, case=case["name"], input_hw=list(inp.shape[2:]), output_std=stds,
                tensors={k: list(v.shape) for k, v in tensors.items()})
    config = {"model": model_cfg, "data": DATA}
    if case.get("override"):
        config["override"] = case["override"]
    config["fixture"] = meta
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(dump_json(config) + "\n")
    save_safetensors(tensors, os.path.join(d, "io.safetensors"),
                     metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    back = load_file(os.path.join(d, "io.safetensors"))  # the safetensors library reads it back
    assert back.keys() == tensors.keys() and all(back[k].equal(tensors[k]) for k in tensors)
    return stds


def check_informative(name: str, outputs: dict) -> None:
    for k, v in outputs.items():
        if not torch.isfinite(v).all():
            raise RuntimeError(f"{name}/{k}: non-finite output")
        if k != "top5" and float(v.std()) < 0.05:
            raise RuntimeError(f"{name}/{k}: near-constant output (std {float(v.std()):.4f})")


@torch.no_grad()
def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    made = {}  # case name -> (model cfg, model, input)
    report = []
    for i, case in enumerate(CASES):
        name = case["name"]
        seed = SEED + i
        gen = torch.Generator().manual_seed(seed)
        meta = {"generator": "tasks/reference/backbone_fixtures.py", "torch": torch.__version__,
                "seed": seed}

        if "same_as" in case:
            base = case["same_as"]
            model_cfg, base_model, inp = made[base]
            model = build(model_cfg, attention=case["override"])
            model.load_state_dict(base_model.state_dict(), strict=True)
            os.makedirs(os.path.join(OUT, name), exist_ok=True)
            shutil.copyfile(os.path.join(OUT, base, "weights.pth"), os.path.join(OUT, name, "weights.pth"))
            meta.update(seed=made[base + "_seed"], weights=f"copy of {base}/weights.pth",
                        format=next(c["fmt"] for c in CASES if c["name"] == base))
        else:
            model_cfg = dict(TINY, **case["model"])
            model = build(model_cfg)
            randomize_(model, gen)
            if case.get("half"):  # reference = the fp16-rounded weights, computed in float32
                with torch.no_grad():
                    for t in list(model.parameters()) + list(model.buffers()):
                        if t.is_floating_point():
                            t.copy_(t.half().float())
            if "picture" in case:
                pic = make_picture(*case["picture"], np.random.default_rng(seed))
                os.makedirs(os.path.join(OUT, name), exist_ok=True)
                pic.save(os.path.join(OUT, name, "picture.png"), optimize=True)
                inp = eval_preprocess(Image.open(os.path.join(OUT, name, "picture.png")))
                meta["preprocess"] = ("PIL RGB; Resize(256) short side, PIL bicubic, long = "
                                      "int(256*long/short); CenterCrop(224) top=int(round((h-224)/2)); "
                                      "ToTensor; Normalize(mean=(0.485,0.456,0.406), std=(0.229,0.224,0.225))")
            else:
                h, w = case["size"]
                inp = torch.randn(1, 3, h, w, generator=gen)
            os.makedirs(os.path.join(OUT, name), exist_ok=True)
            save_weights(model, os.path.join(OUT, name, "weights.pth"), case["fmt"], case.get("half", False))
            meta.update(format=case["fmt"], dtype="float16" if case.get("half") else "float32")
            made[name] = (model_cfg, model, inp)
            made[name + "_seed"] = seed

        y = model(inp)
        if isinstance(y, tuple):
            outputs = {f"stage{j + 1}": t for j, t in enumerate(y)}
        else:
            outputs = {"logits": y, "top5": y[0].topk(5).indices.float()}
        check_informative(name, outputs)
        stage3 = ["global" if b.window_size is None else f"window{b.window_size}"
                  for b in model.blocks3 if isinstance(b, SABlock)]
        meta["stage3_blocks"] = stage3
        stds = write_case(case, outputs, inp, model_cfg, meta)
        shapes = " ".join(f"{k}{list(v.shape)}" for k, v in outputs.items())
        report.append(f"{name:17s} in {list(inp.shape[2:])}  {shapes}\n{'':17s} std "
                      + " ".join(f"{k}={v:.3f}" for k, v in stds.items()))
        if "top5" in outputs:
            report[-1] += f"  top5={outputs['top5'].long().tolist()}"

    total = 0
    for dirpath, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    print("\n".join(report))
    print(f"backbone fixtures: {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
