"""Weight-loader fixtures for the Swift tests (Tests/UniFormerTests/WeightsTests.swift).

Run from anywhere:  python3 tasks/reference/weights_fixtures.py
Writes Tests/UniFormerTests/Fixtures/weights/ (seeded; every tensor value is reproducible, though
the legacy format records storage addresses and the safetensors package writes its metadata in
hash order, so those bytes differ between runs):

  plain_zip.pth        torch zip format, archive prefix = the file stem ("plain_zip/"), bare
                       OrderedDict "A": f32, f16 (incl. ±0, subnormal, max, ±inf, NaN), bf16, f64,
                       int64/32, uint8, bool, a 0-d tensor, an empty tensor, an nn.Parameter,
                       non-contiguous views (a transpose, a strided slice, a stride-0 expand, a
                       transposed f16) and two tensors sharing one storage at offsets
  legacy.pth           legacy (non-zip) format of {meta: {CLASSES: [list]}, state_dict: A}
  mmcv.pth             zip saved through a buffer (prefix "archive/"), mmcv layout {meta (CLASSES
                       tuple, PALETTE, a numpy scalar in hook_msgs), state_dict: B (a real
                       module's state_dict, with its _metadata, plus an int entry), optimizer, amp}
  model_wrapped.pth    UniFormer classification layout {model: B with "module." on every key,
                       optimizer, lr_scheduler, epoch, args (argparse.Namespace), scaler, max_accuracy}
  expected.safetensors the expected float32 values ("A.<key>", "B.<key>"), written with the
                       safetensors package; metadata "A.keys"/"B.keys" = the keys in file order
  bad files            truncated.pth, corrupt_directory.pth, compressed.pth (deflated entries),
                       unknown_global.pth (hand-built pickle calling os.system — never loaded),
                       pickled_module.pth (torch.save of a whole nn.Module),
                       bad_header_length.safetensors, offsets_out_of_range.safetensors,
                       truncated.safetensors
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "weights")
SEED = 20240612


def dict_a() -> OrderedDict:
    g = torch.Generator().manual_seed(SEED)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    sd = OrderedDict()
    sd["conv.weight"] = r(4, 3, 3, 3)
    sd["conv.bias"] = r(4)
    sd["half.weight"] = r(5, 6).half()
    sd["half.special"] = torch.tensor(
        [0.0, -0.0, 6e-8, 1e-5, 65504.0, float("inf"), float("-inf"), float("nan"), 1 / 3, -2.5],
        dtype=torch.float16)
    sd["half.transposed"] = r(4, 3).half().t()               # f16, stride (1, 3)
    sd["bf16.weight"] = r(3, 7).bfloat16()
    sd["transposed"] = r(6, 5).t()                           # [5, 6], stride (1, 5)
    flat = r(20)
    sd["shared.a"] = flat[2:8].view(2, 3)                     # one storage, offset 2
    sd["shared.b"] = flat[10:14]                              # ... and offset 10
    sd["strided"] = r(10)[1::3]                               # offset 1, stride 3
    sd["expanded"] = r(3)[None].expand(2, 3)                  # stride (0, 1)
    sd["f64"] = r(3).double()
    sd["int64"] = torch.tensor([-3, 0, 7, 2 ** 40])
    sd["int32"] = torch.tensor([1, -2], dtype=torch.int32)
    sd["uint8"] = torch.tensor([0, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["bn.num_batches_tracked"] = torch.tensor(12)
    sd["param"] = nn.Parameter(r(2))
    return sd


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)


def module_b() -> Tiny:
    torch.manual_seed(SEED + 1)
    m = Tiny()
    with torch.no_grad():  # informative BN statistics and affine
        m.bn.running_mean.normal_()
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.normal_()
        m.bn.bias.normal_()
        m.bn.num_batches_tracked.fill_(100)
    return m


def optimizer_state(m: nn.Module, kind: str) -> dict:
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) if kind == "sgd" \
        else torch.optim.AdamW(m.parameters(), lr=1e-3)
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt.step()
    m.load_state_dict(before)  # keep the weights the expected file records
    return opt.state_dict()


def save_zip_via_buffer(obj, path):
    """torch.save into a buffer: the archive prefix is then "archive/"."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def pickle_calling_os_system() -> bytes:
    """{'state_dict': {'w': os.system('echo pwned')}} as protocol-2 opcodes, built by hand."""
    def unicode(s):
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b
    return (b"\x80\x02" + b"}" + unicode("state_dict") + b"}" + unicode("w")
            + b"cos\nsystem\n" + unicode("echo pwned") + b"\x85" + b"R" + b"s" + b"s" + b".")


