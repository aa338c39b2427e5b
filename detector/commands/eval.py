"""COCO evaluation (bbox mAP by pycocotools).

  detector eval CONFIG --ckpt CKPT                      the config's validation set
  detector eval CONFIG --ckpt CKPT --ann A.json --images DIR   any COCO-format set
  detector eval --ckpt CKPT --ann A.json --images DIR   (a checkpoint of this package)
  detector eval --ann A.json --results R.json           score an existing results file

CKPT is a checkpoint written by `detector train` or an official YOLOX checkpoint (then CONFIG
gives the architecture, e.g. ``_base_/models/yolox_s``). ``--plots DIR`` also writes the
precision-recall curves, the confusion matrix and the per-class AP bars there as PNGs.

``torchrun --nproc_per_node N -m detector eval ...`` (or ``tools/eval.py``) shards the images over N processes (one per
GPU, or CPU processes with gloo); rank 0 gathers the detections and prints the same numbers.
"""

from __future__ import annotations

import argparse

import torch

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config_sections import parse_config
from detector.data.coco import CocoDataset
from detector.data.transforms import EvalTransform
from detector.engine.distributed import init_distributed, shutdown_distributed
from detector.engine.evaluator import evaluate_coco, format_per_class_table, write_metrics_json
from detector.engine.trainer import resolve_device
from detector.engine.validate import evaluate_dataset
from detector.errors import ConfigError
from detector.inference import OnnxPredictor, Predictor
from detector.registry import DATASETS


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", help="YAML config (model and data.val)")
    parser.add_argument("--ckpt", help="checkpoint to evaluate")
    parser.add_argument("--onnx", help="ONNX model (detector export) to evaluate with ONNX Runtime instead")
    parser.add_argument("--ann", help="COCO annotation JSON (instead of the config's data.val)")
    parser.add_argument("--images", help="image folder of --ann")
    parser.add_argument("--results", help="an existing COCO results JSON to score (with --ann)")
    parser.add_argument("--imgsz", type=int, nargs="+", help="network input: size, or height width")
    parser.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001)")
    parser.add_argument("--iou", type=float, default=0.65, help="NMS IoU threshold (default 0.65)")
    parser.add_argument("--max-det", type=int, default=100, help="detections per image (default 100)")
    parser.add_argument("--batch", type=int, default=8, help="batch size")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--out", help="write the metrics JSON here")
    parser.add_argument(
        "--plots", metavar="DIR", help="write PR curves, the confusion matrix and per-class AP bars (PNGs) here"
    )
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.results:
            if not args.ann:
                raise ConfigError("--results needs --ann, the ground-truth annotation JSON")
            metrics = evaluate_coco(args.ann, args.results, verbose=True, plots_dir=args.plots)
            is_main = True
        else:
            dist = init_distributed(resolve_device(args.device))
            metrics = evaluate_checkpoint(args, dist.device, dist.distributed, dist.is_main)
            is_main = dist.is_main
        if is_main:
            print()
            print(format_per_class_table(metrics))
            if args.out:
                write_metrics_json(metrics, args.out)
                print(f"metrics: {args.out}")
            if args.plots:
                print(f"plots: {args.plots}")
        shutdown_distributed()
        return 0

    return run_tool(run, args.debug)


def evaluate_checkpoint(args: argparse.Namespace, device: torch.device, distributed: bool, is_main: bool) -> dict:
    if not args.ckpt and not args.onnx:
        raise ConfigError("--ckpt or --onnx is required (or --ann with --results to score a results file)")
    cfg = load_config(args.config, args.set) if args.config else None
    val_set = parse_config(cfg).data.val if cfg is not None else None
    kwargs = dict(conf_threshold=args.conf, iou_threshold=args.iou, max_det=args.max_det)
    if args.onnx:
        predictor = OnnxPredictor(args.onnx, **kwargs)  # its input size is the exported one
    else:
        if args.imgsz:
            kwargs["imgsz"] = tuple((args.imgsz * 2)[:2])
        predictor = Predictor.from_checkpoint(args.ckpt, cfg, device=device, **kwargs)
    transform = EvalTransform(predictor.imgsz)
    if args.ann or args.images:
        if not (args.ann and args.images):
            raise ConfigError("--ann and --images go together")
        dataset = CocoDataset(args.ann, args.images, transform=transform)
    elif val_set is not None:
        dataset = DATASETS.build(val_set, "data.val", transform=transform)
    else:
        raise ConfigError("no evaluation set: give a CONFIG with data.val, or --ann and --images")
    return evaluate_dataset(
        predictor,
        dataset,
        batch_size=args.batch,
        verbose=is_main,
        progress=is_main,
        distributed=distributed,
        plots_dir=args.plots,
    )
