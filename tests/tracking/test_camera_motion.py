"""Camera-motion compensation: the global shift of a synthetic frame pair, and tracks moved by it."""

import cv2
import numpy as np
import pytest

from detector.errors import ConfigError
from detector.tracking.camera_motion import CameraMotion
from detector.tracking.tracker import BotSortTracker, ByteTracker

SHIFT = (7.3, -4.6)  # the camera pans: the scene moves 7.3 px right and 4.6 px up in the image


def textured_frames(shift=SHIFT, size=(240, 320)):
    """A smooth random texture and the same texture translated by ``shift`` (x, y) pixels."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (size[0] + 80, size[1] + 80, 3)).astype(np.uint8), (0, 0), 2.0)
    first = base[40 : 40 + size[0], 40 : 40 + size[1]]
    moved = cv2.warpAffine(base, np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32), base.shape[1::-1])
    return first, moved[40 : 40 + size[0], 40 : 40 + size[1]]


@pytest.mark.parametrize("method", ["sparse_flow", "ecc"])
def test_the_estimated_shift_is_within_half_a_pixel(method):
    first, second = textured_frames()
    camera = CameraMotion(method)
    np.testing.assert_array_equal(camera.estimate(first), np.eye(2, 3))  # nothing to compare with yet
    affine = camera.estimate(second)
    np.testing.assert_allclose(affine[:, 2], SHIFT, atol=0.5)
    np.testing.assert_allclose(affine[:, :2], np.eye(2), atol=0.01)
    camera.reset()
    np.testing.assert_array_equal(camera.estimate(second), np.eye(2, 3))


def test_tracks_move_with_the_camera():
    first, second = textured_frames()
    person = np.array([[100.0, 60.0, 140.0, 160.0]])
    for tracker, moved in ((BotSortTracker(), True), (ByteTracker(camera_motion="sparse_flow"), True),
                           (ByteTracker(), False)):  # fmt: skip
        tracker.update(person, np.array([0.9]), image=first)
        before = tracker.kalman.to_xyxy(tracker.mean)
        tracker.update(np.zeros((0, 4)), np.zeros(0), image=second)  # the person is missed here
        shift = tracker.kalman.to_xyxy(tracker.mean) - before
        expected = np.tile(SHIFT, 2) if moved else np.zeros(4)
        np.testing.assert_allclose(shift[0], expected, atol=0.5)


def test_without_images_there_is_no_compensation():
    tracker = BotSortTracker()
    person = np.array([[100.0, 60.0, 140.0, 160.0]])
    tracker.update(person, np.array([0.9]))
    tracks = tracker.update(person, np.array([0.9]))
    np.testing.assert_allclose(tracks.boxes, person, atol=1e-6)


def test_bad_settings():
    with pytest.raises(ConfigError, match="camera_motion: expected one of sparse_flow, ecc, got 'orb'"):
        CameraMotion("orb")
    with pytest.raises(ConfigError, match="camera_motion_downscale: expected an integer >= 1, got 0"):
        CameraMotion(downscale=0)
