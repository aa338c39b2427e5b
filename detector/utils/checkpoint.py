"""Checkpoint files: atomic writes, safe loading (``weights_only=True``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from detector.errors import CheckpointError
from detector.utils.fileio import atomic_write


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where ``save_checkpoint(..., keep_previous=True)`` keeps the checkpoint before ``path``:
    ``last.pt`` -> ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str], keep_previous: bool = False) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, fsync it,
    then rename it over ``path``: a crash mid-write never leaves a half-written checkpoint.
    ``keep_previous`` keeps the one it replaces as ``previous_path(path)`` (the last 2 kept)."""
    keep = previous_path(path) if keep_previous else None
    return atomic_write(path, lambda f: torch.save(state, f), binary=True, keep_previous=keep)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain data only, never code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or not saved by torch): {first_line}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    return state


def load_checkpoint_or_previous(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], Path, str | None]:
    """``load_checkpoint(path)``, or, when that file is missing, truncated or corrupt, the one
    kept before it (``previous_path``). Returns ``(state, the path loaded, why path was
    skipped or None)``; ``CheckpointError`` naming both files when neither loads."""
    path = Path(path)
    try:
        return load_checkpoint(path, map_location), path, None
    except CheckpointError as exc:
        previous = previous_path(path)
        if not previous.is_file():
            raise
        try:
            return load_checkpoint(previous, map_location), previous, str(exc)
        except CheckpointError as older:
            raise CheckpointError(f"{exc}; and the previous one: {older}") from None
