"""Memory per epoch: main process, loader workers, GPU (``metrics.csv``, the progress bar)."""

from __future__ import annotations

from detector.engine.hooks import Hook
from detector.engine.memory import MemoryMonitor
from detector.registry import HOOKS


@HOOKS.register()
class MemoryHook(Hook):
    """``trainer.memory``: sampled after every step and after the evaluation; the epoch's peaks
    (``ram_mb``, ``workers_ram_mb``, ``gpu_mem_mb``) go into its record."""

    def setup(self, trainer) -> None:  # noqa: ANN001
        trainer.memory = MemoryMonitor(trainer.device)

    def before_epoch(self, trainer) -> None:  # noqa: ANN001
        trainer.memory.reset()

    def after_step(self, trainer) -> None:  # noqa: ANN001
        trainer.memory.sample()

    def after_epoch(self, trainer) -> None:  # noqa: ANN001
        trainer.memory.sample(force=True)  # after the evaluation, whose memory counts as well
        trainer.record.update(trainer.memory.peaks())
