"""The Markdown table of tasks/bench/run.sh, from the JSON lines it collects.

  python3 tasks/bench/table.py meta --command CMD --rounds R --warmup W   one {"meta": {...}} line: machine,
                                                                          date, versions, the command
  python3 tasks/bench/table.py render RESULTS.jsonl                       the Markdown block, on stdout
  python3 tasks/bench/table.py splice BENCHMARKS.md BLOCK.md              puts BLOCK.md between the markers
                                                                          (atomically: a temp file, then rename)

RESULTS.jsonl holds the meta line and one line per call:
  {"workload": "a", "model", "size", "engine": "fp32" | "bf16" | "torch" | "onnx", "round", "runs",
   "result": {"median_ms", "peak_rss_mb", ...}}        (or "error" instead of "result")
Each cell is the median over rounds of the calls' median_ms (and of their peak_rss_mb).
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
HEADING = "## Yardsticks (issue 5)"

# workload id -> what it is (the config and size come from the results)
WORKLOADS = {
    "a": "UniFormer-S classifier, 224×224",
    "b": "UniFormer-S backbone, global, 512×512",
    "c": "UniFormer-S backbone, hybrid w14, 800×1216",
    "d": "UniFormer-B backbone, global, 512×512",
    "e": "UPerNet UniFormer-S, global, 512×512",
    "f": "Mask R-CNN UniFormer-S h14, 1333×800 padded to 1344×800",
}
# Workloads whose GFLOP cell would cover the backbone only: none since `uniformer bench` counts the ops of the
# whole network as they run (heads, and as many proposals as the input gives)
HEADS = set()  # `uniformer bench` counts the whole network (heads included) since it counts the ops as they run
ENGINES = ("fp32", "bf16", "torch", "onnx")
DASH = "—"


# ----------------------------------------------------------------------------------------------
# meta

def _run(cmd, timeout=120):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(python, dist):
    """The installed version of a distribution in that interpreter's environment, or None."""
    if python != sys.executable and not os.path.exists(python):
        return None
    out = _run([python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"]).strip()
    return out or None


def meta(a):
    lscpu = _run(["lscpu"])
    field = lambda name: (re.search(rf"^{re.escape(name)}:\s*(.+)$", lscpu, re.M) or [None, None])[1]  # noqa: E731
    cores = None
    if field("Core(s) per socket") and field("Socket(s)"):
        cores = int(field("Core(s) per socket")) * int(field("Socket(s)"))
    flags = (field("Flags") or "").split()
    swift = _run(["swift", "--version"]).strip().splitlines()
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference")
    m = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": field("Model name") or platform.processor(),
        "cores": cores,
        "cpus": field("CPU(s)"),
        "nproc": _run(["nproc"]).strip(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "swift": swift[0] if swift else None,
        "torch": _version(sys.executable, "torch"),
        "onnxruntime": _version(sys.executable, "onnxruntime"),
        "mmsegmentation": _version(os.path.join(here, ".venv", "bin", "python"), "mmsegmentation"),
        "mmdet": _version(os.path.join(here, ".venv-mmdet", "bin", "python"), "mmdet"),
        "commit": _run(["git", "rev-parse", "--short", "HEAD"]).strip() or None,
        "command": a.command,
        "rounds": a.rounds,
        "warmup": a.warmup,
    }
    print(json.dumps({"meta": m}))


# ----------------------------------------------------------------------------------------------
# render

def _ms(v):
    return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


def _ratio(v):
    return f"{v:.2f}×"


def render(a):
    info, calls = {}, []
    for line in open(a.results):
        line = line.strip()
        if not line:
            continue
        row = json.loads(line)
        if "meta" in row:
            info = row["meta"]
        else:
            calls.append(row)
    ids = [w for w in WORKLOADS if any(c["workload"] == w for c in calls)]
    rounds = info.get("rounds") or max((c["round"] for c in calls), default=0)
    med = statistics.median
    notes = []

    def cell(wid, engine):
        """(median ms, median peak RSS MB, the results) over the rounds that succeeded, or None."""
        ok = [c["result"] for c in calls if c["workload"] == wid and c["engine"] == engine and "result" in c]
        failed = [c for c in calls if c["workload"] == wid and c["engine"] == engine and "error" in c]
        if failed:
            notes.append(f"({wid}) {engine}: {len(failed)} of {len(failed) + len(ok)} calls failed "
                         f"({failed[0]['error']})")
        if not ok:
            return None
        return med(r["median_ms"] for r in ok), med(r["peak_rss_mb"] for r in ok), ok

    lines = [
        "| workload | GFLOP | this engine fp32 (peak RSS) | engine GFLOPS | this engine bf16 | "
        "PyTorch eager (peak RSS) | ONNX Runtime (peak RSS) | fp32 vs ORT | bf16 vs ORT | fp32 / PyTorch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs_per_call, torch_runtimes = [], {}
    for wid in ids:
        first = next(c for c in calls if c["workload"] == wid)
        runs_per_call.append(f"{wid} {first['runs']}")
        fp32, bf16, pt, ox = (cell(wid, e) for e in ENGINES)
        expected_onnx = any(c["workload"] == wid and c["engine"] == "onnx" for c in calls)
        failed = "failed"
        gflop = fp32[2][0].get("gflop") if fp32 else (bf16[2][0].get("gflop") if bf16 else None)
        row = [f"({wid}) {WORKLOADS[wid]} (`{first['model']}`, --size {first['size']})",
               (f"{gflop:.1f}" + (" (backbone)" if wid in HEADS else "")) if gflop is not None else DASH,
               f"{_ms(fp32[0])} ({fp32[1]:.0f} MB)" if fp32 else failed,
               f"{gflop / fp32[0] * 1e3:.0f}" if fp32 and gflop and wid not in HEADS else DASH,
               _ms(bf16[0]) if bf16 else failed,
               f"{_ms(pt[0])} ({pt[1]:.0f} MB)" if pt else failed,
               (f"{_ms(ox[0])} ({ox[1]:.0f} MB)" if ox else failed) if expected_onnx else DASH,
               _ratio(ox[0] / fp32[0]) if ox and fp32 else DASH,
               _ratio(ox[0] / bf16[0]) if ox and bf16 else DASH,
               _ratio(fp32[0] / pt[0]) if fp32 and pt else DASH]
        lines.append("| " + " | ".join(row) + " |")
        if pt:
            torch_runtimes[wid] = pt[2][0]
    lines.append("")

    text = (f"Batch 1, 2 threads, random weights, random input; each cell is the median over {rounds} round(s) of "
            f"each call's median ({', '.join(runs_per_call)} timed runs per call after {info.get('warmup', 1)} "
            "warm-up), the four runtimes interleaved round by round (this engine fp32, bf16, PyTorch, ONNX "
            "Runtime). GFLOP counts 2 per multiply-add of the whole network as it ran (`uniformer bench` counts "
            "its ops; Winograd convolutions count as the direct ones they replace, so UPerNet's GFLOPS can "
            "exceed the GEMM peak). *fp32 vs ORT* and *bf16 vs ORT* are "
            "ONNX Runtime's time / this engine's (above 1× this engine is faster); *fp32 / PyTorch* is this "
            "engine's time / PyTorch's (below 1× this engine is faster). PyTorch side: "
            "`tasks/bench/torch_bench.py` on the reference backbone (`tasks/reference/uniformer_ref.py`); "
            "ONNX exported at the benchmarked size (opset 17) and run in the same process, so its peak RSS "
            "includes torch and the export.")
    if "e" in torch_runtimes:
        mmseg = info.get("mmsegmentation")
        text += (f" (e): mmsegmentation{' ' + mmseg if mmseg else ''}'s `EncoderDecoder.encode_decode`; no "
                 "ONNX (adaptive pooling does not export).")
    if "f" in torch_runtimes:
        t = torch_runtimes["f"]
        text += (f" (f): {t.get('runtime', 'mmdet')}'s MaskRCNN, backbone to pasted masks, random weights "
                 f"calibrated to {t.get('proposals')} proposals and {t.get('detections')} detections, which "
                 "this engine runs too (`--weights`), so both do the same RPN and RoI work; no ONNX.")
    lines.append(text)
    lines.append("")
    bf = "AMX-BF16" if info.get("amx_bf16") else ("AVX512-BF16" if info.get("avx512_bf16") else "no bf16 instructions")
    versions = ", ".join(v for v in (info.get("swift"), info.get("torch") and f"torch {info['torch']}",
                                     info.get("onnxruntime") and f"onnxruntime {info['onnxruntime']}") if v)
    lines.append(f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores (nproc {info.get('nproc', '?')}, "
                 f"{bf}); {info.get('date', '?')}; {versions}; commit {info.get('commit', '?')}. "
                 f"Command: `{info.get('command', 'tasks/bench/run.sh')}`.")
    if notes:
        lines.append("")
        lines.append("Failures: " + "; ".join(notes) + ".")
    print("\n".join(lines))


# ----------------------------------------------------------------------------------------------
# splice

def splice(a):
    text = open(a.markdown, encoding="utf-8").read()
    block = open(a.block, encoding="utf-8").read().strip("\n")
    if START in text and END in text and text.index(START) < text.index(END):
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        new = f"{head}{START}\n{block}\n{END}{tail}"
    else:  # no markers yet: a section before the first "## " heading (or at the end)
        section = f"{HEADING}\n\n{START}\n{block}\n{END}\n\n"
        m = re.search(r"^## ", text, re.M)
        new = text[:m.start()] + section + text[m.start():] if m else text.rstrip("\n") + "\n\n" + section
    directory = os.path.dirname(os.path.abspath(a.markdown))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.chmod(tmp, os.stat(a.markdown).st_mode & 0o777)
        os.replace(tmp, a.markdown)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("meta")
    p.add_argument("--command", default="tasks/bench/run.sh")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--warmup", type=int, default=1)
    p.set_defaults(fn=meta)
    p = sub.add_parser("render")
    p.add_argument("results")
    p.set_defaults(fn=render)
    p = sub.add_parser("splice")
    p.add_argument("markdown")
    p.add_argument("block")
    p.set_defaults(fn=splice)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
