"""Training hooks: the trainer's loop calls each hook's method for each event, in list order.

Events, in the order of a run: ``setup`` (parts built, before a resumed state is loaded),
``before_train``, then per epoch ``before_epoch``, ``after_step`` (after every optimiser step:
``trainer.step_parts`` is the step's losses, None when it was skipped) and ``after_epoch``
(``trainer.record`` is the epoch's row of ``metrics.csv``, already in ``trainer.history``), and
``after_train`` at the end of a run that finished. Besides events, a hook may:

* ``prepare_model(model) -> model``: change the model before DDP and the optimiser see it
  (quantisation-aware training, pruning);
* ``state_dict()`` / ``load_state_dict(state)``: its part of the checkpoint.

The built-in hooks (:data:`BUILTIN_HOOKS`, always on, each with one job) run first; a config
adds its own after them with ``train.hooks: [{type: NAME, ...}]`` (the ``HOOKS`` registry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from detector.registry import HOOKS

if TYPE_CHECKING:
    from torch import nn

    from detector.config_sections import RunConfig
    from detector.engine.trainer import Trainer

EVENTS = ("setup", "before_train", "before_epoch", "after_step", "after_epoch", "after_train")


class Hook:
    """A training hook: override the events it needs (all do nothing here)."""

    def setup(self, trainer: Trainer) -> None: ...
    def before_train(self, trainer: Trainer) -> None: ...
    def before_epoch(self, trainer: Trainer) -> None: ...
    def after_step(self, trainer: Trainer) -> None: ...
    def after_epoch(self, trainer: Trainer) -> None: ...
    def after_train(self, trainer: Trainer) -> None: ...

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


from detector.engine.hooks.checkpoints import CheckpointHook  # noqa: E402
from detector.engine.hooks.ema import EMAHook  # noqa: E402
from detector.engine.hooks.evaluation import EvaluationHook  # noqa: E402
from detector.engine.hooks.final_plots import FinalPlotsHook  # noqa: E402
from detector.engine.hooks.logs import LoggingHook  # noqa: E402
from detector.engine.hooks.memory import MemoryHook  # noqa: E402
from detector.engine.hooks.no_aug import NoAugHook  # noqa: E402

#: Always on, in this order: the evaluation's memory counts in the epoch's peaks, and the
#: checkpoint and the logs see the epoch's full record.
BUILTIN_HOOKS = (NoAugHook, EMAHook, EvaluationHook, MemoryHook, CheckpointHook, LoggingHook, FinalPlotsHook)


def build_hooks(settings: RunConfig) -> list[Hook]:
    """The initial-weights hook when ``train.init_weights`` is set, the built-in hooks, the
    quantisation-aware training hook when ``qat.enabled``, the distillation hook when
    ``distill.teacher`` is set, then those of ``train.hooks``."""
    hooks: list[Hook] = [cls() for cls in BUILTIN_HOOKS]
    if settings.train.init_weights:
        from detector.engine.hooks.init_weights import InitialWeightsHook

        # First, so that every other hook's prepare_model sees the loaded weights.
        hooks.insert(0, InitialWeightsHook(settings.train.init_weights))
    if settings.qat.enabled:
        from detector.engine.hooks.qat import QuantizationAwareTrainingHook

        hooks.append(
            QuantizationAwareTrainingHook(
                settings.qat.calibration_images, settings.qat.range_momentum, settings.qat.weight_bits
            )
        )
    if settings.distill.teacher is not None:
        from detector.distill import DistillationHook

        hooks.append(DistillationHook())
    for i, cfg in enumerate(settings.train.hooks):
        hooks.append(HOOKS.build(cfg, f"train.hooks[{i}]"))
    return hooks


__all__ = ["BUILTIN_HOOKS", "EVENTS", "HOOKS", "Hook", "build_hooks", *(cls.__name__ for cls in BUILTIN_HOOKS)]
