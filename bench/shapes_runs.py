"""Training runs on a generated shapes set, for the benchmarks that compare recipes over seeds
(``rep.py``, ``distill.py``): the data set, one run through ``detector train``, its metrics, and
the mean and spread over seeds. Not a benchmark itself."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def detector_command(*args: object, quiet: bool = True) -> None:
    """``python -m detector ARGS`` from the checkout (output hidden unless it fails)."""
    command = [sys.executable, "-m", "detector", *map(str, args)]
    result = subprocess.run(command, cwd=REPO, capture_output=quiet, text=True)
    if result.returncode:
        raise SystemExit(f"detector {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")


def make_shapes_set(out: Path, train: int, val: int, size: int = 192) -> Path:
    """The demo's kind of shapes set (up to 12 shapes of at least 12 px per image) in ``out``."""
    detector_command("make-synthetic", "--out", out, "--size", size, "--train", train, "--val", val,
                     "--min-size", 12, "--max-objects", 12)  # fmt: skip
    return out


def data_overrides(data: Path) -> list[str]:
    """``--set`` entries pointing a shapes config's data.train / data.val at ``data``."""
    return [
        f"data.train.ann_file={data / 'annotations' / 'instances_train.json'}",
        f"data.train.img_dir={data / 'images' / 'train'}",
        f"data.val.ann_file={data / 'annotations' / 'instances_val.json'}",
        f"data.val.img_dir={data / 'images' / 'val'}",
    ]


def train_run(config: str, name: str, seed: int, out_dir: Path, data: Path, epochs: int,
              extra: Sequence[str] = ()) -> Path:  # fmt: skip
    """Train ``config`` with ``seed`` for ``epochs`` on ``data`` into ``out_dir/name`` (reused when
    its last checkpoint already reached ``epochs``, resumed from it when it stopped earlier, so an
    interrupted benchmark goes on where it was); returns the run folder."""
    run = out_dir / name
    checkpoint = run / "weights" / "last.pt"
    done = last_row(run).get("epoch") if (run / "metrics.csv").exists() else None
    if done == str(epochs) and checkpoint.exists():
        return run
    overrides = [*data_overrides(data), f"train.epochs={epochs}", f"train.seed={seed}", f"train.output_dir={out_dir}",
                 f"train.name={name}", f"train.eval_interval={epochs}", "train.plots=false", *extra]  # fmt: skip
    resume = []
    if checkpoint.exists() and done is not None and int(done) < epochs:
        resume = ["--resume", str(checkpoint)]
    elif run.exists():
        import shutil

        shutil.rmtree(run)
    detector_command("train", config, "--device", "cpu", "--no-progress", *resume, "--set", *overrides)
    return run


def last_row(run: Path) -> dict[str, str]:
    """The last row of a run's ``metrics.csv``."""
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else {}


def column_median(run: Path, key: str) -> float:
    """Median of a numeric column of ``metrics.csv`` over the epochs."""
    with (run / "metrics.csv").open(newline="") as f:
        return statistics.median(float(row[key]) for row in csv.DictReader(f) if row.get(key))


def onnx_metrics(run: Path, config: str, data: Path, out: Path, int8: bool, calib: int = 100,
                 export_args: Sequence[str] = (), tag: str = "",
                 quantize_args: Sequence[str] = ()) -> dict[str, float]:  # fmt: skip
    """mAP of the run's last weights exported to ONNX (with ``export_args``; ``tag`` names the
    files) and quantized to INT8 when ``int8`` (with ``quantize_args``, named by ``tag`` too),
    calibrated on ``calib`` training images, scored by ``detector eval --onnx``."""
    out.mkdir(parents=True, exist_ok=True)
    model = out / f"{run.name}{tag}.onnx"
    detector_command("export", "--ckpt", run / "weights" / "last.pt", "--out", model, *export_args)
    if int8:
        quantized = out / f"{run.name}{tag}_int8.onnx"
        detector_command("quantize", model, config, "--out", quantized, "--n", calib, *quantize_args, "--set",
                         *data_overrides(data))  # fmt: skip
        model = quantized
    metrics = out / f"{model.stem}.json"
    detector_command("eval", config, "--onnx", model, "--out", metrics, "--set", *data_overrides(data))
    return json.loads(metrics.read_text())


def mean_spread(values: Sequence[float]) -> str:
    """``mean ± sample std (min-max)`` with three decimals."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f} ({min(values):.3f}-{max(values):.3f})"
