"""Batch-1 latency of PyTorch eager against ONNX Runtime fp32 and INT8 (static QDQ, calibrated on
generated images) for YOLOX-Nano and YOLOX-S at 320 and 640 (80 classes, decoded outputs, no
NMS), with Ultralytics' YOLOv8n in ONNX Runtime as the baseline; then the mAP of fp32 against
INT8 on the synthetic validation set, through the user commands.

    python bench/export_speed.py [--runs 100] [--threads N] [--no-yolov8n]
                                 [--config configs/yolox_nano_shapes.yaml --ckpt CKPT] [--calib 100]

Latency: the variants of one model and size (and YOLOv8n at that size) run in turns, one call
each per round, so that the machine's load changes hit all of them alike; medians of ``--runs``
rounds after 10 warm-up calls. ONNX Runtime times ``session.run`` only, PyTorch the fused model
under ``torch.inference_mode``, both with the same number of threads. YOLOv8n (random weights:
latency does not depend on them) is exported by Ultralytics' own exporter in its own
environment, bench/.venv-yolov8, made on first use; it is never a project dependency.

Accuracy: ``tools/export.py``, ``tools/quantize.py`` (``--calib`` images of data.train) and
``tools/eval.py --onnx`` on the config's data.val, for the checkpoint ``--ckpt`` (default: the
newest ``best.pt`` of ``make demo``); skipped when there is none. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from detector import build_model, load_config
from detector.data.synthetic import CLASS_NAMES, render_image
from detector.export import export_onnx
from detector.export.quantize import quantize_int8

REPO = Path(__file__).resolve().parents[1]
YOLOV8_VENV = REPO / "bench" / ".venv-yolov8"
YOLOV8_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", "ultralytics==8.4.190", "onnx", "opencv-python-headless"]


def interleaved_medians_ms(calls: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median milliseconds of each call, timed in turns (one call of each per round)."""
    for call in calls.values():
        for _ in range(10):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def yolov8n_models(sizes: list[int], out: Path) -> dict[int, Path]:
    """YOLOv8n ONNX files by input size, exported in bench/.venv-yolov8 (made here if missing)."""
    python = YOLOV8_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(YOLOV8_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *YOLOV8_REQUIREMENTS], check=True)
    subprocess.run(
        [str(python), str(REPO / "bench" / "yolov8_export.py"), str(out), *map(str, sizes)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return {size: out / f"yolov8n_{size}.onnx" for size in sizes}


def latency_table(args: argparse.Namespace, tmp: Path) -> list[str]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = lambda path: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])  # noqa: E731
    baseline = {} if args.no_yolov8n else yolov8n_models(args.sizes, tmp)
    lines = [
        "| model | input | PyTorch eager ms | ORT fp32 ms | ORT INT8 ms | fp32 vs eager | INT8 vs fp32 |"
        " YOLOv8n ORT fp32 ms | YOLOv8n / this fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in args.models:
        cfg = load_config(REPO / "configs" / "_base_" / "models" / f"yolox_{name}.yaml")
        for size in args.sizes:
            model = build_model(cfg).eval().fuse()
            x = torch.rand(1, 3, size, size) * 255
            feed = {"images": x.numpy()}
            path = export_onnx(build_model(cfg), tmp / f"{name}{size}.onnx", imgsz=size)
            rng = np.random.default_rng(size)
            calibration = [render_image(size, size, rng, CLASS_NAMES, 8, 12, None)[0] for _ in range(16)]
            fp32, int8 = session(path), session(quantize_int8(path, tmp / f"{name}{size}_int8.onnx", calibration))
            calls = {
                "eager": lambda m=model, x=x: m(x),
                "fp32": lambda s=fp32, f=feed: s.run(None, f),
                "int8": lambda s=int8, f=feed: s.run(None, f),
            }
            if size in baseline:
                v8, v8_feed = session(baseline[size]), {"images": x.numpy() / 255.0}
                calls["yolov8n"] = lambda s=v8, f=v8_feed: s.run(None, f)
            with torch.inference_mode():
                ms = interleaved_medians_ms(calls, args.runs)
            v8_cells = f" {ms['yolov8n']:.1f} | {ms['yolov8n'] / ms['fp32']:.2f}x |" if "yolov8n" in ms else " - | - |"
            lines.append(
                f"| YOLOX-{name} | {size} | {ms['eager']:.1f} | {ms['fp32']:.1f} | {ms['int8']:.1f} |"
                f" {ms['eager'] / ms['fp32']:.2f}x | {ms['fp32'] / ms['int8']:.2f}x |{v8_cells}"
            )
            print(lines[-1], flush=True)
    return lines


def accuracy_table(args: argparse.Namespace, tmp: Path) -> list[str]:
    ckpt = args.ckpt or max(REPO.glob("runs/*/weights/best.pt"), key=lambda p: p.stat().st_mtime, default=None)
    if ckpt is None:
        return ["(no checkpoint: run `make demo` or give --ckpt for the fp32 / INT8 mAP)"]
    fp32, int8 = tmp / "trained.onnx", tmp / "trained_int8.onnx"
    tool = lambda name, *rest: subprocess.run([sys.executable, str(REPO / "tools" / name), *map(str, rest)], check=True)  # noqa: E731
    tool("export.py", args.config, "--ckpt", ckpt, "--out", fp32)
    tool("quantize.py", fp32, args.config, "--out", int8, "--n", args.calib)
    lines = [f"checkpoint {ckpt}, {args.config} data.val, INT8 calibrated on {args.calib} images of data.train", "",
             "| model | mAP50-95 | mAP50 |", "|---|---:|---:|"]  # fmt: skip
    for label, path in (("ONNX fp32", fp32), ("ONNX INT8", int8)):
        metrics_file = tmp / f"{path.stem}.json"
        tool("eval.py", args.config, "--onnx", path, "--out", metrics_file)
        metrics = json.loads(metrics_file.read_text())
        lines.append(f"| {label} | {metrics['mAP50_95']:.3f} | {metrics['mAP50']:.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", nargs="+", default=["nano", "s"], choices=["nano", "tiny", "s", "m", "l", "x"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 640])
    parser.add_argument("--no-yolov8n", action="store_true", help="skip the Ultralytics baseline")
    parser.add_argument("--config", default=str(REPO / "configs" / "yolox_nano_shapes.yaml"))
    parser.add_argument("--ckpt", type=Path, help="checkpoint for the mAP (default: newest runs/*/weights/best.pt)")
    parser.add_argument("--calib", type=int, default=100, help="INT8 calibration images")
    parser.add_argument("--no-accuracy", action="store_true", help="latency only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        latency = latency_table(args, Path(tmp))
        accuracy = [] if args.no_accuracy else accuracy_table(args, Path(tmp))
    print()
    print(f"CPU, {args.threads} threads, batch 1, medians of {args.runs} interleaved rounds")
    print()
    print("\n".join(latency))
    if accuracy:
        print()
        print("\n".join(accuracy))


if __name__ == "__main__":
    main()
