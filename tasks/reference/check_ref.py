"""Proof that uniformer_ref.py has upstream's parameter names and semantics.

For every case under Tests/UniFormerTests/Fixtures/backbone/ this builds the same model from
upstream's own module code (Sense-X/UniFormer, read from a local mirror into a temporary
directory at run time, with small stand-ins for the timm / mmcv / mmdet imports; nothing of it is
committed), loads the case's weights.pth into it with strict=True, runs the stored `input`, and
compares with the stored outputs (which uniformer_ref.py produced).

  dense global / windows / hybrid   object_detection/mmdet/models/backbones/uniformer.py, whole model
  dense conv_stem / layer_scale     stems and blocks from the token-labeling classification file,
                                    the stage norms norm1..4 applied as upstream's dense forward does
  classifier                        image_classification/models/uniformer.py (the plain ImageNet model)
  global_as_hybrid                  the dense file built with hybrid=True, window_size=2

Usage:  python3 tasks/reference/check_ref.py [--mirror DIR]
The mirror is a git directory of the upstream repository (default: $UNIFORMER_MIRROR or
/work/.mirror/Sense-X+UniFormer/repo). Exits non-zero if any case differs by more than 1e-4.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
import types

import torch
import torch.nn as nn
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backbone_fixtures import TINY, randomize_  # noqa: E402
from uniformer_ref import ZOO, attention_override, build, unwrap_checkpoint  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "backbone")
FILES = {
    "dense": "object_detection/mmdet/models/backbones/uniformer.py",
    "cls": "image_classification/models/uniformer.py",
    "tlt": "image_classification/token_labeling/tlt/models/uniformer.py",
}


def install_stubs() -> None:
    """Stand-ins for the imports of upstream's files that inference does not use."""
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    class DropPath(nn.Identity):
        def __init__(self, p=0.0):
            super().__init__()

    layers = module("timm.models.layers", DropPath=DropPath,
                    to_2tuple=lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v),
                    trunc_normal_=lambda t, std=1.0, **kw: nn.init.trunc_normal_(t, std=std))
    vit = module("timm.models.vision_transformer", _cfg=lambda **kw: dict(kw))
    registry = module("timm.models.registry", register_model=lambda f: f)
    models = module("timm.models", layers=layers, vision_transformer=vit, registry=registry)
    module("timm", models=models)
    module("mmcv_custom", load_checkpoint=lambda *a, **k: None)
    module("mmdet")
    module("mmdet.utils", get_root_logger=lambda *a, **k: None)


def load_upstream(mirror: str, tmp: str) -> dict:
    """Write upstream's three model files into a temporary package and import them."""
    pkg = os.path.join(tmp, "upstream_uniformer")
    os.makedirs(os.path.join(pkg, "backbones"))
    open(os.path.join(pkg, "__init__.py"), "w").close()
    open(os.path.join(pkg, "backbones", "__init__.py"), "w").close()
    with open(os.path.join(pkg, "builder.py"), "w") as f:  # target of `from ..builder import BACKBONES`
        f.write("class _Registry:\n    def register_module(self, *a, **k):\n"
                "        return (lambda c: c) if not a else a[0]\nBACKBONES = _Registry()\n")
    names = {"dense": "backbones/uniformer_dense.py", "cls": "uniformer_cls.py", "tlt": "uniformer_tlt.py"}
    for key, path in FILES.items():
        src = subprocess.run(["git", "-C", mirror, "show", f"HEAD:{path}"], check=True,
                             capture_output=True, text=True).stdout
        with open(os.path.join(pkg, names[key]), "w") as f:
            f.write(src)
    sys.path.insert(0, tmp)
    install_stubs()
    return {
        "dense": importlib.import_module("upstream_uniformer.backbones.uniformer_dense"),
        "cls": importlib.import_module("upstream_uniformer.uniformer_cls"),
        "tlt": importlib.import_module("upstream_uniformer.uniformer_tlt"),
    }


