"""Batch-1 latency of PyTorch eager against ONNX Runtime fp32 and INT8 (static QDQ, calibrated on
generated images) for YOLOX-Nano and YOLOX-S at 320 and 640 (80 classes, decoded outputs, no
NMS), on this machine's CPU.

    python bench/export_speed.py [--runs 100] [--threads N]

Medians of ``--runs`` after 10 warm-up runs; ONNX Runtime times ``session.run`` only, PyTorch
the fused model under ``torch.inference_mode``, both with the same number of threads. Never
part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from detector import build_model, load_config
from detector.data.synthetic import CLASS_NAMES, render_image
from detector.export import export_onnx
from detector.export.quantize import quantize_int8

REPO = Path(__file__).resolve().parents[1]


def median_ms(fn, runs: int) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("nano", "s"):
            cfg = load_config(REPO / "configs" / "_base_" / "models" / f"yolox_{name}.yaml")
            for size in (320, 640):
                model = build_model(cfg).eval().fuse()
                x = torch.rand(1, 3, size, size) * 255
                with torch.inference_mode():
                    eager = median_ms(lambda m=model, x=x: m(x), args.runs)
                path = export_onnx(build_model(cfg), Path(tmp) / f"{name}{size}.onnx", imgsz=size)
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                feed = {"images": x.numpy().astype(np.float32)}
                fp32 = median_ms(lambda s=session, f=feed: s.run(None, f), args.runs)
                rng = np.random.default_rng(size)
                calibration = [render_image(size, size, rng, CLASS_NAMES, 8, 12, None)[0] for _ in range(16)]
                int8_path = quantize_int8(path, Path(tmp) / f"{name}{size}_int8.onnx", calibration)
                int8_session = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
                int8 = median_ms(lambda s=int8_session, f=feed: s.run(None, f), args.runs)
                rows.append((f"YOLOX-{name}", size, eager, fp32, int8))
    print(f"CPU, {args.threads} threads, batch 1, medians of {args.runs}")
    print()
    print("| model | input | PyTorch eager ms | ORT fp32 ms | ORT INT8 ms | fp32 vs eager | INT8 vs fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, size, eager, fp32, int8 in rows:
        print(f"| {name} | {size} | {eager:.1f} | {fp32:.1f} | {int8:.1f} | {eager / fp32:.2f}x | {fp32 / int8:.2f}x |")


if __name__ == "__main__":
    main()
