"""Appearance for tracking: the ``ReID`` interface (image crops to embeddings) and a wrapper that
fills it with any PyTorch re-identification model.

No ReID weights ship with the project. To use your own model, export it with ``torch.export``
and a dynamic batch::

    batch = torch.export.Dim("batch")
    program = torch.export.export(model.eval(), (torch.zeros(2, 3, 256, 128),), dynamic_shapes=({0: batch},))
    torch.export.save(program, "reid.pt2")

then set ``track.tracker.reid: reid.pt2`` (with ``reid_input_size`` if it is not 256 x 128), or
pass ``TorchReID(module)`` (or any object with the same ``__call__``) as the tracker's ``reid``
in Python. A ``.pt2`` file holds a graph and tensors, not pickled Python objects.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import torch

#: ImageNet normalisation, which most ReID backbones (OSNet, ResNet-50 BoT) are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class ReID(Protocol):
    """Embeds people: ``reid(image, boxes) -> [N, D]`` float32, one L2-normalised row per box.

    ``image``: HWC uint8 BGR (the frame); ``boxes``: ``[N, 4]`` x1, y1, x2, y2 pixels.
    """

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray: ...


class TorchReID:
    """``ReID`` from a PyTorch module mapping ``[N, 3, H, W]`` normalised RGB crops to ``[N, D]``.

    Each box is clipped to the image, cropped, resized to ``input_size`` (height, width) and
    normalised with ``mean``/``std`` (RGB, 0-1 scale); the embeddings are L2-normalised.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        input_size: Sequence[int] = (256, 128),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        device: str | torch.device = "cpu",
    ) -> None:
        if len(input_size) != 2 or min(input_size) < 1:
            raise ValueError(f"reid_input_size: expected [height, width] in pixels, got {list(input_size)}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        with contextlib.suppress(NotImplementedError):  # an exported program's module has a fixed mode
            self.model.eval()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)

    @classmethod
    def from_exported(cls, path: str | os.PathLike[str], **kwargs) -> TorchReID:
        """A model saved by ``torch.export.save`` (a ``.pt2`` file); ``kwargs`` as the constructor's."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such ReID model (expected a torch.export .pt2 file)")
        try:
            model = torch.export.load(str(path)).module()
        except (RuntimeError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"{path}: not a torch.export .pt2 model ({reason})") from None
        return cls(model, **kwargs)

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``[N, 3, H, W]`` float32 model inputs for ``boxes`` of ``image``."""
        h, w = image.shape[:2]
        out = np.zeros((len(boxes), 3, *self.input_size), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
            left, top = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
            right, bottom = int(np.clip(np.ceil(x2), left + 1, w)), int(np.clip(np.ceil(y2), top + 1, h))
            crop = cv2.resize(image[top:bottom, left:right], self.input_size[::-1], interpolation=cv2.INTER_LINEAR)
            rgb = crop[:, :, ::-1].astype(np.float32) / 255.0
            out[i] = ((rgb - self.mean) / self.std).transpose(2, 0, 1)
        return out

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, 0), np.float32)
        features = self.model(torch.from_numpy(self.crops(image, boxes)).to(self.device)).float()
        return torch.nn.functional.normalize(features.flatten(1), dim=1).cpu().numpy()


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` ``(1 - cos) / 2`` in [0, 1] between L2-normalised rows of ``a`` ``[N, D]`` and ``b`` ``[M, D]``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return np.clip((1.0 - np.asarray(a, np.float64) @ np.asarray(b, np.float64).T) / 2.0, 0.0, 1.0)
