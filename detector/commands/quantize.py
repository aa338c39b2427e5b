"""INT8-quantize an exported ONNX detector: ``detector quantize MODEL.onnx CONFIG --out MODEL_int8.onnx``.

``[--n 100] [--method minmax|entropy|percentile] [--set k=v ...]``. Calibrates on the first
``--n`` images of the config's training set (``data.train``), letterboxed as the model expects,
and writes a static INT8 model in QDQ format with ONNX Runtime's quantization tools.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config_sections import parse_config
from detector.errors import ConfigError
from detector.export.quantize import quantize_int8
from detector.registry import DATASETS


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="ONNX model from detector export (without --nms works best)")
    parser.add_argument("config", help="config whose data.train holds the calibration images")
    parser.add_argument("--out", required=True, help="INT8 ONNX file to write")
    parser.add_argument("--n", type=int, default=100, help="calibration images (default 100)")
    parser.add_argument("--method", default="minmax", help="calibration: minmax (default), entropy, percentile")
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.n < 1:
            raise ValueError(f"--n: expected at least 1 calibration image, got {args.n}")
        if not Path(args.model).is_file():
            raise FileNotFoundError(f"{args.model}: no such ONNX model (export one with detector export)")
        train_set = parse_config(load_config(args.config, args.set)).data.train
        if train_set is None:
            raise ConfigError(f"{args.config}: data.train: missing; the calibration images come from it")
        dataset = DATASETS.build(train_set, "data.train")
        count = min(args.n, len(dataset))
        images = (dataset.load_sample(i)["image"] for i in range(count))
        path = quantize_int8(args.model, args.out, images, method=args.method)
        print(f"wrote {path} (INT8 QDQ, calibrated on {count} images of data.train)")
        return 0

    return run_tool(run, debug=args.debug)
