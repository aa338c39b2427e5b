"""At the end of a run: the training curves and the final model's detections on a few
validation images, as PNGs (rank 0, with ``train.plots``)."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2

from detector.engine.hooks import Hook
from detector.engine.plots import plot_training_curves
from detector.inference import Predictor
from detector.registry import HOOKS
from detector.utils.visualize import draw_detections


def save_prediction_samples(trainer, count: int = 4, conf_threshold: float = 0.3) -> list[Path]:  # noqa: ANN001
    """Draw the evaluation model's detections on the first ``count`` validation images into
    ``predictions/`` (PNG) for a look at what the model learned."""
    model = copy.deepcopy(trainer.eval_model)
    names = trainer.train_set.class_names
    predictor = Predictor(model, trainer.settings.data.imgsz, names, trainer.device, conf_threshold=conf_threshold)
    out_dir = trainer.run_dir / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(min(count, len(trainer.val_set))):
        sample = trainer.val_set.load_sample(i)
        det = predictor(sample["image"])[0].to("cpu")
        drawn = draw_detections(
            sample["image"], det.boxes.numpy(), det.labels.numpy(), det.scores.numpy(), predictor.class_names
        )
        path = out_dir / f"{sample['image_id']}.png"
        cv2.imwrite(str(path), drawn)
        written.append(path)
    return written


@HOOKS.register()
class FinalPlotsHook(Hook):
    """``plots/`` loss, mAP and memory curves and ``predictions/*.png`` after the last epoch
    (the evaluation pictures come with the last evaluation, ``EvaluationHook``)."""

    def after_train(self, trainer) -> None:  # noqa: ANN001
        if not (trainer.is_main and trainer.settings.train.plots):
            return
        plot_training_curves(trainer.history, trainer.run_dir / "plots", trainer.step.part_names or ["loss"])
        if trainer.val_set is not None:
            save_prediction_samples(trainer)
