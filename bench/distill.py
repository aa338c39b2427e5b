"""Knowledge distillation on the shapes set: a larger teacher trained longer, then the demo's
YOLOX-Nano student trained alone and with distillation at the same epochs, one run per seed;
mean and spread of mAP50-95 / mAP50, the per-seed gain, and the training-step overhead.

    python bench/distill.py [--seeds 0 1 2] [--epochs 12] [--train-images 400]
                            [--teacher-epochs 36] [--losses YAML] [--tag NAME] [--steps 30]
                            [--out runs/bench_rep]

The teacher is YOLOX-Tiny (width 0.375, plain convs, head width 96) on the demo recipe with
``--teacher-epochs``. The student recipe is ``yolox_nano_shapes.yaml`` for ``--epochs`` on a
generated set of ``--train-images`` (100 validation images); the student-alone runs are the
``conv_s<seed>`` runs of ``bench/rep.py`` when both use the same ``--out`` (finished runs are
reused, not retrained). ``--losses`` is the ``distill.losses`` list as YAML (default: the
config's default). Step overhead: full training steps (forward, losses, backward, SGD) of the
student alone and with distillation in turns on the same batches, medians of ``--steps`` each.

Never part of the test run; the overhead means something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes_runs import REPO, data_overrides, last_row, make_shapes_set, mean_spread, train_run  # noqa: E402

from detector import load_config  # noqa: E402
from detector.config_sections import DistillConfig  # noqa: E402
from detector.engine.trainer import Trainer  # noqa: E402

CONFIG = "yolox_nano_shapes"
TEACHER = ["model.backbone.width=0.375", "model.backbone.depthwise=false", "model.neck.depthwise=false",
           "model.head.depthwise=false", "model.head.feat_channels=96"]  # fmt: skip


def distill_overrides(teacher: Path, losses: list | None) -> list[str]:
    sets = [f"distill.teacher={{ckpt: {teacher}}}"]
    if losses is not None:
        sets.append(f"distill.losses={yaml.safe_dump(losses, default_flow_style=True).strip()}")
    return sets


def step_overhead(data: Path, teacher: Path, losses: list | None, steps: int, out: Path) -> tuple[float, float]:
    """Median seconds of one training step without and with distillation, in turns."""
    trainers = []
    for name, extra in (("alone", []), ("distilled", distill_overrides(teacher, losses))):
        sets = [*data_overrides(data), f"train.output_dir={out}", f"train.name=overhead_{name}", *extra]
        trainers.append(Trainer(load_config(CONFIG, overrides=sets), device="cpu", progress=False))
    batches = []
    for epoch in range(steps + 3):  # as many epochs as a small set needs
        batches += [group for group, _ in zip(trainers[0].data.batches(epoch), range(steps + 3 - len(batches)),
                                              strict=False)]  # fmt: skip
        if len(batches) >= steps + 3:
            break
    times: list[list[float]] = [[], []]
    for i, group in enumerate(batches):
        for k, trainer in enumerate(trainers):
            trainer.model.train()
            start = time.perf_counter()
            trainer.step(group, i)
            if i >= 3:  # warm-up steps are not timed
                times[k].append(time.perf_counter() - start)
    for trainer in trainers:
        trainer.folder.abandon()
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--teacher-epochs", type=int, default=36)
    parser.add_argument("--losses", help="distill.losses as YAML (default: the config's)")
    parser.add_argument("--tag", default="default", help="names the distilled runs (one per loss set)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each variant (0: no timing)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_rep")
    args = parser.parse_args()
    losses = yaml.safe_load(args.losses) if args.losses else None
    data = make_shapes_set(args.out / "data", args.train_images, 100)
    teacher_run = train_run(CONFIG, f"teacher_tiny_e{args.teacher_epochs}", 0, args.out, data, args.teacher_epochs,
                            TEACHER)  # fmt: skip
    teacher = teacher_run / "weights" / "last.pt"
    teacher_row = last_row(teacher_run)
    print(f"teacher: mAP50-95 {teacher_row['mAP50_95']} mAP50 {teacher_row['mAP50']}", flush=True)
    results: dict[str, dict[str, list[float]]] = {"alone": {}, "distilled": {}}
    for seed in args.seeds:
        runs = {
            "alone": train_run(CONFIG, f"conv_s{seed}", seed, args.out, data, args.epochs),
            "distilled": train_run(
                CONFIG,
                f"distill_{args.tag}_s{seed}",
                seed,
                args.out,
                data,
                args.epochs,
                distill_overrides(teacher, losses),
            ),  # fmt: skip
        }
        for variant, run in runs.items():
            row = last_row(run)
            results[variant].setdefault("map", []).append(float(row["mAP50_95"]))
            results[variant].setdefault("map50", []).append(float(row["mAP50"]))
        print(f"seed {seed}: alone {results['alone']['map'][-1]:.3f}, distilled {results['distilled']['map'][-1]:.3f}",
              flush=True)  # fmt: skip
    gains = [d - a for a, d in zip(results["alone"]["map"], results["distilled"]["map"], strict=True)]
    used = yaml.safe_dump(losses if losses is not None else DistillConfig().losses, default_flow_style=True).strip()
    lines = [
        f"Student YOLOX-Nano (demo recipe), {args.epochs} epochs on {args.train_images} generated images at 192 px; "
        f"teacher YOLOX-Tiny, {args.teacher_epochs} epochs: mAP50-95 {float(teacher_row['mAP50_95']):.3f}, "
        f"mAP50 {float(teacher_row['mAP50']):.3f}; distill.losses {used}; "
        f"seeds {', '.join(map(str, args.seeds))}; mean ± sample std (min-max)",
        "",
        "| student | mAP50-95 | mAP50 |",
        "|---|---:|---:|",
        *(f"| {variant} | {mean_spread(r['map'])} | {mean_spread(r['map50'])} |" for variant, r in results.items()),
        "",
        f"mAP50-95 gain per seed: {', '.join(f'{g:+.3f}' for g in gains)}; mean {statistics.mean(gains):+.3f}",
    ]
    if args.steps:
        alone, distilled = step_overhead(data, teacher, losses, args.steps, args.out)
        lines.append(f"training step: {alone * 1e3:.0f} ms alone, {distilled * 1e3:.0f} ms distilled "
                     f"({distilled / alone:.2f}x), medians of {args.steps} interleaved steps")  # fmt: skip
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