def write_zip(path, records, compression=zipfile.ZIP_STORED):
    """A zip with fixed timestamps, so that reruns give the same bytes."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=(2024, 6, 12, 0, 0, 0))
            info.compress_type = compression
            z.writestr(info, data)


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    import json
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)

    def out(name):
        return os.path.join(OUT, name)

    a = dict_a()
    torch.save(a, out("plain_zip.pth"))
    torch.save({"meta": {"CLASSES": ["road", "sky"]}, "state_dict": a}, out("legacy.pth"),
               _use_new_zipfile_serialization=False)

    m = module_b()
    b = m.state_dict()                 # OrderedDict with _metadata (pickled through BUILD)
    sgd = optimizer_state(m, "sgd")
    b_with_int = m.state_dict()
    b_with_int["_step"] = 7            # a non-tensor entry: skipped with a record
    save_zip_via_buffer({
        "meta": {"mmcv_version": "1.3.8", "time": "Mon Jun 10 12:00:00 2024",
                 "CLASSES": ("cat", "dog", "person"), "PALETTE": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                 "epoch": 3, "iter": 300,
                 "hook_msgs": {"last_ckpt": "work_dirs/epoch_3.pth", "best_score": np.float64(0.5)}},
        "state_dict": b_with_int,
        "optimizer": sgd,
        "amp": {"loss_scaler": {"scale": 512.0, "growth_interval": 2000}},
    }, out("mmcv.pth"))

    adamw = optimizer_state(m, "adamw")
    torch.save({
        "model": OrderedDict(("module." + k, v) for k, v in b.items()),
        "optimizer": adamw,
        "lr_scheduler": {"base_lrs": [0.001], "last_epoch": 5},
        "epoch": 5,
        "args": argparse.Namespace(model="uniformer_small", lr=1e-3, input_size=224, drop_path=0.1),
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 10},
        "max_accuracy": 83.4,
    }, out("model_wrapped.pth"))

    expected = {}
    for prefix, sd in (("A", a), ("B", b)):
        for k, v in sd.items():
            expected[f"{prefix}.{k}"] = v.detach().float().contiguous().clone()
    save_file(expected, out("expected.safetensors"), metadata={
        "A.keys": "\n".join(a.keys()), "B.keys": "\n".join(b.keys()),
        "generator": "tasks/reference/weights_fixtures.py", "torch": torch.__version__, "seed": str(SEED)})

    # ---- bad files ----
    good = open(out("plain_zip.pth"), "rb").read()
    open(out("truncated.pth"), "wb").write(good[: len(good) // 2])

    eocd = good.rindex(b"PK\x05\x06")
    directory = struct.unpack("<I", good[eocd + 16: eocd + 20])[0]
    damaged = bytearray(good)
    damaged[directory: directory + 4] = b"XXXX"   # first central directory header signature
    open(out("corrupt_directory.pth"), "wb").write(bytes(damaged))

    with zipfile.ZipFile(out("plain_zip.pth")) as src:
        write_zip(out("compressed.pth"), [(i.filename, src.read(i.filename)) for i in src.infolist()],
                  compression=zipfile.ZIP_DEFLATED)

    write_zip(out("unknown_global.pth"), [
        ("unknown_global/data.pkl", pickle_calling_os_system()),
        ("unknown_global/byteorder", b"little"),
        ("unknown_global/version", b"3\n"),
    ])
    torch.save(module_b(), out("pickled_module.pth"))

    tensor = struct.pack("<4f", 1, 2, 3, 4)
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    valid = safetensors_bytes(header, tensor)
    open(out("bad_header_length.safetensors"), "wb").write(struct.pack("<Q", 1 << 40) + valid[8:])
    header["b"]["data_offsets"] = [100, 108]
    open(out("offsets_out_of_range.safetensors"), "wb").write(safetensors_bytes(header, tensor))
    whole = open(out("expected.safetensors"), "rb").read()
    open(out("truncated.safetensors"), "wb").write(whole[:-10])

    total = sum(os.path.getsize(out(f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
