"""COCO evaluation during training and the best mAP50-95 so far."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detector.engine.distributed import broadcast_module_state
from detector.engine.hooks import Hook
from detector.engine.validate import evaluate_dataset
from detector.inference import Predictor
from detector.registry import HOOKS


def evaluate_model(trainer, progress: bool | None = None, plots_dir: Path | None = None) -> dict[str, Any]:  # noqa: ANN001
    """COCO metrics of the trainer's evaluation model (the EMA's, else the model) on its
    validation set, sharded over the ranks; with ``plots_dir`` also the evaluation pictures."""
    model = copy.deepcopy(trainer.eval_model)
    # Without SyncBN each rank's BatchNorm statistics (and so its EMA) drift apart between
    # DDP's buffer broadcasts: every shard is evaluated with rank 0's model, the one saved.
    broadcast_module_state(model)
    eval_cfg = trainer.settings.eval
    predictor = Predictor(
        model.fuse(),
        trainer.settings.data.imgsz,
        device=trainer.device,
        conf_threshold=eval_cfg.conf_threshold,
        iou_threshold=eval_cfg.iou_threshold,
        max_det=eval_cfg.max_det,
    )
    return evaluate_dataset(
        predictor,
        trainer.val_set,
        batch_size=eval_cfg.batch_size or trainer.data.batch_per_device,
        verbose=False,
        progress=trainer.progress if progress is None else progress and trainer.is_main,
        distributed=trainer.dist.distributed,
        plots_dir=plots_dir,
    )


@HOOKS.register()
class EvaluationHook(Hook):
    """Every ``train.eval_interval`` epochs and after the last: evaluate, put mAP50-95 and mAP50
    into the epoch's record, set ``trainer.metrics`` and ``trainer.improved`` (a new best
    mAP50-95). The last evaluation also draws the evaluation pictures into ``plots/`` (with
    ``train.plots``)."""

    def __init__(self) -> None:
        self.best_map = -1.0

    def after_epoch(self, trainer) -> None:  # noqa: ANN001
        trainer.improved = False
        last = trainer.epoch == trainer.epochs
        if trainer.val_set is None or not (trainer.epoch % trainer.settings.train.eval_interval == 0 or last):
            return
        plots = trainer.run_dir / "plots" if last and trainer.settings.train.plots else None
        trainer.metrics = evaluate_model(trainer, plots_dir=plots)
        trainer.record.update(mAP50_95=trainer.metrics["mAP50_95"], mAP50=trainer.metrics["mAP50"])
        if trainer.metrics["mAP50_95"] > self.best_map:
            self.best_map = trainer.metrics["mAP50_95"]
            trainer.improved = True

    def state_dict(self) -> dict[str, Any]:
        return {"best_map": self.best_map}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_map = float(state["best_map"])
