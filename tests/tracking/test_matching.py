"""Association costs and the thresholded Hungarian assignment."""

import numpy as np
import pytest

from detector.tracking.geometry import box_iou
from detector.tracking.kalman import CHI2_99
from detector.tracking.matching import (
    COSTS,
    centre_distance_cost,
    giou_cost,
    height_modulated_iou_cost,
    iou_cost,
    linear_assignment,
    mahalanobis_similarity,
    shape_similarity,
)


def test_iou_and_costs_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]], float)  # the second one is empty
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0, 1], [0, 0, 0]])
    np.testing.assert_allclose(iou_cost(a[:1], b), [[1 - 1 / 3, 1, 0]])
    # GIoU of the disjoint pair: hull 30 x 30 = 900, union 200: -700/900; cost (1 + 7/9) / 2.
    np.testing.assert_allclose(giou_cost(a[:1], b), [[(1 - 1 / 3) / 2, (1 + 700 / 900) / 2, 0]])
    np.testing.assert_allclose(
        centre_distance_cost(a[:1], b), [[5 / np.hypot(10, 10), 20 * np.sqrt(2) / np.hypot(10, 10), 0]]
    )
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3) and box_iou(a, np.zeros((0, 4))).shape == (2, 0)


@pytest.mark.parametrize("name", sorted(COSTS))
def test_every_cost_is_the_same_given_the_iou_computed_already(name):
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 50, (7, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 30, (7, 2))], axis=1)
    a, b = boxes[:3], boxes[3:]
    np.testing.assert_array_equal(COSTS[name](a, b, box_iou(a, b)), COSTS[name](a, b))


def test_height_modulated_iou_by_hand():
    a = np.array([[0, 0, 10, 20]], float)
    # Half the height shared: IoU 100 / 300, height IoU 10 / 30.
    b = np.array([[0, 10, 10, 30], [0, 0, 10, 20], [0, 25, 10, 45], [20, 0, 30, 20]], float)
    np.testing.assert_allclose(height_modulated_iou_cost(a, b), [[1 - 1 / 9, 0, 1, 1]])
    # Overlapping side by side at one height: the IoU (100 / 300); a half-height box inside the
    # first's height (a farther person): its IoU 50 / 250 times its height IoU 10 / 20.
    c = np.array([[5, 0, 15, 20], [5, 5, 15, 15]], float)
    np.testing.assert_allclose(height_modulated_iou_cost(a, c), [[1 - 1 / 3, 1 - 0.2 * 0.5]])


def test_shape_and_mahalanobis_similarity_by_hand():
    a = np.array([[0, 0, 10, 20]], float)
    b = np.array([[100, 100, 110, 120], [0, 0, 5, 20], [0, 0, 20, 10]], float)
    # Equal sizes anywhere: 1; half the width: exp(-0.5); width doubled, height halved: exp(-1).
    np.testing.assert_allclose(shape_similarity(a, b), [[1, np.exp(-0.5), np.exp(-1.0)]])
    limit = CHI2_99[4]
    distance = np.array([[limit - 1, limit, limit + 5], [0.0, 2.0, 50.0]])
    e, L = np.e, limit
    expected = [[e / (e + 2), 1 / (e + 2), 0], [e**L / (e**L + e ** (L - 2) + 1), 1 / (1 + e**2 + e ** -(L - 2)), 0]]
    np.testing.assert_allclose(mahalanobis_similarity(distance, limit), expected)
    assert mahalanobis_similarity(np.zeros((2, 0)), limit).shape == (2, 0)


def test_assignment_is_optimal_on_rectangular_matrices():
    cost = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4]])
    matches, rows, cols = linear_assignment(cost, 1.0)
    np.testing.assert_array_equal(matches, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(rows, []) and np.testing.assert_array_equal(cols, [2])
    matches, rows, cols = linear_assignment(cost.T, 1.0)
    np.testing.assert_array_equal(matches, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(rows, [2]) and np.testing.assert_array_equal(cols, [])


def test_threshold_and_forbidden_pairs():
    cost = np.array([[0.1, 0.7], [0.75, np.inf]])
    # Matching both (0.7 + 0.75) costs more than one good match plus an unmatched pair (0.1 + 0.8).
    matches, rows, cols = linear_assignment(cost, 0.8)
    np.testing.assert_array_equal(matches, [[0, 0]])
    np.testing.assert_array_equal(rows, [1]) and np.testing.assert_array_equal(cols, [1])
    matches, _, _ = linear_assignment(cost, 0.6)
    np.testing.assert_array_equal(matches, [[0, 0]])
    matches, rows, cols = linear_assignment(np.array([[0.5, np.nan]]), 0.4)
    assert len(matches) == 0 and rows.tolist() == [0] and cols.tolist() == [0, 1]


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (4, 0)])
def test_empty_matrices(shape):
    matches, rows, cols = linear_assignment(np.zeros(shape), 0.5)
    assert matches.shape == (0, 2) and matches.dtype == np.int64
    assert rows.tolist() == list(range(shape[0])) and cols.tolist() == list(range(shape[1]))


def test_pairs_without_rivals_all_match():
    # Rows 0 and 2 may each take one column no other row may take (a boosted cost can be
    # negative); row 1 and column 0 have nothing under the threshold.
    cost = np.array([[np.inf, 0.3, np.inf], [0.9, np.inf, np.inf], [np.inf, 0.85, -0.2]])
    matches, rows, cols = linear_assignment(cost, 0.8)
    np.testing.assert_array_equal(matches, [[0, 1], [2, 2]])
    assert rows.tolist() == [1] and cols.tolist() == [0]


def brute_force_cost(cost: np.ndarray, t: float, rows: list, cols: list) -> float:
    """The cheapest total over all partial matchings, an unmatched row or column costing t / 2."""
    if not rows:
        return t * len(cols) / 2
    r, rest = rows[0], rows[1:]
    options = [t / 2 + brute_force_cost(cost, t, rest, cols)]
    for c in cols:
        if cost[r, c] <= t:
            options.append(cost[r, c] + brute_force_cost(cost, t, rest, [x for x in cols if x != c]))
    return min(options)


@pytest.mark.parametrize("forbidden", [0.0, 0.6])
def test_agrees_with_brute_force_on_random_matrices(forbidden):
    # With most pairs forbidden, rows and columns often have one allowed pair or none (the
    # shortcut without the Hungarian search); otherwise they compete.
    rng = np.random.default_rng(0)
    t = 0.6
    for _ in range(50):
        n, m = (int(v) for v in rng.integers(1, 5, 2))
        cost = np.where(rng.uniform(0, 1, (n, m)) < forbidden, np.inf, rng.uniform(0, 1, (n, m)))
        matches, _, _ = linear_assignment(cost, t)
        got = cost[matches[:, 0], matches[:, 1]].sum() + t * (n + m - 2 * len(matches)) / 2
        assert got == pytest.approx(brute_force_cost(cost, t, list(range(n)), list(range(m))))
        assert all(cost[r, c] <= t for r, c in matches)
