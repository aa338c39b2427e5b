"""Find where an ONNX export departs from PyTorch: ``detector align MODEL.onnx CONFIG --ckpt CKPT [IMAGE]``.

``[--tol T] [--show N]``. Runs one image (IMAGE letterboxed as the predictor does, or a
generated shapes image) through ONNX Runtime, with every intermediate tensor exposed, and through
the PyTorch model of CONFIG/CKPT, matches nodes to modules by their export scope, and prints the
tensors around the first one whose difference, relative to the PyTorch tensor's largest value,
exceeds ``--tol`` (default 1e-3 for fp32 graphs, 0.1 for INT8 QDQ graphs). It also checks the
preprocessing in the file's metadata and its input layout against the PyTorch predictor's.
Exit code 1 when a difference or a convention mismatch is found (0 otherwise).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import onnx

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config_sections import parse_config
from detector.data.synthetic import CLASS_NAMES, render_image
from detector.data.transforms import letterbox, to_hw
from detector.export.align import align, check_conventions, first_mismatch, format_alignment, is_quantized
from detector.inference import images_to_tensor, load_detector


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="the ONNX file (fp32 or INT8 QDQ, without --nms)")
    parser.add_argument("config", nargs="?", help="model config (optional for our own checkpoints)")
    parser.add_argument("--ckpt", required=True, help="the PyTorch weights the file was exported from")
    parser.add_argument("image", nargs="?", help="an image to compare on (default: a generated one)")
    parser.add_argument("--tol", type=float, help="relative difference that counts (1e-3 fp32, 0.1 INT8)")
    parser.add_argument("--show", type=int, default=12, help="rows printed (12)")
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_intermixed_args(argv)  # IMAGE may follow --ckpt

    def run() -> int:
        path = Path(args.model)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX model")
        model, _, cfg = load_detector(args.ckpt, load_config(args.config, args.set) if args.config else None)
        h, w = to_hw(parse_config(cfg).data.imgsz)
        graph = onnx.load(str(path))
        metadata = {p.key: p.value for p in graph.metadata_props}
        dims = [d.dim_value or d.dim_param or None for d in graph.graph.input[0].type.tensor_type.shape.dim]
        problems = check_conventions(metadata, dims, (h, w))
        if all(isinstance(d, int) for d in dims[2:4]) and len(dims) == 4:
            h, w = dims[2], dims[3]  # compare at the file's own size
        if args.image:
            image = cv2.imread(args.image, cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{args.image}: not a readable image")
        else:
            image = render_image(h, w, np.random.default_rng(0), CLASS_NAMES)[0]
        canvas, _ = letterbox(image, (h, w))
        rows, unmatched = align(path, model, images_to_tensor([canvas], "cpu"))
        tolerance = args.tol if args.tol is not None else (0.1 if is_quantized(path) else 1e-3)
        mismatch = first_mismatch(rows, tolerance)
        print(format_alignment(rows, mismatch, tolerance, args.show))
        if unmatched:
            print(f"not compared ({len(unmatched)}): {', '.join(unmatched[:8])}{' ...' if len(unmatched) > 8 else ''}")
        for problem in problems:
            print(f"convention: {problem}")
        print("preprocessing and input layout agree with the PyTorch predictor" if not problems else "")
        return 1 if mismatch is not None or problems else 0

    return run_tool(run, args.debug)
