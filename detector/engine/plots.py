"""PNG plots of the training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: training machines have no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(
    history: Sequence[dict[str, Any]], out_dir: Path, loss_names: Sequence[str] = ("loss",)
) -> list[Path]:
    """``loss.png`` (each of ``loss_names``, the total and its parts, per epoch), ``map.png``
    (mAP50-95, mAP50) and ``memory.png`` (per-epoch peaks in MiB of the main process, its loader
    workers and the GPU) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if not history:
        return []
    epochs = [row["epoch"] for row in history]
    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in loss_names:
        ax.plot(epochs, [row.get(key) for row in history], label=key)
    ax.set(xlabel="epoch", ylabel="loss", title="training loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "loss.png", dpi=100)
    plt.close(fig)
    written.append(out_dir / "loss.png")
    evaluated = [row for row in history if row.get("mAP50_95") is not None]
    if evaluated:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in ("mAP50_95", "mAP50"):
            ax.plot([row["epoch"] for row in evaluated], [row[key] for row in evaluated], marker="o", label=key)
        ax.set(xlabel="epoch", ylabel="mAP", title="validation mAP", ylim=(0, 1))
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "map.png", dpi=100)
        plt.close(fig)
        written.append(out_dir / "map.png")
    labels = {"ram_mb": "main process", "workers_ram_mb": "loader workers", "gpu_mem_mb": "GPU (reserved)"}
    measured = {key: label for key, label in labels.items() if any(row.get(key) is not None for row in history)}
    if measured:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key, label in measured.items():
            ax.plot(epochs, [row.get(key) for row in history], marker=".", label=label)
        ax.set(xlabel="epoch", ylabel="MiB (epoch peak)", title="memory", ylim=(0, None))
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "memory.png", dpi=100)
        plt.close(fig)
        written.append(out_dir / "memory.png")
    return written
