"""The subcommands of the ``detector`` command: one module each, with ``main(argv, prog)``.

``detector SUB ARGS`` (``detector.cli.main``), ``python -m detector SUB ARGS`` and the
``tools/*.py`` shims all call the same ``main``.
"""

from __future__ import annotations

import argparse

#: Subcommand name -> (module in this package, one-line summary).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a detector from a config (torchrun for several processes)"),
    "eval": ("eval", "COCO mAP of a checkpoint or ONNX model; --plots DIR for PR curves, confusion matrix"),
    "predict": ("predict", "detect objects in images, write drawn PNGs and JSON"),
    "track": ("track", "track people in a video, image folder or MOT sequence"),
    "export": ("export", "export a checkpoint to ONNX (decoding, optional NMS)"),
    "align": ("align", "find the first tensor where an ONNX export departs from its PyTorch model"),
    "prune": ("prune", "remove channels of a trained model (coupled groups together) for fine-tuning"),
    "quantize": ("quantize", "INT8-quantize an exported ONNX model, calibrated on data.train"),
    "summary": ("summary", "parameters and GFLOPs of a config's model"),
    "check-data": ("check_data", "check a config's datasets: annotations, boxes, image files"),
    "browse": ("browse", "a PNG grid of training samples as the model receives them"),
    "eval-mot": ("eval_mot", "MOT metrics (MOTA, IDF1, HOTA) of tracker results against ground truth"),
    "make-synthetic": ("make_synthetic", "generate the synthetic shapes dataset (COCO format)"),
    "config": ("config", "print a config fully resolved, every default filled in; --describe: every key"),
}


def add_overrides_argument(parser: argparse.ArgumentParser, what: str = "config") -> None:
    """The ``--set KEY=VALUE ...`` option of every command that reads a config; repeatable
    (``--set A --set B C`` keeps all three, where argparse alone would keep only the last)."""
    parser.add_argument(
        "--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help=f"{what} overrides (repeatable)"
    )
