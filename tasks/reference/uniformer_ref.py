"""UniFormer in plain PyTorch, for inference only: the reference the Swift port is tested against.

What it follows (Sense-X/UniFormer@52a0415, read for the architecture and the parameter names only):
  object_detection/mmdet/models/backbones/uniformer.py        dense backbone, windows/hybrid stage 3
  semantic_segmentation/mmseg/models/backbones/uniformer.py   (same code as the mmdet copy)
  image_classification/models/uniformer.py                    ImageNet classifier, conv_stem
  image_classification/token_labeling/tlt/models/uniformer.py layer scale in CBlock and SABlock, aux_head

The constructor takes the `model` dict of our JSON configs (the upstream backbone dict):
  layers (alias depth), embed_dim, head_dim, mlp_ratio, qkv_bias, qk_scale,
  windows, hybrid, window_size, conv_stem, layer_scale, num_classes, return_dense, in_chans.
Keys that only matter for training are accepted and ignored (TRAINING_ONLY_KEYS); any other key
is an error naming it.

Input  x: [B, in_chans, H, W] float32, already normalised. Odd sizes floor at every stride-2 step
           (conv with kernel = stride for PatchEmbed; k3 s2 p1 for the conv stem).
Output  dense backbone (num_classes 0/absent): tuple of 4 maps [B, C_i, H/4·2^-i, W/4·2^-i]
        classifier (num_classes > 0): logits [B, num_classes]

The state_dict keys are upstream's (patch_embed1.proj.weight, blocks3.0.attn.qkv.weight, norm4.bias,
head.weight, ...), so official checkpoints load with strict=True once the wrapping dict and the
`backbone.` prefix are removed (see `load_state_dict_any`).

There is no dropout, drop-path or activation checkpointing: eval() semantics only. The module is
plain tensor code (no data-dependent Python branches), so torch.onnx.export traces it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

# Accepted in a config and ignored here (training switches, or upstream plumbing).
TRAINING_ONLY_KEYS = {
    "type", "drop_rate", "attn_drop_rate", "drop_path_rate", "use_checkpoint", "checkpoint_num",
    "pretrained", "pretrained_path", "init_cfg", "img_size", "mix_token", "norm_cfg",
}

# Our model-zoo shapes (upstream register_model functions / mmdet configs).
ZOO = {
    "S": dict(layers=[3, 4, 8, 3], embed_dim=[64, 128, 320, 512], head_dim=64),
    "S+": dict(layers=[3, 5, 9, 3], embed_dim=[64, 128, 320, 512], head_dim=32, conv_stem=True),
    "B": dict(layers=[5, 8, 20, 7], embed_dim=[64, 128, 320, 512], head_dim=64),
    "L": dict(layers=[5, 10, 24, 7], embed_dim=[128, 192, 448, 640], head_dim=64, layer_scale=True),
}


# ----------------------------------------------------------------------------------------------
# stems

class PatchEmbed(nn.Module):
    """Non-overlapping patches: conv with kernel = stride = patch, then LayerNorm over channels.

    Keys: proj.weight [C, Cin, p, p], proj.bias [C], norm.weight/bias [C].
    The LayerNorm here is nn.LayerNorm's default eps 1e-5, unlike the 1e-6 used everywhere else.
    """

    def __init__(self, in_chans: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)                                    # [B, C, h, w]
        y = self.norm(y.permute(0, 2, 3, 1))                # [B, h, w, C]
        return y.permute(0, 3, 1, 2).contiguous()           # [B, C, h, w]


class ConvStemFirst(nn.Module):
    """conv_stem patch_embed1 (upstream head_embedding): two overlapping k3 s2 p1 convs.

    Keys: proj.0 conv -> dim/2, proj.1 BN, (proj.2 GELU, no weights), proj.3 conv -> dim, proj.4 BN.
    """

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        half = dim // 2
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, half, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(half),
            nn.GELU(),
            nn.Conv2d(half, dim, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConvDown(nn.Module):
    """conv_stem patch_embed2..4 (upstream middle_embedding). Keys: proj.0 conv k3 s2 p1, proj.1 BN."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, dim, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


