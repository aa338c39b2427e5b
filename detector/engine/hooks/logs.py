"""What a run reports: the progress bar, ``train.log``, ``metrics.csv`` and TensorBoard (rank 0)."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from detector.engine.hooks import Hook
from detector.engine.memory import MEMORY_KEYS
from detector.registry import HOOKS
from detector.utils.fileio import atomic_write

#: metrics.csv columns around the loss parts (whose names come from the loss's own dict).
LEADING_COLUMNS = ("epoch", "lr")
TRAILING_COLUMNS = ("images_per_s", "epoch_time", "mAP50_95", "mAP50", *MEMORY_KEYS)


def _number(text: str | None) -> int | float | None:
    if text in ("", None):
        return None
    return int(text) if text.lstrip("-").isdigit() else float(text)


def read_history(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.csv`` (numbers as ints or floats as written, so that a resumed run
    writes them back unchanged; blanks as None); [] when there is none."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(history: list[dict[str, Any]], path: Path) -> None:
    """``metrics.csv``, atomically: epoch, lr, the loss parts, speed, mAP, memory peaks."""
    fixed = {*LEADING_COLUMNS, *TRAILING_COLUMNS}
    parts = list(dict.fromkeys(k for row in history for k in row if k not in fixed))
    keys = [*LEADING_COLUMNS, *parts, *TRAILING_COLUMNS]

    def write(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in keys})

    atomic_write(path, write)


def _memory_text(trainer) -> str:  # noqa: ANN001
    """`` mem=1.2G`` (this process), ``+0.8G`` (its workers), `` gpu=3.4G`` for the bar."""
    memory = getattr(trainer, "memory", None)
    peaks = memory.peaks() if memory is not None else {}
    text = "" if peaks.get("ram_mb") is None else f" mem={peaks['ram_mb'] / 1024:.2f}G"
    if peaks.get("workers_ram_mb") is not None:
        text += f"+{peaks['workers_ram_mb'] / 1024:.2f}G"
    if peaks.get("gpu_mem_mb") is not None:
        text += f" gpu={peaks['gpu_mem_mb'] / 1024:.2f}G"
    return text


def _format(row: dict[str, Any], digits: int) -> str:
    return " ".join(
        f"{k}={v:.{digits}g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if v is not None
    )


@HOOKS.register()
class LoggingHook(Hook):
    """The epoch's progress bar (losses, lr, images/s, memory); each epoch's record into
    ``train.log``, ``metrics.csv``, TensorBoard (when installed) and one summary line."""

    def setup(self, trainer) -> None:  # noqa: ANN001
        self.writer = self._tensorboard(trainer.run_dir) if trainer.is_main else None

    @staticmethod
    def _tensorboard(run_dir: Path) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(run_dir / "tensorboard"))

    def before_train(self, trainer) -> None:  # noqa: ANN001
        trainer.logger.info(
            "training %d epochs on %s, %d iterations/epoch", trainer.epochs, trainer.device, trainer.iters_per_epoch
        )

    def before_epoch(self, trainer) -> None:  # noqa: ANN001
        self.bar = tqdm(total=trainer.iters_per_epoch, desc=f"epoch {trainer.epoch + 1}/{trainer.epochs}",
                        disable=not trainer.progress, dynamic_ncols=True, leave=False)  # fmt: skip
        self.images, self.start = 0, time.perf_counter()

    def after_step(self, trainer) -> None:  # noqa: ANN001
        self.bar.update(1)
        self.images += trainer.step_images
        parts = trainer.step_parts
        if parts is not None and trainer.progress:
            speed = self.images / max(time.perf_counter() - self.start, 1e-9)
            losses = " ".join(f"{k}={v:.3f}" for k, v in parts.items())
            self.bar.set_postfix_str(f"{losses} lr={trainer.lr:.2e} {speed:.1f}img/s{_memory_text(trainer)}",
                                     refresh=False)  # fmt: skip

    def after_epoch(self, trainer) -> None:  # noqa: ANN001
        self.bar.close()
        if not trainer.is_main:
            return
        row = trainer.record
        trainer.logger.info(_format(row, 5))
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and v is not None:
                    self.writer.add_scalar(k, v, trainer.epoch)
        write_history(trainer.history, trainer.run_dir / "metrics.csv")
        if trainer.progress:
            shown = {k: row[k] for k in ("epoch", "loss", "mAP50_95", "mAP50", "images_per_s") if k in row}
            tqdm.write(_format(shown, 4))

    def after_train(self, trainer) -> None:  # noqa: ANN001
        if self.writer is not None:
            self.writer.close()