def upstream_model(mods: dict, cfg: dict) -> tuple[nn.Module, str]:
    """The upstream module for a config, and how to run it ('dense', 'stages' or 'logits')."""
    common = dict(embed_dim=cfg["embed_dim"], head_dim=cfg["head_dim"], mlp_ratio=cfg["mlp_ratio"],
                  qkv_bias=cfg["qkv_bias"], qk_scale=cfg["qk_scale"])
    with contextlib.redirect_stdout(io.StringIO()):  # upstream prints from __init__
        if cfg.get("num_classes", 0) > 0:
            ls = cfg.get("layer_scale", False)
            if ls is True or cfg.get("return_dense"):  # token-labeling file: gammas everywhere, aux_head
                mods["tlt"].layer_scale = ls is True
                m = mods["tlt"].UniFormer(depth=cfg["layers"], num_classes=cfg["num_classes"],
                                          conv_stem=cfg["conv_stem"], return_dense=bool(cfg.get("return_dense")),
                                          **common)
                mods["tlt"].layer_scale = False
                return m, "logits"
            mods["cls"].layer_scale = ls == "attention"  # uniformer_base_ls: gammas in SABlocks only
            m = mods["cls"].UniFormer(depth=cfg["layers"], num_classes=cfg["num_classes"],
                                      conv_stem=cfg["conv_stem"], **common)
            mods["cls"].layer_scale = False
            return m, "logits"
        if cfg.get("conv_stem") or cfg.get("layer_scale"):
            if cfg.get("windows") or cfg.get("hybrid"):
                raise NotImplementedError("upstream has no windowed conv_stem/layer_scale backbone")
            mods["tlt"].layer_scale = bool(cfg.get("layer_scale"))
            m = mods["tlt"].UniFormer(depth=cfg["layers"], num_classes=0, conv_stem=cfg["conv_stem"],
                                      **common)
            mods["tlt"].layer_scale = False
            # the dense head: upstream's norm1..4 = LayerNorm(eps=1e-6) on each stage output
            for i, d in enumerate(cfg["embed_dim"]):
                m.add_module(f"norm{i + 1}", nn.LayerNorm(d, eps=1e-6))
            del m.norm
            return m, "stages"
        return mods["dense"].UniFormer(layers=cfg["layers"], windows=cfg["windows"], hybrid=cfg["hybrid"],
                                       window_size=cfg["window_size"], **common), "dense"


def run(model: nn.Module, how: str, x: torch.Tensor) -> dict:
    if how == "logits":
        # upstream's classification PatchEmbed asserts its construction-time img_size (224); tell
        # each stem the size it will really see, so non-224 fixtures run through unchanged code.
        h, w = x.shape[2:]
        for i, p in enumerate((4, 2, 2, 2)):
            embed = getattr(model, f"patch_embed{i + 1}")
            if hasattr(embed, "img_size"):
                embed.img_size = (h, w)
            h, w = h // p, w // p
        return {"logits": model(x)}
    if how == "dense":
        return {f"stage{i + 1}": t for i, t in enumerate(model(x))}
    out = {}  # upstream classification trunk, stage by stage, then the dense forward's stage norms
    for i in range(4):
        x = getattr(model, f"patch_embed{i + 1}")(x)
        for blk in getattr(model, f"blocks{i + 1}"):
            x = blk(x)
        norm = getattr(model, f"norm{i + 1}")
        out[f"stage{i + 1}"] = norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return out


@torch.no_grad()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", default=os.environ.get("UNIFORMER_MIRROR",
                                                       "/work/.mirror/Sense-X+UniFormer/repo"))
    args = ap.parse_args()
    if not os.path.isdir(args.mirror):
        print(f"check_ref: no upstream mirror at {args.mirror}; skipped")
        return 0
    failures = checks = 0
    with tempfile.TemporaryDirectory() as tmp:
        mods = load_upstream(args.mirror, tmp)
        for name in sorted(os.listdir(FIXTURES)):
            d = os.path.join(FIXTURES, name)
            with open(os.path.join(d, "config.json")) as f:
                case = json.load(f)
            cfg = case["model"]
            cfg = attention_override(cfg, case.get("override"))
            model, how = upstream_model(mods, cfg)
            model.eval()
            sd = unwrap_checkpoint(torch.load(os.path.join(d, "weights.pth"), map_location="cpu"))
            sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
            model.load_state_dict(sd, strict=True)  # every upstream key present, none extra
            io_t = load_file(os.path.join(d, "io.safetensors"))
            got = run(model, how, io_t["input"])
            worst = 0.0
            for k, v in got.items():
                worst = max(worst, float((v - io_t[k]).abs().max()))
            if "top5" in io_t:
                same = got["logits"][0].topk(5).indices.float().equal(io_t["top5"])
                worst = worst if same else float("inf")
            src = {"dense": FILES["dense"], "stages": FILES["tlt"],
                   "logits": FILES["tlt"] if cfg.get("return_dense") or cfg.get("layer_scale") is True else FILES["cls"]}[how]
            failures += not report(f"fixture {name}", worst,
                                   f"strict load into {src}"
                                   + (f", override {case['override']}" if case.get("override") else ""))
            checks += 1
        failures += zoo_checks(mods)
        checks += len(ZOO) * 2 + 2
    for ok in (check_preprocess(), check_onnx()):
        if ok is not None:
            checks += 1
            failures += not ok
    print(f"{checks - failures} passed, {failures} failed")
    return 1 if failures else 0


def check_preprocess() -> bool | None:
    """The classifier fixture's PIL/numpy eval preprocessing against torchvision's own transforms
    (only when torchvision can be imported; it is not a requirement of the fixtures)."""
    try:
        from torchvision import transforms as T
    except Exception:  # noqa: BLE001 - absent or built for another torch
        print("skip torchvision preprocessing check (torchvision not importable)")
        return None
    import numpy as np
    from PIL import Image
    from backbone_fixtures import eval_preprocess
    tf = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                    T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    pics = [Image.open(os.path.join(FIXTURES, "classifier", "picture.png"))]
    rng = np.random.default_rng(0)
    pics += [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
             for w, h in [(260, 300), (301, 257), (500, 375), (224, 224)]]
    worst = 0.0
    for p in pics:
        a, b = tf(p.convert("RGB")).unsqueeze(0), eval_preprocess(p)
        worst = max(worst, float((a - b).abs().max()) if a.shape == b.shape else float("inf"))
    return report("eval preprocessing", worst, "vs torchvision Resize/CenterCrop/ToTensor/Normalize, 5 pictures")


