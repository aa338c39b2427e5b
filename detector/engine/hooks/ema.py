"""The exponential moving average of the weights (``train.ema``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detector.engine.ema import ModelEMA
from detector.engine.hooks import Hook
from detector.registry import HOOKS


@HOOKS.register()
class EMAHook(Hook):
    """Keeps ``trainer.ema`` (a ``ModelEMA``, or None with ``train.ema: false``) and updates it
    after every optimiser step that was not skipped."""

    def setup(self, trainer) -> None:  # noqa: ANN001
        ema = trainer.settings.train.ema
        trainer.ema = ModelEMA(trainer.model, decay=ema.decay, tau=ema.tau) if ema else None
        self.trainer = trainer

    def after_step(self, trainer) -> None:  # noqa: ANN001
        if trainer.ema is not None and trainer.step_parts is not None:
            trainer.ema.update(trainer.model)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.trainer.ema.state_dict() if self.trainer.ema is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.trainer.ema is not None and state.get("ema") is not None:
            self.trainer.ema.load_state_dict(state["ema"])
