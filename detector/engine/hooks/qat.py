"""Quantisation-aware training (``qat.enabled``): the model fake-quantised before training and its
activation ranges calibrated on the first images of ``data.train``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.compress.qat import calibrate, prepare_qat
from detector.data.transforms import letterbox, to_hw
from detector.engine.hooks import Hook


def calibration_batches(
    dataset: Any, count: int, imgsz: Any, device: torch.device, batch: int = 8
) -> Iterator[torch.Tensor]:
    """The first ``count`` images of ``dataset`` letterboxed to ``imgsz`` as the predictor and
    ``detector quantize`` feed them: float ``[B, 3, H, W]`` batches, BGR 0..255."""
    size = to_hw(imgsz)
    count = min(count, len(dataset))
    for start in range(0, count, batch):
        images = [letterbox(dataset.load_sample(i)["image"], size)[0] for i in range(start, min(start + batch, count))]
        yield torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).float().to(device)


class QuantizationAwareTrainingHook(Hook):
    """Adds fake quantisers (``prepare_model``: ``detector.compress.qat.prepare_qat``), then calibrates the
    activation ranges (``setup``; a resumed run then loads its own ranges over them)."""

    def __init__(self, calibration_images: int = 100, range_momentum: float = 0.01, weight_bits: int = 8) -> None:
        self.calibration_images = calibration_images
        self.range_momentum = range_momentum
        self.weight_bits = weight_bits

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return prepare_qat(model, self.range_momentum, self.weight_bits)

    def setup(self, trainer) -> None:  # noqa: ANN001
        batches = calibration_batches(trainer.train_set, self.calibration_images, trainer.settings.data.imgsz,
                                      trainer.device)  # fmt: skip
        count = calibrate(trainer.model, batches)
        if trainer.ema is not None:
            trainer.ema.module.load_state_dict(trainer.model.state_dict())
        trainer.logger.info("quantisation-aware training: activation ranges calibrated on %d images of data.train",
                            count)  # fmt: skip