@torch.no_grad()
def check_onnx() -> bool | None:
    """uniformer_ref exports with torch.onnx (TorchScript exporter) and onnxruntime agrees."""
    try:
        import onnxruntime as ort
    except Exception:  # noqa: BLE001
        print("skip ONNX export check (onnxruntime not importable)")
        return None
    import warnings
    cases = [(dict(TINY, layers=[1, 1, 4, 1], hybrid=True, window_size=3, conv_stem=True,
                   layer_scale=True), (83, 115)),
             (dict(TINY, windows=True, window_size=3), (64, 96)),
             (dict(TINY, num_classes=7), (64, 64))]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (cfg, (h, w)) in enumerate(cases):
            model = build(cfg)
            randomize_(model, torch.Generator().manual_seed(10 + i))
            x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(20 + i))
            path = os.path.join(tmp, f"m{i}.onnx")
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
            want = model(x)
            want = want if isinstance(want, tuple) else (want,)
            worst = max([worst] + [float((torch.from_numpy(g) - t).abs().max()) for g, t in zip(got, want)])
    return report("ONNX export", worst, "hybrid+conv_stem+layer_scale, windows, classifier via onnxruntime")


def report(what: str, worst: float, detail: str) -> bool:
    ok = worst <= 1e-4
    print(f"{'ok  ' if ok else 'FAIL'} {what:24s} max|diff| = {worst:.3g}   ({detail})")
    return ok


def same_keys(mine: nn.Module, theirs: nn.Module) -> float:
    """0 when both state_dicts have the same keys with the same shapes, else inf (and say why)."""
    a = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    if a == b:
        return 0.0
    diff = sorted(set(a.items()) ^ set(b.items()))[:6]
    print(f"     key/shape differences: {diff}")
    return float("inf")


@torch.no_grad()
def zoo_checks(mods: dict) -> int:
    """Model-zoo shapes: identical key sets and shapes, and numbers at a window-padding size."""
    failures = 0
    for name, zcfg in ZOO.items():
        cfg = dict(TINY, **{k: v for k, v in zcfg.items()})
        cfg.update(layers=zcfg["layers"], embed_dim=zcfg["embed_dim"], head_dim=zcfg["head_dim"])
        for k in (0, 1000):
            c = dict(cfg, num_classes=k)
            with contextlib.redirect_stdout(io.StringIO()):
                if k:
                    mod = mods["tlt"] if c["layer_scale"] else mods["cls"]
                    mod.layer_scale = c["layer_scale"]
                    theirs = mod.UniFormer(depth=c["layers"], embed_dim=c["embed_dim"],
                                           head_dim=c["head_dim"], conv_stem=c["conv_stem"], num_classes=k)
                    mod.layer_scale = False
                    src = "image_classification (tlt)" if c["layer_scale"] else "image_classification"
                else:
                    theirs, how = upstream_model(mods, c)
                    src = "object_detection" if how == "dense" else "tlt trunk + norm1..4"
            failures += not report(f"zoo {name} {'cls' if k else 'dense'} keys", same_keys(build(c), theirs),
                                   f"{sum(p.numel() for p in theirs.parameters()) / 1e6:.2f}M params vs {src}")

    # UniFormer-S dense, hybrid window 14, at a size where stage 3 (15x20) needs window padding
    cfg = dict(TINY, **ZOO["S"], hybrid=True, window_size=14)
    mine = build(cfg)
    randomize_(mine, torch.Generator().manual_seed(1))
    with contextlib.redirect_stdout(io.StringIO()):
        theirs, _ = upstream_model(mods, cfg)
    theirs.eval().load_state_dict(mine.state_dict(), strict=True)
    x = torch.randn(1, 3, 250, 330, generator=torch.Generator().manual_seed(2))
    worst = max(float((a - b).abs().max()) for a, b in zip(mine(x), theirs(x)))
    failures += not report("zoo S hybrid:14 250x330", worst, "random informative weights, object_detection file")

    # token labeling classifier (return_dense): eval logits = head(mean) + 0.5 * max_tokens aux_head
    cfg = dict(TINY, layers=[1, 1, 2, 1], num_classes=10, return_dense=True, layer_scale=True)
    mine = build(cfg)
    randomize_(mine, torch.Generator().manual_seed(3))
    mods["tlt"].layer_scale = True
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = mods["tlt"].UniFormer(depth=cfg["layers"], embed_dim=cfg["embed_dim"], head_dim=16,
                                       num_classes=10, return_dense=True, mix_token=True)
    mods["tlt"].layer_scale = False
    theirs.eval().load_state_dict(mine.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    worst = float((mine(x) - theirs(x)).abs().max())
    failures += not report("tlt return_dense logits", worst, "token_labeling file, layer scale, aux_head")
    return failures


if __name__ == "__main__":
    sys.exit(main())
