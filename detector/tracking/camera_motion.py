"""Camera-motion compensation: the global motion between consecutive frames as a 2 x 3 affine
matrix (previous frame's pixels to this frame's), estimated with OpenCV as BoT-SORT's GMC does.

Methods: ``sparse_flow`` (corners tracked by pyramidal Lucas-Kanade, a similarity fitted with
RANSAC, so moving people are outliers) and ``ecc`` (OpenCV's enhanced correlation coefficient
alignment, a Euclidean motion; slower, for texture-poor scenes). Both run on a grey image
shrunk by ``downscale``; the translation is scaled back to full-resolution pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from detector.errors import ConfigError

CAMERA_MOTION_METHODS = ("sparse_flow", "ecc")


def identity_affine() -> np.ndarray:
    """The ``[2, 3]`` affine of a still camera."""
    return np.eye(2, 3)


class CameraMotion:
    """``estimate(image) -> [2, 3]`` affine mapping the previous frame's pixel coordinates to
    ``image``'s (identity on the first frame, after ``reset`` and when estimation fails).

    ``image``: HWC uint8 BGR (or grey). ``downscale``: the estimation runs at 1 / ``downscale``
    of the size (BoT-SORT uses 2).
    """

    def __init__(self, method: str = "sparse_flow", downscale: int = 2) -> None:
        if method not in CAMERA_MOTION_METHODS:
            raise ConfigError(f"camera_motion: expected one of {', '.join(CAMERA_MOTION_METHODS)}, got {method!r}")
        if downscale < 1:
            raise ConfigError(f"camera_motion_downscale: expected an integer >= 1, got {downscale}")
        self.method = method
        self.downscale = int(downscale)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a new sequence)."""
        self.previous: np.ndarray | None = None

    def _grey(self, image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if self.downscale > 1:
            h, w = grey.shape[:2]
            grey = cv2.resize(grey, (w // self.downscale, h // self.downscale), interpolation=cv2.INTER_AREA)
        return grey

    def estimate(self, image: np.ndarray) -> np.ndarray:
        grey = self._grey(np.asarray(image))
        previous, self.previous = self.previous, grey
        if previous is None or previous.shape != grey.shape:
            return identity_affine()
        affine = self._sparse_flow(previous, grey) if self.method == "sparse_flow" else self._ecc(previous, grey)
        if affine is None or not np.isfinite(affine).all():
            return identity_affine()
        affine = affine.astype(np.float64)
        affine[:, 2] *= self.downscale
        return affine

    @staticmethod
    def _sparse_flow(previous: np.ndarray, current: np.ndarray) -> np.ndarray | None:
        corners = cv2.goodFeaturesToTrack(previous, maxCorners=1000, qualityLevel=0.01, minDistance=1, blockSize=3)
        if corners is None or len(corners) < 4:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, corners, None)
        found = status.reshape(-1).astype(bool)
        if found.sum() < 4:
            return None
        affine, _ = cv2.estimateAffinePartial2D(corners[found], moved[found], method=cv2.RANSAC)
        return affine

    @staticmethod
    def _ecc(previous: np.ndarray, current: np.ndarray) -> np.ndarray | None:
        warp = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
        try:
            # ECC finds W with current(W x) ~ previous(x): W maps previous pixels to current ones.
            _, warp = cv2.findTransformECC(previous, current, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
        except cv2.error:
            return None
        return warp
