"""Prune a trained detector's channels: ``detector prune CONFIG --ckpt CKPT --out PRUNED.pt``.

``(--ratio R | --flops F) [--method l2|bn|taylor] [--global] [--round-to 16] [--min-channels 8]``.
Removes whole output channels, coupled channels together (residual adds, concatenations,
depthwise/pointwise pairs, the neck's lateral convs); the head's prediction convs keep their
outputs. ``--ratio``: the fraction of each group's channels removed (of all channels with
``--global``); ``--flops F``: the ratio whose pruned model comes closest to F of the FLOPs.
``--method taylor`` scores channels by the training loss's gradients on ``--batches`` batches
of data.train (no augmentation); ``l2`` and ``bn`` need no data.

Writes PRUNED.pt (the slim weights and a config whose ``model.channel_layout`` rebuilds the slim
network; loadable with weights_only) and PRUNED.yaml beside it (that config with
``train.init_weights: PRUNED.pt``), so that fine-tuning is::

    detector train PRUNED.yaml --set train.epochs=100 [--set distill.teacher.ckpt=CKPT]

``detector export``, ``eval``, ``predict`` and ``summary`` take PRUNED.pt (or PRUNED.yaml) as they
take any checkpoint (config).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import torch

from detector import dump_config, load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.compress.layout import read_channel_layout
from detector.compress.prune import PRUNING_CRITERIA, accumulate_loss_gradients, prune_channels, ratio_for_flops
from detector.config_sections import parse_config
from detector.data.loader import build_dataloader
from detector.data.mix_dataset import build_train_dataset
from detector.inference import load_detector
from detector.models.detector import build_model
from detector.utils.checkpoint import save_checkpoint

#: Checkpoint entries carried over from the source (what inference reads besides the weights).
CARRIED = ("class_names", "cat_ids")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="the trained model's config (YAML or packaged name)")
    parser.add_argument("--ckpt", required=True, help="the trained weights (best.pt, or an official YOLOX .pth)")
    parser.add_argument("--out", required=True, help="the pruned checkpoint to write (PRUNED.pt)")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--ratio", type=float, help="fraction of the channels removed, in [0, 1)")
    amount.add_argument("--flops", type=float, help="keep about this fraction of the FLOPs, in (0, 1)")
    parser.add_argument("--method", default="l2", choices=sorted(PRUNING_CRITERIA), help="channel score (l2)")
    parser.add_argument("--global", dest="global_ratio", action="store_true", help="rank channels over all layers")
    parser.add_argument("--round-to", type=int, default=16, help="kept channels rounded up to a multiple (16)")
    parser.add_argument("--min-channels", type=int, default=8, help="fewest channels a layer keeps (8)")
    parser.add_argument("--batches", type=int, default=8, help="taylor: batches of data.train scored (8)")
    parser.add_argument("--imgsz", type=int, default=320, help="input size the FLOPs are counted at (320)")
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.round_to < 1 or args.min_channels < 1:
            raise ValueError("--round-to and --min-channels: expected positive channel counts")
        cfg = load_config(args.config, args.set)
        model, source, _ = load_detector(args.ckpt, cfg)
        if PRUNING_CRITERIA[args.method][1]:
            accumulate_loss_gradients(model, _scoring_batches(cfg, args.batches))
        options = dict(
            criterion=args.method,
            global_ratio=args.global_ratio,
            round_to=args.round_to,
            min_channels=args.min_channels,
            imgsz=args.imgsz,
        )
        ratio = args.ratio if args.ratio is not None else ratio_for_flops(model, args.flops, **options)[0]
        result = prune_channels(model, ratio, **options)
        pruned_cfg = _pruned_config(cfg, model)
        out = Path(args.out)
        state = {key: source[key] for key in CARRIED if key in source}
        state.update(
            model=model.state_dict(),
            config=pruned_cfg,
            pruning={
                "source": str(args.ckpt),
                "ratio": ratio,
                **options,
                "params": [result.params_before, result.params_after],
                "flops": [result.flops_before, result.flops_after],
            },
        )
        save_checkpoint(state, out)
        train_cfg = copy.deepcopy(pruned_cfg)
        train_cfg["train"]["init_weights"] = str(out.resolve())
        train_cfg["train"]["name"] = out.stem
        config_path = dump_config(train_cfg, out.with_suffix(".yaml"))
        print(f"pruned {args.ckpt} ({args.method}, ratio {ratio:.3f}): {result.summary()}")
        print(f"wrote {out} and {config_path}; fine-tune with: detector train {config_path} --set train.epochs=N")
        return 0

    return run_tool(run, args.debug)


def _scoring_batches(cfg: dict, count: int) -> Iterator[dict]:
    """The first ``count`` batches of data.train, letterboxed without augmentation."""
    if count < 1:
        raise ValueError(f"--batches: expected at least 1, got {count}")
    settings = parse_config(cfg)
    dataset = build_train_dataset(settings.data, augment=False, seed=settings.train.seed)
    batch_size = settings.data.batch_per_device or settings.data.batch_size
    loader = build_dataloader(dataset, batch_size=min(batch_size, 16), shuffle=True, seed=settings.train.seed)
    return islice(loader, count)


def _pruned_config(cfg: dict, model: torch.nn.Module) -> dict:
    """``cfg`` with the model's channel layout against the unpruned architecture."""
    base = copy.deepcopy(cfg)
    base["model"].pop("channel_layout", None)
    with torch.device("meta"):
        reference = build_model(base)
    pruned = copy.deepcopy(cfg)
    pruned["model"]["channel_layout"] = read_channel_layout(model, reference)
    return pruned
