"""Like-for-like comparison of the label assigners: SimOTA, ATSS (anchor-free head) and YOLOv5
matching (anchor-based head with YOLOv5's loss).

1. Assignment cost: time per image (median) for 100 gts on a 640x640 input (8,400 anchor-free or
   25,200 anchor-based priors), positives per gt.
2. Share of a training step: YOLOX-Nano at 320, batch 16, on the generated shapes set; the time
   spent inside the assigner over the whole step (median of steps).
3. Accuracy: YOLOX-Nano trained with each assigner on the same data, epochs, augmentation and
   seed, on the generated shapes set (the demo recipe) and on tinycoco (the memorisation
   recipe, scored on its training images), mAP by pycocotools.

    python bench/assigners.py [--shapes-epochs 16] [--tinycoco-epochs 200] [--skip-training] [--only NAME ...]

An epoch count of 0 skips that data set.

Prints markdown tables. Never part of the test run; the training part takes about 20 minutes
per assigner on the 2-core reference CPU with the default budgets.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from detector import build_model, load_config
from detector.assigners import ATSSAssigner, SimOTAAssigner, YOLOv5Assigner, pad_targets
from detector.assigners.base import Assigner
from detector.data.coco import CocoDataset
from detector.data.loader import build_dataloader
from detector.data.synthetic import generate_synthetic_coco
from detector.data.transforms import TrainTransform
from detector.engine.trainer import Trainer
from detector.ops.priors import make_priors
from detector.utils.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]
ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]
#: name, assigner, anchor-based, config overrides turning the YOLOX-Nano recipe into this variant.
VARIANTS = [
    ("SimOTA", SimOTAAssigner(), False, ["model.head.loss.assigner={type: SimOTAAssigner}"]),
    ("ATSS", ATSSAssigner(), False, ["model.head.loss.assigner={type: ATSSAssigner, topk: 9, anchor_scale: 5.0}"]),
    (
        "YOLOv5",
        YOLOv5Assigner(),
        True,
        [f"model.head.anchors={[[list(a) for a in level] for level in ANCHORS]}", "model.head.loss={type: YOLOv5Loss}"],
    ),
]


def random_batch(priors: torch.Tensor, num_gt: int, num_classes: int = 80, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    num = priors.shape[0]
    centers = (priors[:, :2] + 0.5) * priors[:, 2:3]
    pred_boxes = torch.cat(
        (
            centers + torch.randn(num, 2, generator=generator) * priors[:, 2:3] * 0.5,
            priors[:, 3:5] * torch.exp(torch.randn(num, 2, generator=generator) * 0.5),
        ),
        dim=1,
    )[None]
    xy = torch.rand(num_gt, 2, generator=generator) * 560 + 40
    wh = torch.exp(torch.rand(num_gt, 2, generator=generator) * 3.5) * 8  # 8 to 265 px
    x1y1 = (xy - wh / 2).clamp(0, 639)
    x2y2 = (xy + wh / 2).clamp(1, 640)
    labels = torch.randint(num_classes, (num_gt, 1), generator=generator).float()
    targets = torch.cat((torch.zeros(num_gt, 1), labels, x1y1, x2y2), dim=1)
    cls_logits = torch.randn(1, num, num_classes, generator=generator)
    obj_logits = torch.randn(1, num, generator=generator)
    return pred_boxes, cls_logits, obj_logits, *pad_targets(targets, 1)


def assignment_cost(repeats: int = 15) -> list[tuple[str, int, float, float]]:
    rows = []
    for name, assigner, anchored, _ in VARIANTS:
        priors = make_priors([(80, 80), (40, 40), (20, 20)], [8, 16, 32], anchors=ANCHORS if anchored else None)
        batch = random_batch(priors, 100)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = assigner(priors, *batch)
            times.append(time.perf_counter() - start)
        rows.append((name, priors.shape[0], statistics.median(times) * 1e3, result.num_fg / 100))
    return rows


class TimedAssigner(Assigner):
    """Wraps an assigner and adds up the seconds spent in it."""

    def __init__(self, inner: Assigner) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        result = self.inner(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        return result


def step_share(data: dict, steps: int = 6) -> list[tuple[str, float, float]]:
    dataset = CocoDataset(data["train_ann"], data["train_images"], transform=TrainTransform(320, []))
    loader = build_dataloader(dataset, 16, shuffle=True, num_workers=0)
    batches = [b for _, b in zip(range(steps + 2), loader, strict=False)]
    rows = []
    for name, _, _, overrides in VARIANTS:
        cfg = load_config(REPO / "configs" / "yolox_nano_shapes.yaml", overrides)
        model = build_model(cfg).to(memory_format=torch.channels_last).train()
        timed = TimedAssigner(model.head.criterion.assigner)
        model.head.criterion.assigner = timed
        shares, step_times = [], []
        for i, b in enumerate(batches):
            images = b["images"].float().contiguous(memory_format=torch.channels_last)
            timed.seconds = 0.0
            start = time.perf_counter()
            model(images, b["targets"])["loss"].backward()
            elapsed = time.perf_counter() - start
            if i >= 2:
                shares.append(timed.seconds / elapsed)
                step_times.append(elapsed)
        rows.append((name, statistics.median(step_times) * 1e3, statistics.median(shares) * 100))
    return rows


def train_variant(config: str, overrides: list[str], epochs: int, tmp: str) -> tuple[dict, float]:
    cfg = load_config(
        REPO / "configs" / config, [f"train.epochs={epochs}", f"train.eval_interval={epochs}", *overrides]
    )
    trainer = Trainer(cfg, device="cpu", run_dir=tmp, progress=True)
    start = time.perf_counter()
    metrics = trainer.train()
    return metrics, (time.perf_counter() - start) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes-epochs", type=int, default=16)
    parser.add_argument("--tinycoco-epochs", type=int, default=200)
    parser.add_argument("--skip-training", action="store_true", help="only the assignment cost and step share")
    parser.add_argument("--only", nargs="*", default=None, help="train only these variants (SimOTA, ATSS, YOLOv5)")
    args = parser.parse_args()
    keep_freed_memory()

    threads = torch.get_num_threads()
    print(f"| assigner (cpu, {threads} threads) | priors at 640 | ms per image, 100 gts | positives per gt |")
    print("|---|---|---|---|")
    for name, priors, ms, per_gt in assignment_cost():
        print(f"| {name} | {priors} | {ms:.1f} | {per_gt:.1f} |")

    with tempfile.TemporaryDirectory() as tmp:
        data = generate_synthetic_coco(Path(tmp) / "shapes", num_train=48, num_val=1, image_size=320, seed=0)
        print("\n| assigner | Nano train step at 320, batch 16 (ms, forward + loss + backward) | assigner share |")
        print("|---|---|---|")
        for name, ms, share in step_share(data):
            print(f"| {name} | {ms:.0f} | {share:.1f}% |")

    if args.skip_training:
        return
    rows = []
    for name, _, _, overrides in VARIANTS:
        if args.only and name not in args.only:
            continue
        for label, config, epochs in (
            ("shapes (demo recipe)", "yolox_nano_shapes.yaml", args.shapes_epochs),
            ("tinycoco train (memorisation)", "yolox_nano_tinycoco.yaml", args.tinycoco_epochs),
        ):
            if epochs == 0:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                metrics, minutes = train_variant(config, overrides, epochs, tmp)
            rows.append((name, label, epochs, metrics["mAP50_95"], metrics["mAP50"], minutes))
    print("\n| assigner | data | epochs | mAP50-95 | mAP50 | minutes |")
    print("|---|---|---|---|---|---|")
    for name, label, epochs, map5095, map50, minutes in rows:
        print(f"| {name} | {label} | {epochs} | {map5095:.3f} | {map50:.3f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
