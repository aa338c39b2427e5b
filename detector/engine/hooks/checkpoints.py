"""Checkpoints after every epoch: ``last.pt`` (the one before kept as ``last.prev.pt``) and
``best.pt``, each written atomically (rank 0)."""

from __future__ import annotations

from detector.engine.hooks import Hook
from detector.registry import HOOKS
from detector.utils.checkpoint import save_checkpoint


@HOOKS.register()
class CheckpointHook(Hook):
    """Writes ``weights/last.pt`` each epoch and ``weights/best.pt`` when the evaluation found
    a new best (``trainer.improved``)."""

    def after_epoch(self, trainer) -> None:  # noqa: ANN001
        if not trainer.is_main:
            return
        state = trainer.state_dict()
        save_checkpoint(state, trainer.weights_dir / "last.pt", keep_previous=True)
        if trainer.improved:
            save_checkpoint(state, trainer.weights_dir / "best.pt")
