"""Times the PyTorch reference (tasks/reference/uniformer_ref.py) on the same workload as
`uniformer bench`: a config's backbone (or classifier), random weights, a random input, batch 1, fp32.

  python3 tasks/bench/torch_bench.py --model configs/uniformer-s.json --size 512x512 --threads 2 [--onnx]

Prints one JSON object {"median_ms", "min_ms", "max_ms", "peak_rss_mb", "runtime"} like `uniformer bench --json`.
With --onnx the model is exported (opset 17, at this size) and timed in ONNX Runtime instead.

A segmentation config (model.type EncoderDecoder) is built by mmsegmentation itself around the reference
backbone (tasks/reference/segmentation_fixtures.py), so run it with the venv's python:
  tasks/reference/.venv/bin/python tasks/bench/torch_bench.py --model configs/upernet-global-small.json --size 512x512
and `encode_decode` (backbone, head, resize to the input) is what is timed, as `uniformer bench` times inference.

A detection config (model.type MaskRCNN, CascadeRCNN or RetinaNet) takes its own path, `bench_detection` below:
mmdet 3.3's detector built around the reference backbone (tasks/reference/detection_fixtures.py), in that venv:
  tasks/reference/.venv-mmdet/bin/python tasks/bench/torch_bench.py --model configs/mask-rcnn-hybrid-small-1x.json \
      --size 1344x800 --runs 3 --warmup 1
and it prints {"stages": {"backbone", "neck", "rpn", "roi_heads" | "head": median ms}, "median_ms" (of the
per-run totals), "min_ms", "max_ms", "peak_rss_mb", "proposals", "detections", ...}.
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


# ----------------------------------------------------------------------------------------------
# detection configs: mmdet 3.3's MaskRCNN / CascadeRCNN / RetinaNet around the reference backbone, by stage

DETECTORS = ("MaskRCNN", "CascadeRCNN", "RetinaNet")


def detection_image_size(config: dict, w: int, h: int) -> tuple:
    """The image inside a padded input of w x h: the config's keep-ratio bounds (long, short edge),
    clipped to the input (1333x800 in 1344x800); the input itself when there are none."""
    scale = (config.get("data") or {}).get("scale")
    if not scale:
        return w, h
    long_, short = max(scale), min(scale)
    return (min(w, long_), min(h, short)) if w >= h else (min(w, short), min(h, long_))


@torch.no_grad()
def informative_detection_weights_(det, x, samples, gen, target: int) -> dict:
    """Random weights that make every stage do its full test-time work: randomize_ (BN statistics and
    affine, LN affine, N(0, 1/fan_in) convs and linears) plus the mask head's deconvolution; then, on
    this input, prediction layers rescaled: RPN objectness logits std 2 (centred), deltas std 0.25
    (so proposals are varied boxes, not clamped slivers: NMS leaves max_per_img of them); RoI class
    logits std 2 per class (centred), deltas std 1; a background-logit shift (bisection on the
    first stage's logits) so that about `target` (RoI, class) pairs pass score_thr; mask logits std 3.
    RetinaNet: class logits std 1.5 per class, deltas std 0.2, class bias shifted to ~`target` pairs."""
    import detection_fixtures as D
    from backbone_fixtures import randomize_
    randomize_(det, gen)
    for m in det.modules():
        if isinstance(m, torch.nn.ConvTranspose2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / m.weight.shape[0] ** 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    feats = det.neck(det.backbone(x))
    info = {}

    def bisect(count, apply, lo=-20.0, hi=20.0):  # count(b) falls as b grows
        for _ in range(40):
            mid = (lo + hi) / 2
            if count(mid) > target:
                lo = mid
            else:
                hi = mid
        apply((lo + hi) / 2)
        return round((lo + hi) / 2, 3)

    if not hasattr(det, "roi_head"):
        head = det.bbox_head
        head.retina_cls.bias.zero_()
        head.retina_reg.bias.zero_()
        cls, reg = head(feats)
        D._centre_scale_(head.retina_cls, D._channels_last(cls), 1.5, True, True)
        D._centre_scale_(head.retina_reg, D._channels_last(reg), 0.2, False)
        logits = D._channels_last(head(feats)[0])
        thr = head.test_cfg.get("score_thr", 0.05)
        info["class_bias_shift"] = bisect(lambda b: int((torch.sigmoid(logits - b) > thr).sum()),
                                          lambda b: head.retina_cls.bias.sub_(b))
        return info
    rpn = det.rpn_head
    rpn.rpn_cls.bias.zero_()
    rpn.rpn_reg.bias.zero_()
    cls, reg = rpn(feats)
    D._centre_scale_(rpn.rpn_cls, D._channels_last(cls), 2.0, True)
    D._centre_scale_(rpn.rpn_reg, D._channels_last(reg), 0.25, False)
    proposals = rpn.predict(feats, samples, rescale=False)
    rois = D.rois_of(proposals[0].bboxes)
    rh = det.roi_head
    cascade = isinstance(rh.bbox_head, torch.nn.ModuleList)
    heads = list(rh.bbox_head) if cascade else [rh.bbox_head]
    extractors = list(rh.bbox_roi_extractor) if cascade else [rh.bbox_roi_extractor]
    logits = []
    for head, ext in zip(heads, extractors):
        head.fc_cls.bias.zero_()
        head.fc_reg.bias.zero_()
        c, r = head(ext(feats[:ext.num_inputs], rois))
        D._centre_scale_(head.fc_cls, c, 2.0, True, True)
        D._centre_scale_(head.fc_reg, r, 1.0, False)
        logits.append(head(ext(feats[:ext.num_inputs], rois))[0])
    thr = rh.test_cfg.get("score_thr", 0.05)

    def count(b):
        probs = [torch.softmax(torch.cat([lg[:, :-1], lg[:, -1:] + b], 1), 1) for lg in logits]
        return int((sum(probs)[:, :-1] / len(probs) > thr).sum())

    def shift(b):
        for head in heads:
            head.fc_cls.bias[-1] += b
    info["background_bias_shift"] = bisect(count, shift)
    mheads = list(rh.mask_head) if cascade else [rh.mask_head]
    mexts = list(rh.mask_roi_extractor) if cascade else [rh.mask_roi_extractor]
    for head, ext in zip(mheads, mexts):
        head.conv_logits.bias.zero_()
        lg = head(ext(feats[:ext.num_inputs], rois[:100]))
        D._centre_scale_(head.conv_logits, lg.permute(0, 2, 3, 1).reshape(-1, lg.shape[1]), 3.0, True)
    return info


def bench_detection(a, config: dict, w: int, h: int) -> None:
    """Times mmdet 3.3's own detector (built by tasks/reference/detection_fixtures.build_detector from the
    config's model dict: SyncBN -> BN, RPN min_bbox_size 0 -> -1 as 2.11 filters) on a random input of
    w x h (already normalised and padded; the image fills --image of it, img_shape), batch 1, fp32,
    stage by stage, each stage's outputs feeding the next as TwoStageDetector.predict does:
      backbone   det.backbone(x)                        (the reference UniFormer)
      neck       det.neck(...)                          (FPN)
      rpn        det.rpn_head.predict(feats, rescale=False): head convs, per-level top-k, decoding, NMS
      roi_heads  det.roi_head.predict(feats, proposals, rescale=True): box head, class-wise NMS, mask
                 head on the detections, masks pasted and thresholded at the image size
      head       (RetinaNet) det.bbox_head.predict(feats, rescale=True)
    Prints one JSON object: median ms per stage, median/min/max of the per-run totals, peak RSS."""
    import detection_fixtures as D  # mmdet 3.3 with torchvision kernels behind mmcv's ops (the mmdet venv)
    from mmdet.structures import DetDataSample
    iw, ih = (int(v) for v in a.image.lower().split("x")) if a.image else detection_image_size(config, w, h)
    if iw > w or ih > h:
        sys.exit(f"--image {iw}x{ih} does not fit in --size {w}x{h}")
    det = D.build_detector(config["model"])
    if a.attention:
        D.set_stage3(det, a.attention)
    sample = DetDataSample()
    sample.set_metainfo(dict(img_shape=(ih, iw), ori_shape=(ih, iw), pad_shape=(h, w), batch_input_shape=(h, w),
                             scale_factor=(1.0, 1.0)))
    samples = [sample]
    torch.manual_seed(0)
    x = torch.randn(1, 3, h, w)
    x[:, :, ih:, :] = 0  # the padding is zeros
    x[:, :, :, iw:] = 0
    calibration = informative_detection_weights_(det, x, samples, torch.Generator().manual_seed(20250301),
                                                 a.target_detections)
    if a.save_weights:
        from collections import OrderedDict
        torch.save({"meta": {"env_info": "tasks/bench/torch_bench.py (random, calibrated)"},
                    "state_dict": OrderedDict((k, v.detach().clone()) for k, v in det.state_dict().items())},
                   a.save_weights)
    two_stage = hasattr(det, "roi_head")
    counts = {}

    def once():
        t = [time.perf_counter()]
        feats = det.backbone(x)
        t.append(time.perf_counter())
        feats = det.neck(feats)
        t.append(time.perf_counter())
        if two_stage:
            proposals = det.rpn_head.predict(feats, samples, rescale=False)
            t.append(time.perf_counter())
            results = det.roi_head.predict(feats, proposals, samples, rescale=True)
            counts["proposals"] = int(proposals[0].bboxes.shape[0])
        else:
            results = det.bbox_head.predict(feats, samples, rescale=True)
        t.append(time.perf_counter())
        counts["detections"] = int(results[0].bboxes.shape[0])
        return [(t1 - t0) * 1e3 for t0, t1 in zip(t, t[1:])]

    names = ["backbone", "neck", "rpn", "roi_heads"] if two_stage else ["backbone", "neck", "head"]
    with torch.inference_mode():
        for _ in range(a.warmup):
            once()
        runs = [once() for _ in range(a.runs)]

    def median(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    totals = sorted(sum(r) for r in runs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import mmdet
    print(json.dumps({"model": config["model"]["type"], "input": f"{w}x{h}", "image": f"{iw}x{ih}",
                      "stages": {n: round(median([r[i] for r in runs]), 3) for i, n in enumerate(names)},
                      "median_ms": round(median(totals), 3), "min_ms": round(totals[0], 3),
                      "max_ms": round(totals[-1], 3), "peak_rss_mb": round(rss, 1), **counts,
                      "runs": a.runs, "threads": a.threads, "calibration": calibration,
                      "runtime": f"torch {torch.__version__} + mmdet {mmdet.__version__}"}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", default="224x224")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attention", default=None)
    ap.add_argument("--onnx", action="store_true")
    ap.add_argument("--image", default=None, help="detection: image size WxH inside the padded input "
                    "(default: the config's scale clipped to --size, e.g. 1333x800 in 1344x800)")
    ap.add_argument("--save-weights", default=None,
                    help="detection: also write the calibrated random weights here (mmcv checkpoint layout, "
                         "float32), so that `uniformer bench --weights` can run the same network")
    ap.add_argument("--target-detections", type=int, default=150,
                    help="detection: calibrate the random class logits so that about this many (RoI, class) "
                         "pairs pass score_thr before NMS")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.model))["model"]
    w, h = (int(v) for v in a.size.lower().split("x"))
    if cfg["type"] in DETECTORS:  # a separate path: mmdet's detector, timed by stage
        return bench_detection(a, json.load(open(a.model)), w, h)
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
