"""Score MOTChallenge tracker results: ``detector eval-mot RESULTS GT [--iou 0.5] [--out metrics.json]``.

RESULTS and GT are MOTChallenge text files of one sequence (``frame,id,x,y,w,h,score,...``;
gt rows with flag 0 in column 7 are ignored). Prints MOTA, IDF1, HOTA (with TrackEval), ID
switches and the other MOT metrics as a markdown table; --out also writes them as JSON.
"""

from __future__ import annotations

import argparse

from detector.cli import run_tool
from detector.engine.evaluator import write_metrics_json
from detector.tracking.metrics import evaluate_mot, format_mot_table
from detector.tracking.mot_io import read_mot


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", help="tracker results, MOTChallenge text file")
    parser.add_argument("gt", help="ground truth, MOTChallenge gt.txt")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU a match needs (default 0.5)")
    parser.add_argument("--out", help="write the metrics JSON here")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        if not 0.0 < args.iou <= 1.0:
            raise ValueError(f"--iou: expected a value in (0, 1], got {args.iou}")
        results = read_mot(args.results, what="results")
        gt = read_mot(args.gt, what="gt")
        metrics = evaluate_mot(gt, results, iou_threshold=args.iou)
        print(format_mot_table(metrics))
        if args.out:
            write_metrics_json(metrics, args.out)
            print(f"metrics: {args.out}")
        return 0

    return run_tool(run, args.debug)
