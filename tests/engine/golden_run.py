"""A fixed short CPU training run, straight and killed-and-resumed; prints as JSON the SHA-256
of each run's final weights (model, training model, EMA) and the deterministic columns of its
metrics.csv. ``test_golden_run.py`` compares them with ``golden_run.json``, recorded before the
trainer's redesign: the redesign must give bitwise the same weights.

    python tests/engine/golden_run.py OUT_DIR [--repo REPO]

The config is spelt out here (no ``_base_``), so that the same run can be made by any version of
the code: ``PYTHONPATH=OLD python tests/engine/golden_run.py OUT --repo OLD``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from detector.data.synthetic import generate_synthetic_coco

#: Columns of metrics.csv that depend on the computation alone (not on timing or memory).
COLUMNS = ("epoch", "lr", "loss", "iou", "obj", "cls", "l1", "mAP50_95", "mAP50")
KILL_AFTER_EPOCHS = 2

MODEL = {
    "type": "Detector",
    "backbone": {"type": "CSPDarknet", "depth": 0.33, "width": 0.25, "depthwise": True, "act": "silu"},
    "neck": {"type": "PAFPN", "depth": 0.33, "depthwise": True, "act": "silu"},
    "head": {
        "type": "YOLOXHead", "num_classes": 5, "feat_channels": 64, "strides": [8, 16, 32], "depthwise": True,
        "act": "silu", "loss": {"assigner": {"type": "SimOTAAssigner"}},
    },
}  # fmt: skip


def fingerprint() -> str:
    """What bitwise results depend on: the torch build and the CPU kernels it picks."""
    return f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}, 1 thread"


def write_config(out: Path) -> Path:
    shapes = generate_synthetic_coco(out / "shapes", num_train=12, num_val=4, image_size=64, seed=3, image_format="png")
    split = {s: {"type": "CocoDataset", "ann_file": str(shapes[f"{s}_ann"]), "img_dir": str(shapes[f"{s}_images"])}
             for s in ("train", "val")}  # fmt: skip
    cfg = {
        "model": MODEL,
        "data": {
            **split, "imgsz": 64, "batch_size": 4, "num_workers": 0, "min_box_size": 2,
            "augment": [{"type": "HorizontalFlip", "p": 0.5}],
            "mix": {"mosaic_prob": 0.5, "mixup_prob": 0.5, "scale": [0.5, 1.5], "degrees": 5.0},
        },
        "optimizer": {"type": "SGD", "lr": 0.04, "base_batch_size": 64, "momentum": 0.9, "weight_decay": 5.0e-4},
        "scheduler": {"warmup_epochs": 1, "min_lr_ratio": 0.05},
        "train": {
            "epochs": 5, "no_aug_epochs": 1, "eval_interval": 2, "ema": {"decay": 0.99, "tau": 10}, "seed": 7,
            "output_dir": str(out / "runs"),
        },
        "eval": {"conf_threshold": 0.001, "iou_threshold": 0.65, "max_det": 100},
    }  # fmt: skip
    path = out / "golden.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def weights_sha256(checkpoint: Path) -> str:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    digest = hashlib.sha256()
    for part in ("model", "train_model", "ema"):
        tensors = state[part] if part != "ema" else state[part]["module"]
        for name in sorted(tensors):
            digest.update(name.encode())
            digest.update(tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [{k: row[k] for k in COLUMNS} for row in csv.DictReader(f)]


def result(run_dir: Path) -> dict:
    return {"sha256": weights_sha256(run_dir / "weights" / "last.pt"), "metrics": metrics_rows(run_dir)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()
    config = write_config(args.out)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    train = [sys.executable, str(args.repo / "tools" / "train.py"), str(config), "--device", "cpu", "--no-progress"]

    def run(name: str, *extra: str) -> None:
        done = subprocess.run([*train, "--set", f"train.name={name}", *extra], env=env, capture_output=True,
                              text=True, timeout=900)  # fmt: skip
        if done.returncode:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")

    run("straight")
    runs = args.out / "runs"
    killed = subprocess.Popen([*train, "--set", "train.name=killed"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    metrics = runs / "killed" / "metrics.csv"
    while killed.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) > KILL_AFTER_EPOCHS:
            os.killpg(killed.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    if killed.wait() != -signal.SIGKILL:
        raise SystemExit(f"the run to kill ended by itself (exit {killed.returncode}) before epoch {KILL_AFTER_EPOCHS}")
    killed_at = torch.load(runs / "killed" / "weights" / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    run("killed", "--resume", str(runs / "killed" / "weights" / "last.pt"))
    report = {"fingerprint": fingerprint(), "straight": result(runs / "straight"), "resumed": result(runs / "killed"),
              "killed_at_epoch": killed_at}  # fmt: skip
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
