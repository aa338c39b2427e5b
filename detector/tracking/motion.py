"""Moving-blob detections for a static camera (OpenCV's MOG2 background subtraction), for tracking
without detector weights.

Each connected foreground blob becomes a box of class 0. Its score says how much it looks like
a whole object rather than a fragment: ``0.9`` from ``min_area`` pixels of foreground up, less
in proportion below, so ByteTrack starts tracks only from solid blobs and uses fragments only to
keep existing tracks. It finds what moves, not what is a person: groups walking together merge.
"""

from __future__ import annotations

import cv2
import numpy as np

FOREGROUND = 255  # MOG2 marks shadows 127


class MotionDetector:
    """``detect(frame, image) -> (boxes [N, 4] xyxy, scores [N], labels [N])`` from MOG2.

    ``history``: frames in the background model; ``var_threshold``: MOG2's squared Mahalanobis
    threshold; ``min_area``: foreground pixels of a solid blob; blobs under a tenth of it are
    noise. ``kernel``: size of the morphological opening (noise) and closing (merging a person's
    parts); ``warmup``: first frames used only to learn the background.
    """

    def __init__(
        self,
        history: int = 300,
        var_threshold: float = 25.0,
        min_area: int = 600,
        kernel: int = 5,
        warmup: int = 5,
    ) -> None:
        self.subtractor = cv2.createBackgroundSubtractorMOG2(history, var_threshold, True)
        self.min_area = int(min_area)
        self.open_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
        self.close_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3 * kernel, 3 * kernel))
        self.warmup = int(warmup)
        self.frames = 0

    def __call__(self, frame: int, image: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if image is None:
            raise ValueError(f"frame {frame}: no image for the motion detector")
        mask = self.subtractor.apply(image)
        self.frames += 1
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
        if self.frames <= self.warmup:
            return empty
        mask = np.where(mask == FOREGROUND, 255, 0).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.open_kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.close_kernel)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        stats = stats[1:]  # component 0 is the background
        area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
        keep = area >= self.min_area / 10
        if count <= 1 or not keep.any():
            return empty
        x, y = stats[keep, cv2.CC_STAT_LEFT], stats[keep, cv2.CC_STAT_TOP]
        w, h = stats[keep, cv2.CC_STAT_WIDTH], stats[keep, cv2.CC_STAT_HEIGHT]
        boxes = np.column_stack([x, y, x + w, y + h]).astype(np.float64)
        scores = 0.9 * np.minimum(area[keep] / self.min_area, 1.0)
        return boxes, scores, np.zeros(len(boxes), np.int64)
