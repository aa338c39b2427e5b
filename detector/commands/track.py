"""Track people: ``detector track SOURCE (--ckpt CKPT | --onnx M | --dets det.txt | --motion) [--out DIR]``.

SOURCE is a video file, a folder of images, or a MOTChallenge sequence folder (``seqinfo.ini``,
``img1/``). Detections come from a checkpoint (``--ckpt``; ``--config`` for an official YOLOX
one), an exported ONNX model (``--onnx``), a MOTChallenge det file (``--dets``: public
detections; then the sequence's images are optional), or moving blobs of a static camera
(``--motion``, no weights needed). Writes DIR/results.txt (MOTChallenge: frame, id, x, y, w, h,
score, -1, -1, -1) and, when there are frames, DIR/annotated.mp4 (boxes, ids, trails). With
``--gt`` the MOT metrics are printed and written to DIR/metrics.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config_sections import parse_config
from detector.errors import ConfigError
from detector.registry import TRACKERS
from detector.tracking.metrics import evaluate_mot, format_mot_table
from detector.tracking.mot_io import read_mot
from detector.tracking.motion import MotionDetector
from detector.tracking.pipeline import detections_from_file, detections_from_predictor, track_sequence
from detector.tracking.sources import FrameSource
from detector.utils.fileio import atomic_write_text

#: The tracker chosen on simulated sequences (``bench/track_bench.py --parts select``): BoT-SORT's
#: motion on ByteTrack's association, lost tracks kept 60 frames (``detector/configs/_base_/trackers/default.yaml``).
DEFAULT_TRACKER = "_base_/trackers/default"


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="video file, image folder or MOTChallenge sequence folder")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--ckpt", help="detector checkpoint (ours, or official YOLOX with --config)")
    what.add_argument("--dets", help="MOTChallenge det file to track instead of running a detector")
    what.add_argument("--onnx", help="ONNX detector from detector export, run with ONNX Runtime")
    what.add_argument("--motion", action="store_true", help="moving blobs of a static camera (no weights needed)")
    parser.add_argument("--config", help="config giving the model of an official YOLOX checkpoint")
    parser.add_argument("--tracker", default=DEFAULT_TRACKER, help="tracker config (default: _base_/trackers/default)")
    add_overrides_argument(parser, "tracker config")
    parser.add_argument("--out", default="runs/track", help="output folder (default runs/track)")
    parser.add_argument("--gt", help="MOTChallenge ground truth: print and save the MOT metrics")
    parser.add_argument("--fps", type=float, help="frame rate of an image folder (default 30)")
    parser.add_argument("--classes", nargs="+", help="class labels to track, or 'all' (default: the config's)")
    parser.add_argument("--imgsz", type=int, nargs="+", help="detector input: size, or height width")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--no-video", action="store_true", help="do not write annotated.mp4")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        cfg = parse_config(load_config(args.tracker, args.set)).track
        if cfg.tracker is None:
            raise ConfigError(f"{args.tracker}: track.tracker: missing; expected a tracker config with a 'type'")
        classes = None if not args.classes or args.classes == ["all"] else [_label(c) for c in args.classes]
        gt = read_mot(args.gt, "ground truth") if args.gt else None  # fail early on a bad file
        source = FrameSource(args.source, fps=args.fps)
        # The lowest score the detections can have picks the tracker's settings (track.full_range):
        # a det file's, the detector's threshold; the motion detector scores blobs on its own scale.
        file_detections = detections_from_file(args.dets) if args.dets else None
        floor = file_detections.lowest_score if args.dets else None if args.motion else cfg.detector_conf
        tracker_cfg = cfg.tracker_settings(floor)
        if cfg.full_range_applies(floor):
            print(f"detections score from {floor:g}, under {cfg.full_range.below:g}: track.full_range.tracker applies")
        if args.classes:
            tracker_cfg["classes"] = classes
        tracker = TRACKERS.build(tracker_cfg, "track.tracker", frame_rate=source.frame_rate)
        class_names = None
        thresholds = {
            "conf_threshold": cfg.detector_conf,
            "iou_threshold": cfg.detector_iou,
        }
        if args.dets:
            detect = file_detections
        elif args.motion:
            detect = MotionDetector()
        elif args.onnx:
            from detector.inference import OnnxPredictor

            predictor = OnnxPredictor(args.onnx, **thresholds)
            detect, class_names = detections_from_predictor(predictor), predictor.class_names
        else:
            from detector.inference import Predictor  # torch is only needed with a detector

            kwargs = dict(thresholds)
            if args.imgsz:
                kwargs["imgsz"] = tuple((args.imgsz * 2)[:2])
            model_cfg = load_config(args.config) if args.config else None
            predictor = Predictor.from_checkpoint(args.ckpt, model_cfg, device=args.device, **kwargs)
            detect, class_names = detections_from_predictor(predictor), predictor.class_names
        done = track_sequence(
            source,
            detect,
            tracker,
            args.out,
            write_video=not args.no_video,
            class_names=class_names,
            progress=not args.no_progress,
            **cfg.sequence_settings(),
        )
        ids = len(set(done.rows[:, 1].astype(int).tolist())) if len(done.rows) else 0
        print(
            f"{done.frames} frames, {ids} tracks; tracker {done.frames / max(done.tracker_seconds, 1e-9):.0f} fps, "
            f"whole pipeline {done.frames / max(done.seconds, 1e-9):.1f} fps"
        )
        print(f"wrote {done.results_path}" + (f" and {done.video_path}" if done.video_path else ""))
        if gt is not None:
            metrics = evaluate_mot(gt, read_mot(done.results_path, "results"))
            print(format_mot_table(metrics))
            atomic_write_text(Path(args.out) / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        return 0

    return run_tool(run, debug=args.debug)


def _label(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"--classes: expected class labels (0, 1, ...) or 'all', got {text!r}")
    return int(text)
