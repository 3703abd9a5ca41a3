"""Times the PyTorch reference (tasks/reference/uniformer_ref.py) on the same workload as
`uniformer bench`: a config's backbone (or classifier), random weights, a random input, batch 1, fp32.

  python3 tasks/bench/torch_bench.py --model configs/uniformer-s.json --size 512x512 --threads 2 [--onnx]

Prints one JSON object {"median_ms", "min_ms", "max_ms", "peak_rss_mb", "runtime"} like `uniformer bench --json`.
With --onnx the model is exported (opset 17, at this size) and timed in ONNX Runtime instead.

A segmentation config (model.type EncoderDecoder) is built by mmsegmentation itself around the reference
backbone (tasks/reference/segmentation_fixtures.py), so run it with the venv's python:
  tasks/reference/.venv/bin/python tasks/bench/torch_bench.py --model configs/upernet-global-small.json --size 512x512
and `encode_decode` (backbone, head, resize to the input) is what is timed, as `uniformer bench` times inference.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import uniformer_ref as R  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", default="224x224")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attention", default=None)
    ap.add_argument("--onnx", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.model))["model"]
    w, h = (int(v) for v in a.size.lower().split("x"))
    torch.manual_seed(0)
    x = torch.randn(1, 3, h, w)
    if cfg["type"] == "EncoderDecoder":
        import segmentation_fixtures as S  # mmseg, in the venv
        seg = S.build_segmentor(cfg, override=a.attention)
        metas = [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))]
        model = lambda t: seg.encode_decode(t, metas)  # noqa: E731
    else:
        model = R.build(cfg, attention=a.attention).eval()

    if a.onnx:
        import onnxruntime as ort
        path = os.path.join(tempfile.mkdtemp(), "model.onnx")
        with torch.inference_mode():
            torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x.numpy()}
        run = lambda: sess.run(None, feed)  # noqa: E731
        runtime = f"onnxruntime {ort.__version__}"
    else:
        def run():
            with torch.inference_mode():
                model(x)
        runtime = f"torch {torch.__version__}" + (" + mmseg" if cfg["type"] == "EncoderDecoder" else "")

    for _ in range(a.warmup):
        run()
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"median_ms": round(median, 3), "min_ms": round(times[0], 3), "max_ms": round(times[-1], 3),
                      "peak_rss_mb": round(rss, 1), "runtime": runtime}))


if __name__ == "__main__":
    main()