# ----------------------------------------------------------------------------------------------
# blocks

class FeedForward(nn.Module):
    """fc1 -> exact GELU -> fc2. `conv=True` uses 1x1 convs on NCHW (CBlock), else Linear on tokens."""

    def __init__(self, dim: int, hidden: int, conv: bool):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.fc1 = layer(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = layer(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CBlock(nn.Module):
    """Convolutional block of stages 1-2 (local MHRA is a depthwise 5x5).

    x += pos_embed(x)                          dw 3x3
    x += g1 * conv2(attn(conv1(norm1(x))))     BN, 1x1, dw 5x5, 1x1
    x += g2 * mlp(norm2(x))                    BN, 1x1, GELU, 1x1
    g1/g2 are gamma_1/gamma_2 [1, C, 1, 1] when layer scale is on (token-labeling file), else 1.
    """

    def __init__(self, dim: int, mlp_ratio: float, layer_scale: bool):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), conv=True)
        if layer_scale:
            self.gamma_1 = nn.Parameter(torch.ones(1, dim, 1, 1))
            self.gamma_2 = nn.Parameter(torch.ones(1, dim, 1, 1))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> same
        x = x + self.pos_embed(x)
        a = self.conv2(self.attn(self.conv1(self.norm1(x))))
        x = x + (a if self.gamma_1 is None else self.gamma_1 * a)
        m = self.mlp(self.norm2(x))
        x = x + (m if self.gamma_2 is None else self.gamma_2 * m)
        return x


