"""Check a config's data sets before training: ``detector check-data CONFIG``.

``[--split train val] [--no-decode] [--set k=v ...]``. Runs the checks the datasets run when a
training starts (annotation schema, ids, box values, image files present and not truncated),
then decodes every image (unless ``--no-decode``) to find undecodable files and sizes that
differ from the annotations. Prints a table per split: each kind of problem, how many, and
the first places. Exit 0 when the sets are usable (problems left out and counted), 2 when
one is not (e.g. malformed JSON, or more than ``max_broken_fraction`` of its images broken).
"""

from __future__ import annotations

import argparse
from typing import Any

from tqdm import tqdm

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config_sections import parse_config
from detector.data.coco import record_broken
from detector.data.problems import NOTICES
from detector.errors import BrokenImageError, ConfigError
from detector.registry import DATASETS


def decode_all(dataset: Any, progress: bool = True) -> int:
    """Decode every image of ``dataset`` (a CocoDataset or YoloTxtDataset), counting the broken
    ones in ``dataset.problems`` (once each); returns how many failed."""
    failed = 0
    for index in tqdm(range(len(dataset)), desc="decoding", leave=False, disable=not progress):
        try:
            dataset._load_sample(index)
        except BrokenImageError as exc:
            record_broken(dataset, index, exc)
            failed += 1
    return failed


def report(split: str, dataset: Any, listed: int) -> list[str]:
    """The markdown table of one split's problems (``listed``: images the set names)."""
    problems = dataset.problems
    lines = [f"## data.{split}: {problems.source}", ""]
    lines.append(f"{listed} images listed, {len(problems.broken)} left out, {problems.total} problems losing data")
    if problems.counts:
        lines += ["", "| problem | count | first places |", "|---|---:|---|"]
        for kind, count in problems.counts.most_common():
            note = " (kept)" if kind in NOTICES else ""
            lines.append(f"| {kind}{note} | {count} | {', '.join(problems.examples.get(kind, []))} |")
    return lines


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="YAML config whose data.train / data.val to check")
    parser.add_argument("--split", nargs="+", default=["train", "val"], help="splits to check (default: train val)")
    parser.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        data = parse_config(load_config(args.config, args.set)).data
        splits = [s for s in args.split if getattr(data, s) is not None]
        if not splits:
            raise ConfigError(f"{args.config}: none of data.{', data.'.join(args.split)} is configured")
        for split in splits:
            dataset = DATASETS.build(getattr(data, split), f"data.{split}")
            listed = len(dataset) + len(dataset.problems.broken)
            if not args.no_decode:
                decode_all(dataset, progress=not args.no_progress)
                dataset.problems.check_share(listed, dataset.max_broken_fraction, f"data.{split}.max_broken_fraction")
            print("\n".join(report(split, dataset, listed)))
            print()
        return 0

    return run_tool(run, debug=args.debug)
