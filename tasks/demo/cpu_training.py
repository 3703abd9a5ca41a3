"""CPU-time helpers shared by the demo trainers (train_det.py, train_seg.py); plain PyTorch.

Measured on the 2-core training machine (torch 2.15 CPU, oneDNN), backward of a depthwise 5x5
convolution on 4x32x96x96:  NCHW fp32 41 ms, NCHW bf16 35 ms, channels-last fp32 14 ms,
channels-last bf16 51 ms. Hence: channels-last tensors everywhere, bf16 autocast for the dense
products, and the depthwise convolutions kept in float32 inside it.
"""

from __future__ import annotations

import types

import torch


def fp32_depthwise(model: torch.nn.Module) -> int:
    """Every grouped Conv2d of `model` runs in float32 even inside a bf16 autocast region (its input
    is cast up; outside autocast this changes nothing). -> the number of layers changed."""
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
            def forward(self, x, _plain=m.forward):
                with torch.autocast("cpu", enabled=False):
                    return _plain(x.float())
            m.forward = types.MethodType(forward, m)
            n += 1
    return n


def prepare_for_cpu_training(model: torch.nn.Module) -> torch.nn.Module:
    """fp32_depthwise, then the parameters in channels-last layout (feed it channels-last inputs)."""
    fp32_depthwise(model)
    return model.to(memory_format=torch.channels_last)
