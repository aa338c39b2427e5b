"""INT8-quantize an exported ONNX detector: ``detector quantize MODEL.onnx CONFIG --out MODEL_int8.onnx``.

``[--n 100] [--method minmax|entropy|percentile] [--sensitivity] [--keep-float K]
[--int8-box-predictions] [--weight-bits 8|7] [--set k=v ...]``.
Calibrates on the first ``--n`` images of the config's training set (``data.train``), letterboxed
as the model expects, and writes a static INT8 model in QDQ format with ONNX Runtime's
quantization tools. ``--sensitivity`` first quantises each conv alone and prints the SQNR of the
head's raw outputs against the float model on the next ``--eval-images`` training images (most
sensitive first); ``--keep-float K`` leaves the K most sensitive convs in float. The head's
box/objectness prediction convs stay in float unless ``--int8-box-predictions``. ``--weight-bits 7``
(ONNX Runtime's ``reduce_range``) keeps weights within +-64, for x86 CPUs without VNNI: their INT8
convolution adds pairs of products in 16 bits, which 8-bit weights can overflow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config_sections import parse_config
from detector.errors import ConfigError
from detector.export.quantize import LayerSensitivity, int8_convolution_overflows, layer_sensitivity, quantize_int8
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
    parser.add_argument("--sensitivity", action="store_true", help="print each conv's sensitivity to INT8")
    parser.add_argument("--keep-float", type=int, default=0, metavar="K", help="keep the K most sensitive convs float")
    parser.add_argument("--eval-images", type=int, default=8, help="images the sensitivity is scored on (8)")
    parser.add_argument("--int8-box-predictions", action="store_true",
                        help="quantise the box/objectness prediction convs too (default: kept float)")  # fmt: skip
    parser.add_argument("--weight-bits", type=int, default=8, choices=(8, 7),
                        help="7: weights within +-64, exact on x86 CPUs without VNNI (default 8)")  # fmt: skip
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
        keep: list[str] = []
        if args.sensitivity or args.keep_float:
            if args.keep_float < 0:
                raise ValueError(f"--keep-float: expected a count of layers, got {args.keep_float}")
            calibration = [dataset.load_sample(i)["image"] for i in range(count)]
            extra = range(count, min(count + args.eval_images, len(dataset)))
            evaluation = [dataset.load_sample(i)["image"] for i in extra] or calibration[: args.eval_images]
            report = layer_sensitivity(args.model, calibration, evaluation, args.method, progress=True,
                                       weight_bits=args.weight_bits)  # fmt: skip
            keep = [r.node for r in report[: args.keep_float]]
            print(format_sensitivity(report, args.keep_float))
            images = iter(calibration)
        else:
            images = (dataset.load_sample(i)["image"] for i in range(count))
        path = quantize_int8(args.model, args.out, images, method=args.method, keep_float=keep,
                             float_box_predictions=not args.int8_box_predictions,
                             weight_bits=args.weight_bits)  # fmt: skip
        kept = f", {len(keep)} most sensitive convs in float" if keep else ""
        print(f"wrote {path} (INT8 QDQ, calibrated on {count} images of data.train{kept})")
        if args.weight_bits == 8 and int8_convolution_overflows():
            print(
                "note: this CPU has no VNNI: ONNX Runtime's INT8 convolutions can saturate on 8-bit weights here, "
                "so outputs differ a little from other CPUs'; quantise with --weight-bits 7 to avoid it."
            )
        return 0

    return run_tool(run, debug=args.debug)


def format_sensitivity(report: list[LayerSensitivity], keep: int, show: int = 10) -> str:
    """The most sensitive convs as a markdown table (those kept in float marked)."""
    lines = ["| rank | conv (ONNX node) | head outputs SQNR dB |", "|---:|---|---:|"]
    for rank, row in enumerate(report[: max(show, keep)], 1):
        mark = " (kept float)" if rank <= keep else ""
        lines.append(f"| {rank} | {row.node}{mark} | {row.sqnr_db:.1f} |")
    return "\n".join([*lines, f"({len(report)} convs; each quantised alone)"])