class Attention(nn.Module):
    """Multi-head self-attention over a token set. Keys: qkv.weight [3C, C] (+bias), proj [C, C]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, C] -> same
        b, n, c = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)  # [3, B, h, N, d]
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)  # [B, h, N, N]
        y = (weights @ v).transpose(1, 2).reshape(b, n, c)                      # [B, N, C]
        return self.proj(y)


def attend_in_windows(attn: Attention, t: torch.Tensor, ws: int) -> torch.Tensor:
    """Window attention on normalised tokens t [B, H, W, C] (upstream SABlock_Windows).

    The tokens are zero-padded on the bottom/right to multiples of ws AFTER the norm, the zero
    tokens take part in every window's attention (no mask), and the result is cropped back.
    """
    b, hh, ww, c = t.shape
    pad_b = (ws - hh % ws) % ws
    pad_r = (ws - ww % ws) % ws
    t = F.pad(t, (0, 0, 0, pad_r, 0, pad_b))                         # [B, Hp, Wp, C]
    hp, wp = hh + pad_b, ww + pad_r
    nh, nw = hp // ws, wp // ws
    win = t.reshape(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5)  # [B, nh, nw, ws, ws, C]
    win = win.reshape(b * nh * nw, ws * ws, c)                       # [B*nW, ws*ws, C]
    out = attn(win)                                                  # [B*nW, ws*ws, C]
    out = out.reshape(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    return out[:, :hh, :ww, :]                                       # [B, H, W, C]


class SABlock(nn.Module):
    """Transformer block of stages 3-4: global attention, or windows of ws x ws tokens.

    x += pos_embed(x)                          dw 3x3 on NCHW
    t  = tokens(x)                             [B, H*W, C]
    t += g1 * attn(norm1(t))                   LN eps 1e-6; global, or windowed when window_size
    t += g2 * mlp(norm2(t))                    Linear, GELU, Linear
    g1/g2 are gamma_1/gamma_2 [C] with layer scale, else 1. SABlock and SABlock_Windows have the
    same parameters upstream, so one class serves both and the stage-3 mode can be overridden.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: float | None, layer_scale: bool, window_size: int | None = None):
        super().__init__()
        self.window_size = window_size
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), conv=False)
        if layer_scale:
            self.gamma_1 = nn.Parameter(torch.ones(dim))
            self.gamma_2 = nn.Parameter(torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> same
        x = x + self.pos_embed(x)
        b, c, hh, ww = x.shape
        t = x.permute(0, 2, 3, 1)                                    # [B, H, W, C]
        n = self.norm1(t)
        if self.window_size is None:
            a = self.attn(n.reshape(b, hh * ww, c)).reshape(b, hh, ww, c)
        else:
            a = attend_in_windows(self.attn, n, self.window_size)
        t = t + (a if self.gamma_1 is None else self.gamma_1 * a)
        m = self.mlp(self.norm2(t))
        t = t + (m if self.gamma_2 is None else self.gamma_2 * m)
        return t.permute(0, 3, 1, 2).contiguous()                    # [B, C, H, W]


# ----------------------------------------------------------------------------------------------
# model

def stage3_windows(layers3: int, windows: bool, hybrid: bool, window_size: int) -> list:
    """Window size (or None = global) of each stage-3 block, as upstream's constructor picks it.

    `windows` wins over `hybrid`; in hybrid mode block i is global when (i + 1) % 4 == 0.
    """
    if windows:
        return [window_size] * layers3
    if hybrid:
        return [None if (i + 1) % 4 == 0 else window_size for i in range(layers3)]
    return [None] * layers3


class UniFormer(nn.Module):
    def __init__(self, layers=(3, 4, 8, 3), embed_dim=(64, 128, 320, 512), head_dim=64,
                 mlp_ratio=4.0, qkv_bias=True, qk_scale=None, windows=False, hybrid=False,
                 window_size=14, conv_stem=False, layer_scale=False, num_classes=0,
                 return_dense=False, in_chans=3, representation_size=None, depth=None, **ignored):
        super().__init__()
        unknown = sorted(set(ignored) - TRAINING_ONLY_KEYS)
        if unknown:
            raise ValueError(f"UniFormer: unknown config key(s) {unknown}")
        if representation_size:
            raise ValueError("UniFormer: representation_size (pre_logits) is not supported")
        if depth is not None:  # the classification files call `layers` `depth`
            layers = depth
        layers, dims = list(layers), list(embed_dim)
        if len(layers) != 4 or len(dims) != 4:
            raise ValueError("UniFormer: layers and embed_dim need 4 entries")
        heads = [d // head_dim for d in dims]
        self.num_classes = num_classes or 0
        self.return_dense = bool(return_dense)

        if conv_stem:
            self.patch_embed1 = ConvStemFirst(in_chans, dims[0])
            self.patch_embed2 = ConvDown(dims[0], dims[1])
            self.patch_embed3 = ConvDown(dims[1], dims[2])
            self.patch_embed4 = ConvDown(dims[2], dims[3])
        else:
            self.patch_embed1 = PatchEmbed(in_chans, dims[0], 4)
            self.patch_embed2 = PatchEmbed(dims[0], dims[1], 2)
            self.patch_embed3 = PatchEmbed(dims[1], dims[2], 2)
            self.patch_embed4 = PatchEmbed(dims[2], dims[3], 2)

        def sa(dim, nh, ws):
            return SABlock(dim, nh, mlp_ratio, qkv_bias, qk_scale, bool(layer_scale), ws)

        # layer_scale True: every block (token-labeling file, UniFormer-L); "attention": SABlocks only
        # (image_classification/models/uniformer.py, uniformer_base_ls).
        if layer_scale not in (False, True, "attention"):
            raise ValueError(f"UniFormer: layer_scale must be true, false or 'attention', got {layer_scale!r}")
        conv_ls = layer_scale is True
        self.blocks1 = nn.ModuleList(CBlock(dims[0], mlp_ratio, conv_ls) for _ in range(layers[0]))
        self.blocks2 = nn.ModuleList(CBlock(dims[1], mlp_ratio, conv_ls) for _ in range(layers[1]))
        self.blocks3 = nn.ModuleList(
            sa(dims[2], heads[2], ws) for ws in stage3_windows(layers[2], windows, hybrid, window_size))
        self.blocks4 = nn.ModuleList(sa(dims[3], heads[3], None) for _ in range(layers[3]))

        if self.num_classes > 0:
            self.norm = nn.BatchNorm2d(dims[3])
            self.head = nn.Linear(dims[3], self.num_classes)
            if self.return_dense:  # token labeling: eval adds 0.5 * max over tokens of aux_head
                self.aux_head = nn.Linear(dims[3], self.num_classes)
        else:
            for i, d in enumerate(dims):
                self.add_module(f"norm{i + 1}", nn.LayerNorm(d, eps=1e-6))

    def stages(self):
        return [(self.patch_embed1, self.blocks1), (self.patch_embed2, self.blocks2),
                (self.patch_embed3, self.blocks3), (self.patch_embed4, self.blocks4)]

    def forward(self, x: torch.Tensor):
        feats = []
        for i, (embed, blocks) in enumerate(self.stages()):
            x = embed(x)                                              # [B, C_i, h_i, w_i]
            for blk in blocks:
                x = blk(x)
            if self.num_classes == 0:
                norm = getattr(self, f"norm{i + 1}")
                feats.append(norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous())
        if self.num_classes == 0:
            return tuple(feats)
        tokens = self.norm(x).flatten(2).transpose(1, 2)             # [B, N, C]
        logits = self.head(tokens.mean(dim=1))                        # [B, K]
        if self.return_dense:
            logits = logits + 0.5 * self.aux_head(tokens).max(dim=1)[0]
        return logits


# ----------------------------------------------------------------------------------------------
# building and loading

def attention_override(cfg: Mapping, attention: str | None) -> dict:
    """Copy of cfg with stage 3 set to "global", "window:N" or "hybrid:N" (None: unchanged)."""
    out = dict(cfg)
    if attention is None:
        return out
    kind, _, size = attention.partition(":")
    if kind == "global" and not size:
        out.update(windows=False, hybrid=False)
    elif kind in ("window", "windows", "hybrid") and size.isdigit() and int(size) > 0:
        out.update(windows=kind != "hybrid", hybrid=kind == "hybrid", window_size=int(size))
    else:
        raise ValueError(f"attention override {attention!r}: expected global, window:N or hybrid:N")
    return out


def build(cfg: Mapping, attention: str | None = None) -> UniFormer:
    """Model in eval mode from a config `model` dict, optionally with stage 3 overridden."""
    return UniFormer(**attention_override(cfg, attention)).eval()


def unwrap_checkpoint(obj) -> "OrderedDict[str, torch.Tensor]":
    """State dict of a checkpoint: takes `state_dict` / `model` wrappers and the `module.` and
    `backbone.` prefixes away (a detector's non-backbone keys are dropped)."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    sd = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in obj.items())
    if any(k.startswith("backbone.") for k in sd):
        sd = OrderedDict((k[len("backbone."):], v) for k, v in sd.items() if k.startswith("backbone."))
    return sd


def load_state_dict_any(model: UniFormer, obj) -> None:
    """Strict load of an official or fixture checkpoint object; BN counters are optional."""
    sd = unwrap_checkpoint(obj)
    sd = OrderedDict((k, v.float()) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    if model.num_classes == 0:  # a classification checkpoint used as a backbone
        sd = OrderedDict((k, v) for k, v in sd.items()
                         if not (k.startswith("head.") or k.startswith("aux_head.") or k.startswith("norm.")))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise KeyError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")


if __name__ == "__main__":  # smoke test: parameter counts of the zoo shapes
    for name, zcfg in ZOO.items():
        for k in (0, 1000):
            m = build(dict(zcfg, num_classes=k))
            n = sum(p.numel() for p in m.parameters())
            print(f"UniFormer-{name} num_classes={k}: {n / 1e6:.2f}M params")
