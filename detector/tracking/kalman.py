"""Constant-velocity Kalman filters on a box, vectorised over all tracks.

``KalmanFilter``: the state is ``[cx, cy, a, h, vcx, vcy, va, vh]`` (pixels, aspect = w / h,
per-frame velocities); a measurement is ``[cx, cy, a, h]``. Position and velocity noise are
proportional to the box height, as in SORT/DeepSORT/ByteTrack (weights 1/20 and 1/160 of the
height per frame), so a near, tall pedestrian may move more pixels than a far one. The aspect
ratio gets fixed small noise: people keep their shape.

``KalmanFilterXYWH``: BoT-SORT's model (Aharon et al., 2022): state ``[cx, cy, w, h, vcx, vcy,
vw, vh]``, noise on x and w proportional to the width and on y and h to the height, so the box
width is estimated rather than tied to a fixed aspect.
"""

from __future__ import annotations

import numpy as np

#: 95 % quantiles of the chi-square distribution by degrees of freedom: the gate on the squared
#: Mahalanobis distance (4 for the full measurement, 2 for the position only).
CHI2_95 = {1: 3.8415, 2: 5.9915, 3: 7.8147, 4: 9.4877}
CHI2_99 = {4: 13.2767}  # BoostTrack's limit for a detection nobody follows


