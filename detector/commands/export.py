"""Export a detector to ONNX: ``detector export CONFIG --ckpt CKPT --out model.onnx``.

``[--imgsz 640 | --imgsz 384 640] [--dynamic-batch] [--nms] [--opset 17]``. CONFIG gives the
model (our checkpoints carry their own config: CONFIG may then be omitted, or replace it); the
Conv+BN-fused model is exported with box decoding in the graph, and with ``--nms`` with
class-aware NMS (score threshold ``--conf``, ``--iou``, ``--max-det`` fixed in the file). The
preprocessing conventions (BGR, 0..255, top-left letterbox on 114), input size and class
names are written into the model's metadata; the file is checked with onnx.checker.
``--equalize`` applies cross-layer equalisation with bias absorption to the ReLU conv pairs
first (``detector.compress.equalize``; same float outputs, INT8-friendlier weights);
``--equalize-silu`` includes SiLU pairs, which changes the outputs.
"""

from __future__ import annotations

import argparse

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.compress.equalize import cross_layer_equalize
from detector.config_sections import parse_config
from detector.export import export_onnx
from detector.inference import load_detector


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", help="model config (optional for our own checkpoints)")
    parser.add_argument("--ckpt", required=True, help="checkpoint (ours, or official YOLOX with CONFIG)")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--imgsz", type=int, nargs="+", help="input: size, or height width (default: the config's)")
    parser.add_argument("--dynamic-batch", action="store_true", help="batch size chosen at run time")
    parser.add_argument("--nms", action="store_true", help="class-aware NMS in the graph")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold of the in-graph NMS")
    parser.add_argument("--iou", type=float, default=0.65, help="IoU threshold of the in-graph NMS")
    parser.add_argument("--max-det", type=int, default=100, help="detections per image of the in-graph NMS")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--equalize", action="store_true", help="cross-layer equalisation of ReLU pairs (for INT8)")
    parser.add_argument("--equalize-silu", action="store_true", help="also equalise SiLU pairs (changes outputs)")
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        model, ckpt, cfg = load_detector(args.ckpt, load_config(args.config, args.set) if args.config else None)
        metadata = {}
        if args.equalize or args.equalize_silu:
            model.eval()
            activations = ("relu", "lrelu", "identity", *(("silu",) if args.equalize_silu else ()))
            report = cross_layer_equalize(model, activations)
            metadata["equalization"] = f"{report.pairs} conv pairs ({', '.join(activations)}), bias absorbed"
            print(f"equalised {report.pairs} conv pairs ({report.skipped} skipped: other activations), bias absorbed "
                  f"in {report.absorbed_channels} channels; channel range spread {report.spread_before:.1f} -> "
                  f"{report.spread_after:.1f}")  # fmt: skip
        imgsz = tuple((args.imgsz * 2)[:2]) if args.imgsz else parse_config(cfg).data.imgsz
        path = export_onnx(
            model, args.out, imgsz=imgsz, dynamic_batch=args.dynamic_batch, nms=args.nms, opset=args.opset,
            conf_threshold=args.conf, iou_threshold=args.iou, max_det=args.max_det,
            class_names=ckpt.get("class_names"), extra_metadata=metadata,
        )  # fmt: skip
        print(f"wrote {path} (input {imgsz}, {'NMS in the graph' if args.nms else 'decoded predictions'})")
        return 0

    return run_tool(run, debug=args.debug)
