"""The Kalman filter against hand-computed numbers, and its vectorised form against one track at a time."""

import numpy as np
import pytest

from detector.tracking.kalman import CHI2_95, KalmanFilter, KalmanFilterXYWH, cxcyah_to_xyxy, xyxy_to_cxcyah

# A 50 x 100 box centred at (100, 200): aspect 0.5, height 100. Position noise is 1/20 of the
# height (5 px), velocity noise 1/160 (0.625 px per frame).
Z = np.array([[100.0, 200.0, 0.5, 100.0]])


def test_box_conversions_round_trip():
    boxes = np.array([[75.0, 150.0, 125.0, 250.0], [0.0, 0.0, 10.0, 40.0]])
    np.testing.assert_allclose(xyxy_to_cxcyah(boxes), [[100, 200, 0.5, 100], [5, 20, 0.25, 40]])
    np.testing.assert_allclose(cxcyah_to_xyxy(xyxy_to_cxcyah(boxes)), boxes)
    assert cxcyah_to_xyxy(np.zeros((0, 8))).shape == (0, 4)


def test_initiate_predict_update_by_hand():
    kf = KalmanFilter()
    mean, cov = kf.initiate(Z)
    np.testing.assert_allclose(mean, [[100, 200, 0.5, 100, 0, 0, 0, 0]])
    # std: 2 * 5 = 10 px on position and height, 10 * 0.625 = 6.25 px/frame on velocities.
    np.testing.assert_allclose(np.diag(cov[0]), [100, 100, 1e-4, 100, 39.0625, 39.0625, 1e-10, 39.0625])

    mean, cov = kf.predict(mean, cov)
    np.testing.assert_allclose(mean, [[100, 200, 0.5, 100, 0, 0, 0, 0]])  # no velocity yet
    # var(x) = 100 + var(vx) + q = 100 + 39.0625 + 25; cov(x, vx) = 39.0625; var(vx) += 0.625^2.
    assert cov[0, 0, 0] == pytest.approx(164.0625)
    assert cov[0, 0, 4] == pytest.approx(39.0625)
    assert cov[0, 4, 4] == pytest.approx(39.453125)

    # Measured 10 px to the right: S_xx = 164.0625 + 25 (measurement noise 5 px).
    new_mean, new_cov = kf.update(mean, cov, np.array([[110.0, 200.0, 0.5, 100.0]]))
    assert new_mean[0, 0] == pytest.approx(100 + 10 * 164.0625 / 189.0625)
    assert new_mean[0, 4] == pytest.approx(10 * 39.0625 / 189.0625)
    np.testing.assert_allclose(new_mean[0, [1, 2, 3, 5, 6, 7]], [200, 0.5, 100, 0, 0, 0], atol=1e-12)
    assert new_cov[0, 0, 0] == pytest.approx(164.0625 - 164.0625**2 / 189.0625)

    distance = kf.gating_distance(mean, cov, np.array([[110.0, 200.0, 0.5, 100.0], [100.0, 200.0, 0.5, 100.0]]))
    np.testing.assert_allclose(distance, [[100 / 189.0625, 0.0]], atol=1e-12)
    assert kf.gating_distance(mean, cov, np.array([[160.0, 200.0, 0.5, 100.0]]))[0, 0] > CHI2_95[4]
    only_xy = kf.gating_distance(mean, cov, np.array([[110.0, 200.0, 0.9, 50.0]]), only_position=True)
    assert only_xy[0, 0] == pytest.approx(100 / 189.0625)


def test_velocity_is_learned_from_steady_motion():
    kf = KalmanFilter()
    mean, cov = kf.initiate(Z)
    for step in range(1, 30):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, Z + np.array([[4.0 * step, -2.0 * step, 0.0, 0.0]]))
    np.testing.assert_allclose(mean[0, 4:6], [4.0, -2.0], atol=0.05)
    predicted, _ = kf.predict(mean, cov)
    np.testing.assert_allclose(predicted[0, :2], [100 + 4 * 30, 200 - 2 * 30], atol=0.5)


def test_vectorised_equals_one_at_a_time():
    rng = np.random.default_rng(0)
    kf = KalmanFilter()
    z = np.column_stack(
        [rng.uniform(0, 500, 5), rng.uniform(0, 400, 5), rng.uniform(0.3, 0.6, 5), rng.uniform(40, 200, 5)]
    )
    mean, cov = kf.initiate(z)
    mean, cov = kf.predict(mean, cov)
    measured = z + rng.normal(0, 1, z.shape) * [3.0, 3.0, 0.01, 3.0]
    all_mean, all_cov = kf.update(mean, cov, measured)
    for i in range(5):
        one_mean, one_cov = kf.update(mean[i : i + 1], cov[i : i + 1], measured[i : i + 1])
        np.testing.assert_allclose(all_mean[i], one_mean[0], rtol=1e-12)
        np.testing.assert_allclose(all_cov[i], one_cov[0], rtol=1e-10, atol=1e-12)
    d = kf.gating_distance(mean, cov, measured)
    assert d.shape == (5, 5) and np.all(np.diag(d) < CHI2_95[4])
    assert kf.gating_distance(mean[:0], cov[:0], measured).shape == (0, 5)
    assert kf.update(mean[:0], cov[:0], measured[:0])[0].shape == (0, 8)


def test_xywh_filter_noise_follows_width_and_height():
    # BoT-SORT's state: a 50 x 100 box; x and w noise from the width (2.5 px), y and h from the height (5 px).
    kf = KalmanFilterXYWH()
    boxes = np.array([[75.0, 150.0, 125.0, 250.0]])
    z = kf.from_xyxy(boxes)
    np.testing.assert_allclose(z, [[100, 200, 50, 100]])
    np.testing.assert_allclose(kf.to_xyxy(z), boxes)
    mean, cov = kf.initiate(z)
    w, h = 50 / 20, 100 / 20
    vw, vh = 50 / 160, 100 / 160
    np.testing.assert_allclose(
        np.diag(cov[0]), np.array([2 * w, 2 * h, 2 * w, 2 * h, 10 * vw, 10 * vh, 10 * vw, 10 * vh]) ** 2
    )
    _, predicted = kf.predict(mean, cov)
    assert predicted[0, 2, 2] == pytest.approx((2 * w) ** 2 + (10 * vw) ** 2 + w**2)
    kf.freeze_size(mean, np.array([0]))  # both size rates
    mean[0, 4:] = 1.0
    kf.freeze_size(mean, np.array([0]))
    np.testing.assert_allclose(mean[0, 4:], [1, 1, 0, 0])


@pytest.mark.parametrize("kind", [KalmanFilter, KalmanFilterXYWH])
def test_warp_moves_centres_and_velocities(kind):
    kf = kind()
    mean, cov = kf.initiate(kf.from_xyxy(np.array([[75.0, 150.0, 125.0, 250.0]])))
    mean[0, 4:6] = [3.0, -1.0]
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90 degrees, then 10 px right
    warped, warped_cov = kf.warp(mean, cov, np.column_stack([rotation, [10.0, 0.0]]))
    np.testing.assert_allclose(warped[0, :2], [-200 + 10, 100])
    np.testing.assert_allclose(warped[0, 4:6], [1, 3])
    assert warped_cov[0, 0, 0] == pytest.approx(cov[0, 1, 1]) and warped_cov[0, 1, 1] == pytest.approx(cov[0, 0, 0])