def xyxy_to_cxcyah(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` x1, y1, x2, y2 pixels to ``[N, 4]`` cx, cy, w / h, h."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def cxcyah_to_xyxy(states: np.ndarray) -> np.ndarray:
    """``[N, >=4]`` cx, cy, a, h (the first four entries) to ``[N, 4]`` x1, y1, x2, y2."""
    states = np.asarray(states, dtype=np.float64)
    states = states.reshape(len(states), -1) if states.size else np.zeros((0, 4))
    h = states[:, 3]
    w = states[:, 2] * h
    return np.stack([states[:, 0] - w / 2, states[:, 1] - h / 2, states[:, 0] + w / 2, states[:, 1] + h / 2], axis=1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` x1, y1, x2, y2 pixels to ``[N, 4]`` cx, cy, w, h."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)


def cxcywh_to_xyxy(states: np.ndarray) -> np.ndarray:
    """``[N, >=4]`` cx, cy, w, h (the first four entries) to ``[N, 4]`` x1, y1, x2, y2."""
    states = np.asarray(states, dtype=np.float64)
    states = states.reshape(len(states), -1)[:, :4] if states.size else np.zeros((0, 4))
    return np.concatenate([states[:, :2] - states[:, 2:4] / 2, states[:, :2] + states[:, 2:4] / 2], axis=1)


class KalmanFilter:
    """Predict, update and gate many tracks at once. Means are ``[N, 8]``, covariances ``[N, 8, 8]``.

    ``std_weight_position`` and ``std_weight_velocity`` scale the noise by the box height.
    ``size_velocities``: the state entries of the size's velocity, zeroed by ``freeze_size``.
    ``noise_scales``: for each measured quantity, the state entry its noise is proportional to;
    ``fixed_aspect``: the aspect (entry 2) gets fixed noise instead.
    """

    size_velocities: tuple[int, ...] = (7,)
    noise_scales: tuple[int, ...] = (3, 3, 3, 3)  # all by the height
    fixed_aspect = True

    def __init__(self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160) -> None:
        self.std_weight_position = float(std_weight_position)
        self.std_weight_velocity = float(std_weight_velocity)
        self.motion = np.eye(8)
        self.motion[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t (one frame)

    #: Measurements ``[N, 4]`` of boxes ``[N, 4]`` xyxy pixels, and back (states ``[N, >=4]`` too).
    from_xyxy = staticmethod(xyxy_to_cxcyah)
    to_xyxy = staticmethod(cxcyah_to_xyxy)

    def _std(self, z: np.ndarray, position: float, velocity: float, aspect: float) -> np.ndarray:
        """``[N, 8]`` noise std of states or measurements ``z``: ``position`` and ``velocity`` times
        the sizes ``noise_scales``; with ``fixed_aspect``, ``aspect`` and a thousandth of it on its rate."""
        base = z[:, self.noise_scales]
        std = np.concatenate([position * base, velocity * base], axis=1)
        if self.fixed_aspect:
            std[:, 2] = aspect
            std[:, 6] = aspect * 1e-3
        return std

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from measurements ``[N, 4]``: zero velocity, wide uncertainty."""
        z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        mean = np.concatenate([z, np.zeros((len(z), 4))], axis=1)
        std = self._std(z, 2 * self.std_weight_position, 10 * self.std_weight_velocity, 1e-2)
        return mean, _diag(std**2)

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead for every track: ``x = F x``, ``P = F P F^T + Q`` (Q from the box size)."""
        std = self._std(mean, self.std_weight_position, self.std_weight_velocity, 1e-2)
        mean = mean @ self.motion.T
        covariance = self.motion @ covariance @ self.motion.T + _diag(std**2)
        return mean, covariance

    def freeze_size(self, mean: np.ndarray, rows: np.ndarray) -> None:
        """Zero the size velocities of tracks ``rows`` in place (a track not being followed keeps
        its position but not its growth)."""
        for i in self.size_velocities:
            mean[rows, i] = 0.0

    def warp(self, mean: np.ndarray, covariance: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move every track by the camera's motion ``affine`` ``[2, 3]`` (previous frame's pixels to
        this frame's): centre ``x -> A x + t``, velocity ``v -> A v``, and so their covariances."""
        affine = np.asarray(affine, dtype=np.float64)
        transform = np.eye(8)
        transform[0:2, 0:2] = affine[:, :2]
        transform[4:6, 4:6] = affine[:, :2]
        mean = mean @ transform.T
        mean[:, 0:2] += affine[:, 2]
        return mean, transform @ covariance @ transform.T

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predicted measurement ``[N, 4]`` and its covariance ``[N, 4, 4]`` (with measurement noise)."""
        std = self._std(mean, self.std_weight_position, 0.0, 1e-1)[:, :4]
        # The measurement is the state's first four entries (H = [I 0]): H x and H P H^T are
        # slices, cheaper than batched products for the few tracks of a frame.
        return mean[:, :4].copy(), covariance[:, :4, :4] + _diag(std**2)

    def update(
        self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct tracks ``i`` with measurement ``measurements[i]`` (``[N, 4]`` cx, cy, a, h)."""
        if len(mean) == 0:
            return mean, covariance
        projected, s = self.project(mean, covariance)
        ph_t = covariance[:, :, :4]  # [N, 8, 4]: P H^T, H being the first four entries
        # K = P H^T S^-1, solved rather than inverted (S is symmetric positive definite).
        gain = np.linalg.solve(s, ph_t.transpose(0, 2, 1)).transpose(0, 2, 1)
        innovation = np.asarray(measurements, dtype=np.float64).reshape(-1, 4) - projected
        mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        covariance = covariance - gain @ s @ gain.transpose(0, 2, 1)
        return mean, covariance

    def gating_distance(
        self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray, only_position: bool = False
    ) -> np.ndarray:
        """Squared Mahalanobis distances ``[N_tracks, M]`` from every track's predicted measurement
        to every measurement ``[M, 4]``; compare with ``CHI2_95[4]`` (or ``[2]`` with ``only_position``)."""
        z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        if len(mean) == 0 or len(z) == 0:
            return np.zeros((len(mean), len(z)))
        projected, s = self.project(mean, covariance)
        if only_position:
            projected, s, z = projected[:, :2], s[:, :2, :2], z[:, :2]
        chol = np.linalg.cholesky(s)  # [N, d, d]
        diff = z[None, :, :] - projected[:, None, :]  # [N, M, d]
        solved = np.linalg.solve(chol, diff.transpose(0, 2, 1))  # [N, d, M]: L^-1 (z - Hx)
        return (solved**2).sum(axis=1)


class KalmanFilterXYWH(KalmanFilter):
    """BoT-SORT's filter: state ``[cx, cy, w, h, vcx, vcy, vw, vh]``, measurement ``[cx, cy, w, h]``;
    x and w noise proportional to the width, y and h noise to the height."""

    size_velocities = (6, 7)
    noise_scales = (2, 3, 2, 3)  # x and w by the width, y and h by the height
    fixed_aspect = False
    from_xyxy = staticmethod(xyxy_to_cxcywh)
    to_xyxy = staticmethod(cxcywh_to_xyxy)

    def warp(self, mean: np.ndarray, covariance: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As ``KalmanFilter.warp``; the width and height (and their rates) are transformed as a
        vector too, as BoT-SORT does, so a camera zoom scales the boxes."""
        affine = np.asarray(affine, dtype=np.float64)
        transform = np.kron(np.eye(4), affine[:, :2])
        mean = mean @ transform.T
        mean[:, 0:2] += affine[:, 2]
        return mean, transform @ covariance @ transform.T


def _diag(values: np.ndarray) -> np.ndarray:
    out = np.zeros((*values.shape, values.shape[-1]))
    idx = np.arange(values.shape[-1])
    out[..., idx, idx] = values
    return out
