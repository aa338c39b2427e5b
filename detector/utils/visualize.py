"""Drawing detections and curves for people to look at (PNG)."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import cv2
import numpy as np


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for a class index (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """A copy of BGR ``image`` with ``boxes`` (xyxy pixels) drawn and captioned
    ``name score``."""
    canvas = np.ascontiguousarray(image.copy())
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    for i, (box, label) in enumerate(zip(np.asarray(boxes), np.asarray(labels), strict=True)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        color = class_color(int(label))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        name = class_names[int(label)] if class_names is not None else str(int(label))
        caption = name if scores is None else f"{name} {float(scores[i]):.2f}"
        scale = 0.4 * thickness
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(y1 - th - base, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw, top + th + base), color, -1)
        cv2.putText(canvas, caption, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def draw_batch_grid(
    images: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str] | None = None,
    captions: Sequence[str] | None = None,
    columns: int | None = None,
    gap: int = 4,
) -> np.ndarray:
    """One BGR picture of a training batch as the model receives it.

    ``images``: uint8 ``[B, 3, H, W]`` BGR (a collated batch); ``targets``: ``[M, 6]`` rows of
    (batch index, label, x1, y1, x2, y2) in network-input pixels. Tiles go row by row,
    ``columns`` of them (default: a square-ish grid), ``gap`` pixels apart, each with its boxes
    and class names and an optional caption line.
    """
    images = np.asarray(images)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    count, _, h, w = images.shape
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    grid = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, 3), 255, np.uint8)
    for i in range(count):
        mine = targets[targets[:, 0] == i]
        tile = draw_detections(images[i].transpose(1, 2, 0), mine[:, 2:], mine[:, 1].astype(int), None, class_names)
        if captions is not None:
            cv2.putText(tile, captions[i], (3, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(tile, captions[i], (3, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        y, x = gap + (i // columns) * (h + gap), gap + (i % columns) * (w + gap)
        grid[y : y + h, x : x + w] = tile
    return grid
