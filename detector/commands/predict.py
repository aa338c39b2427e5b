"""Detect objects in images: ``detector predict IMAGES... --ckpt CKPT [--out DIR]``.

IMAGES are image files or folders of them. Writes DIR/<name>.png with the boxes drawn and
DIR/detections.json (per image: file, boxes xyxy in image pixels, scores, labels, class names).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

from detector import load_config
from detector.cli import run_tool
from detector.inference import OnnxPredictor, Predictor
from detector.utils.fileio import IMAGE_SUFFIXES, atomic_write_text
from detector.utils.visualize import draw_detections


def list_images(sources: list[str]) -> list[Path]:
    """Image files named directly or found (sorted) in the named folders."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            files.extend(sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif source.is_file():
            files.append(source)
        else:
            raise FileNotFoundError(f"{source}: no such image file or folder")
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(sources)}")
    return files


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", help="image files or folders")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--ckpt", help="checkpoint (ours, or official YOLOX with --config)")
    what.add_argument("--onnx", help="ONNX model from detector export, run with ONNX Runtime")
    parser.add_argument("--config", help="config giving the model of an official YOLOX checkpoint")
    parser.add_argument("--out", default="runs/predict", help="output folder (default runs/predict)")
    parser.add_argument("--imgsz", type=int, nargs="+", help="network input: size, or height width")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.65, help="NMS IoU threshold (default 0.65)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        files = list_images(args.images)
        cfg = load_config(args.config) if args.config else None
        kwargs = dict(conf_threshold=args.conf, iou_threshold=args.iou)
        if args.imgsz:
            kwargs["imgsz"] = tuple((args.imgsz * 2)[:2])
        if args.onnx:
            kwargs.pop("imgsz", None)  # the exported input size
            predictor = OnnxPredictor(args.onnx, **kwargs)
        else:
            predictor = Predictor.from_checkpoint(args.ckpt, cfg, device=args.device, **kwargs)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        records = []
        for path in files:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                print(f"warning: {path}: not a readable image, skipped", file=sys.stderr)
                continue
            det = predictor(image)[0].to("cpu")
            names = predictor.class_names
            drawn = draw_detections(image, det.boxes.numpy(), det.labels.numpy(), det.scores.numpy(), names)
            cv2.imwrite(str(out / f"{path.stem}.png"), drawn)
            records.append(
                {
                    "file": str(path),
                    "boxes_xyxy": [[round(v, 2) for v in box] for box in det.boxes.tolist()],
                    "scores": [round(v, 4) for v in det.scores.tolist()],
                    "labels": det.labels.tolist(),
                    "names": [names[i] if names else str(i) for i in det.labels.tolist()],
                }
            )
            print(f"{path}: {len(det)} detections")
        atomic_write_text(out / "detections.json", json.dumps(records, indent=1))
        print(f"wrote {len(records)} images and detections.json to {out}")
        return 0

    return run_tool(run, args.debug)
