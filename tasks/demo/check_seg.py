"""Check the bundled demo segmentation model: PyTorch (mmseg) vs the Swift tool vs ground truth.

Runs in the mmsegmentation venv, from the repository root:

    swift build -c release
    tasks/reference/.venv/bin/python tasks/demo/check_seg.py [--fixtures DIR] [--tool PATH]

For the held-out scenes in --fixtures (default Tests/UniFormerTests/Fixtures/demo, made by
tasks/demo/shapes.py --split test):
  * PyTorch: mmseg's EncoderDecoder + UPerHead around tasks/reference/uniformer_ref.py, built from
    configs/demo-shapes-seg.json's model dict (train_seg.MODEL) and loaded strictly from the exported
    fp16 safetensors, computed in float32. Test pipeline as mmseg 0.13: cv2.imread (BGR) ->
    mmcv.imrescale keep-ratio to the config's `scale` (cv2 INTER_LINEAR) -> mmcv.imnormalize (to_rgb) -> whole
    image -> logits resized bilinear to the network input, then to the image size -> argmax.
  * Swift: `uniformer segment <images> --model configs/demo-shapes-seg.json --weights <file> -o DIR
    --logits DIR` in one call (default tool: `swift run -c release uniformer`; --tool PATH to call a
    built binary instead), masks read back as indexed PNGs.
Prints, per image and in total: the Swift/PyTorch label agreement, the largest logit difference,
and the mIoU (per class IoU over all pixels of all images, mean over the 6 classes incl.
background) of each against the ground-truth labels. Exit status 1 if agreement < 99.9 %.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import train_seg as T  # noqa: E402  (the model definition, pipeline and metrics)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = T.ROOT


@torch.no_grad()
def torch_logits(model, path: str, hw) -> torch.Tensor:
    inp = T.test_input(path)
    logits = model.decode_head(model.extract_feat(inp))
    logits = F.interpolate(logits, size=inp.shape[2:], mode="bilinear", align_corners=False)
    return F.interpolate(logits, size=tuple(hw), mode="bilinear", align_corners=False)[0]   # [K, H, W]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "Tests", "UniFormerTests", "Fixtures", "demo"))
    ap.add_argument("--config", default=T.CONFIG_OUT)
    ap.add_argument("--weights", default=T.WEIGHTS_OUT)
    ap.add_argument("--tool", help="path of a built `uniformer` binary (default: swift run -c release uniformer)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TRAIN_THREADS", "2")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    import json
    with open(a.config) as f:  # the test pipeline's scale is the config's, whatever the training default
        T.DATA["scale"] = json.load(f)["data"]["scale"]

    items = T.load_split(a.fixtures)
    images = [it[0] for it in items]
    model = T.model_from_weights(a.weights)

    out = tempfile.mkdtemp(prefix="check_seg_")
    masks, logits_dir = os.path.join(out, "masks"), os.path.join(out, "logits")
    os.makedirs(masks)
    os.makedirs(logits_dir)
    tool = [a.tool] if a.tool else ["swift", "run", "-c", "release", "uniformer"]
    cmd = tool + ["segment", *images, "--model", a.config, "--weights", a.weights, "-o", masks,
                  "--logits", logits_dir]
    print("$", " ".join(shlex.quote(os.path.relpath(c, ROOT) if os.path.isabs(c) else c) for c in cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    t_swift = time.time() - t0

    k = len(T.CLASSES)
    conf_t, conf_s = np.zeros((k, k), np.int64), np.zeros((k, k), np.int64)
    agree_total = pixels = 0
    worst_logit = 0.0
    t0 = time.time()
    for img_path, lab_path, w, h in items:
        name = os.path.splitext(os.path.basename(img_path))[0]
        gt = np.array(Image.open(lab_path))
        lt = torch_logits(model, img_path, (h, w))
        pt = lt.argmax(0).numpy().astype(np.uint8)
        with Image.open(os.path.join(masks, name + ".png")) as im:
            mode = im.mode
            ps = np.array(im)
        assert mode == "P" and ps.shape == gt.shape, (mode, ps.shape, gt.shape)
        diff = float("nan")
        lpath = os.path.join(logits_dir, name + ".safetensors")
        if os.path.exists(lpath):
            ls = T.load_safetensors(lpath)["logits"][0]
            diff = float((ls - lt).abs().max())
            worst_logit = max(worst_logit, diff)
        agree = int((pt == ps).sum())
        agree_total += agree
        pixels += gt.size
        conf_t += T.confusion(pt, gt)
        conf_s += T.confusion(ps, gt)
        print(f"{name} {w}x{h}: agreement {100 * agree / gt.size:.3f} % ({gt.size - agree} px differ), "
              f"max |logit diff| {diff:.2e}, pixel acc torch {np.mean(pt == gt):.4f} swift {np.mean(ps == gt):.4f}")
    t_torch = time.time() - t0
    iou_t, miou_t, acc_t = T.iou_table(conf_t)
    iou_s, miou_s, acc_s = T.iou_table(conf_s)
    agreement = agree_total / pixels
    print(f"\n{len(items)} images, {pixels} pixels; Swift {t_swift:.1f} s (incl. build check and start-up), "
          f"PyTorch {t_torch:.1f} s")
    print(f"Swift/PyTorch label agreement: {100 * agreement:.4f} % ({pixels - agree_total} px differ); "
          f"max |logit diff| {worst_logit:.2e}")
    print(f"PyTorch vs ground truth: mIoU {miou_t:.4f}, pixel acc {acc_t:.4f}, IoU "
          + " ".join(f"{c}={v:.3f}" for c, v in zip(T.CLASSES, iou_t)))
    print(f"Swift   vs ground truth: mIoU {miou_s:.4f}, pixel acc {acc_s:.4f}, IoU "
          + " ".join(f"{c}={v:.3f}" for c, v in zip(T.CLASSES, iou_s)))
    sys.exit(0 if agreement >= 0.999 else 1)


if __name__ == "__main__":
    main()
