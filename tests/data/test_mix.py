"""Mosaic, MixUp and the mosaic's affine: boxes stay on their pixels, never leave the image, and
are filtered by the configured thresholds."""

import math

import cv2
import numpy as np
import pytest

from detector.data.mix import (
    MixParams,
    box_candidates,
    mixup,
    mosaic,
    place_for_mixup,
    random_affine_matrix,
    warp_boxes,
)
from detector.errors import ConfigError

# Each object has a unique label; its colour says which label it is. Base objects are painted in
# the blue and green channels, MixUp partners in the red channel only, so that after a blend
# each object can still be found in its own channels.
BASE_VALUES = [(b, g) for b in (60, 120, 180, 240) for g in (60, 120, 180, 240)]
PARTNER_VALUES = [60, 120, 180, 240]


def base_colour(label: int) -> tuple[int, int, int]:
    b, g = BASE_VALUES[label]
    return b, g, 0


def painted_sample(h: int, w: int, boxes, labels, image_id: int, partner: bool = False) -> dict:
    image = np.zeros((h, w, 3), np.uint8)
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        colour = (0, 0, PARTNER_VALUES[label - 100]) if partner else base_colour(label)
        image[y1:y2, x1:x2] = colour
    return {
        "image": image,
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "labels": np.array(labels, np.int64),
        "image_id": image_id,
        "orig_size": (h, w),
    }


def four_images() -> list[dict]:
    """Four images of different sizes, three non-overlapping objects each (labels 0..11)."""
    sizes = [(480, 640), (640, 480), (300, 300), (640, 640)]
    layouts = [
        [(40, 40, 140, 120), (300, 200, 420, 330), (500, 380, 620, 470)],
        [(30, 60, 200, 160), (250, 300, 460, 420), (100, 500, 220, 630)],
        [(10, 10, 90, 70), (120, 150, 200, 290), (220, 20, 290, 110)],
        [(0, 0, 120, 100), (260, 260, 400, 380), (520, 500, 640, 640)],
    ]
    return [
        painted_sample(h, w, layout, [3 * i, 3 * i + 1, 3 * i + 2], image_id=i + 1)
        for i, ((h, w), layout) in enumerate(zip(sizes, layouts, strict=True))
    ]


def colour_mask(image: np.ndarray, channels, values, tol: int = 8) -> np.ndarray:
    """Pixels of one object's colour. The opening drops the thin lines where the blended edge of
    a brighter object passes through this colour."""
    mask = np.all(np.abs(image[..., channels].astype(int) - np.array(values)) <= tol, axis=-1)
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)


def extent(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def assert_boxes_on_their_pixels(out: dict, masks: dict, tight_tol: float, inside_tol: float = 1.0) -> None:
    """Every box encloses its object's pixels and fits them (within ``tight_tol`` px) unless it
    was clipped at the image border; every clearly visible object has its box."""
    h, w = out["image"].shape[:2]
    boxes, labels = out["boxes"], out["labels"]
    assert boxes.dtype == np.float32 and labels.dtype == np.int64 and len(boxes) == len(labels)
    assert len(set(labels.tolist())) == len(labels), "one box per object"
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    by_label = dict(zip(labels.tolist(), boxes, strict=True))
    for label, mask in masks.items():
        seen = extent(mask)
        if label not in by_label:
            assert mask.sum() < 30, f"object {label} has {mask.sum()} visible pixels but no box"
            continue
        box = by_label[label]
        assert seen is not None, f"box {box} of object {label} but none of its pixels is visible"
        assert np.all(seen[:2] >= box[:2] - inside_tol) and np.all(seen[2:] <= box[2:] + inside_tol), (label, seen, box)
        at_border = box[0] <= 0.5 or box[1] <= 0.5 or box[2] >= w - 0.5 or box[3] >= h - 0.5
        if not at_border:
            np.testing.assert_allclose(box, seen, atol=tight_tol, err_msg=f"object {label}")


def base_masks(out: dict, labels=range(12)) -> dict:
    return {label: colour_mask(out["image"], [0, 1], base_colour(label)[:2]) for label in labels}


NO_FILTER = {"min_box_size": 0.0, "min_area_ratio": 0.0, "max_aspect_ratio": 1e9, "pad_value": 0}


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_boxes_stay_on_their_pixels_without_rotation(seed):
    params = MixParams(degrees=0.0, shear=0.0, scale=(0.5, 1.5), **NO_FILTER)
    out = mosaic(four_images(), (416, 384), np.random.default_rng(seed), params)
    assert out["image"].shape == (416, 384, 3) and out["image"].dtype == np.uint8
    assert out["source_ids"] == [1, 2, 3, 4] and out["image_id"] == 1 and out["orig_size"] == (416, 384)
    assert len(out["boxes"]) >= 3  # the centre is in the middle half: all four images show
    assert_boxes_on_their_pixels(out, base_masks(out), tight_tol=1.5)


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_boxes_enclose_rotated_and_sheared_objects(seed):
    params = MixParams(degrees=15.0, shear=5.0, scale=(0.6, 1.4), **NO_FILTER)
    out = mosaic(four_images(), (448, 448), np.random.default_rng(seed), params)
    # The box of a rotated rectangle is the box of its four rotated corners, which are pixels of it.
    assert_boxes_on_their_pixels(out, base_masks(out), tight_tol=2.5)


class MidpointRng:
    """Stands in for a numpy Generator: every uniform draw is the middle of its range, so the
    mosaic centre is the canvas centre and the affine is a pure shift by half the input size."""

    def uniform(self, low, high):
        return (low + high) / 2

    def random(self):
        return 0.5

    def integers(self, low, high):
        return low


def test_mosaic_geometry_and_area_filter_by_hand():
    # Four 200 x 200 images on a 400 x 400 canvas around its centre (200, 200); the output (200 x 200)
    # is canvas [100, 300]^2. Image 0 (top-left) is canvas [0, 200]^2, so it shows as output [0, 100]^2
    # from its own pixels [100, 200]^2.
    empty = painted_sample(200, 200, [], [], 9)
    boxes = [
        (80, 120, 120, 160),  # x 80..120 -> output -20..20: 50% of it left
        (60, 20, 120, 180),  # x 60..120 -> -40..20 (1/3 left), y 20..180 -> -80..80 (1/2 left)
        (150, 150, 190, 190),  # fully inside: output 50..90
        (10, 10, 50, 50),  # fully outside the output
    ]
    first = painted_sample(200, 200, boxes[:1] + boxes[2:], [0, 2, 3], 1)
    first["boxes"] = np.array(boxes, np.float32)
    first["labels"] = np.array([0, 1, 2, 3])
    samples = [first, empty, empty, empty]

    def run(**thresholds):
        params = MixParams(degrees=0.0, shear=0.0, translate=0.0, scale=(1.0, 1.0), pad_value=0, **thresholds)
        return mosaic(samples, (200, 200), MidpointRng(), params)

    out = run(min_area_ratio=0.0, min_box_size=0.0, max_aspect_ratio=100.0)
    np.testing.assert_array_equal(out["labels"], [0, 1, 2])
    np.testing.assert_allclose(out["boxes"], [[0, 20, 20, 60], [0, 0, 20, 80], [50, 50, 90, 90]])
    np.testing.assert_array_equal(out["image"][50:90, 50:90], np.broadcast_to(base_colour(2), (40, 40, 3)))
    assert np.all(out["image"][100:] == 0) and np.all(out["image"][:, 100:] == 0)  # empty images, pad 0

    # Object 1 keeps 1/3 of its width and 1/2 of its height: 1/6 of its area.
    np.testing.assert_array_equal(run(min_area_ratio=0.16, min_box_size=0.0)["labels"], [0, 1, 2])
    np.testing.assert_array_equal(run(min_area_ratio=0.17, min_box_size=0.0)["labels"], [0, 2])
    np.testing.assert_array_equal(run(min_area_ratio=0.6, min_box_size=0.0)["labels"], [2])
    np.testing.assert_array_equal(run(min_area_ratio=0.0, min_box_size=25.0)["labels"], [2])
    # Object 1 is 20 x 80 after clipping: aspect 4.
    np.testing.assert_array_equal(run(min_area_ratio=0.0, max_aspect_ratio=3.9)["labels"], [0, 2])


def test_mosaic_of_empty_images_and_of_mixed_sizes():
    empty = [painted_sample(h, w, [], [], i) for i, (h, w) in enumerate([(50, 400), (400, 50), (10, 10), (640, 480)])]
    out = mosaic(empty, (256, 256), np.random.default_rng(0), MixParams())
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)
    assert out["image"].shape == (256, 256, 3)
    mixed = four_images()[:2] + empty[:2]
    out = mosaic(mixed, (320, 320), np.random.default_rng(1), MixParams(degrees=0.0, shear=0.0, **NO_FILTER))
    assert set(out["labels"].tolist()) <= set(range(6))
    assert_boxes_on_their_pixels(out, base_masks(out, range(6)), tight_tol=1.5)


def test_mosaic_needs_four_samples():
    with pytest.raises(ValueError, match="expected 4 samples, got 3"):
        mosaic(four_images()[:3], (64, 64), np.random.default_rng(0), MixParams())


def partner_sample() -> dict:
    return painted_sample(
        360, 500, [(20, 30, 120, 150), (200, 100, 330, 200), (380, 220, 490, 350), (150, 250, 260, 340)],
        [100, 101, 102, 103], image_id=50, partner=True,
    )  # fmt: skip


def partner_masks(out: dict, scale: float = 1.0) -> dict:
    return {100 + k: colour_mask(out["image"], [2], [round(v * scale)], tol=6) for k, v in enumerate(PARTNER_VALUES)}


@pytest.mark.parametrize("seed", range(8))
def test_mixup_partner_is_jittered_flipped_and_cropped_with_its_boxes(seed):
    params = MixParams(mixup_scale=(0.5, 1.5), mixup_flip=0.5, **NO_FILTER)
    placed = place_for_mixup(partner_sample(), (320, 352), np.random.default_rng(seed), params)
    assert placed["image"].shape == (320, 352, 3) and placed["image_id"] == 50
    assert_boxes_on_their_pixels(placed, partner_masks(placed), tight_tol=1.5)


def test_mixup_flip_mirrors_the_letterboxed_canvas():
    # Jitter 1 (scale range [1, 1]), always flipped: the letterbox canvas is the output itself, so
    # the flip mirrors the letterboxed image inside it. 360 x 500 into 320 x 352: r = 0.704.
    params = MixParams(mixup_scale=(1.0, 1.0), mixup_flip=1.0, **NO_FILTER)
    placed = place_for_mixup(partner_sample(), (320, 352), np.random.default_rng(0), params)
    r = 352 / 500
    x1, y1, x2, y2 = 20 * r, 30 * r, 120 * r, 150 * r
    np.testing.assert_allclose(placed["boxes"][0], [352 - x2, y1, 352 - x1, y2], atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_mixup_blend_keeps_both_sets_of_boxes_on_their_pixels(seed):
    rng = np.random.default_rng(seed)
    params = MixParams(degrees=5.0, shear=0.0, scale=(0.7, 1.3), **NO_FILTER)
    base = mosaic(four_images(), (384, 384), rng, params)
    other = place_for_mixup(partner_sample(), (384, 384), rng, params)
    mixed = mixup(base, other, 0.5)
    assert len(mixed["boxes"]) == len(base["boxes"]) + len(other["boxes"])
    np.testing.assert_array_equal(mixed["labels"], np.concatenate([base["labels"], other["labels"]]))
    assert mixed["source_ids"] == [1, 2, 3, 4, 50] and mixed["image_id"] == 1
    # Blue/green carry half of each base object, red half of each partner object.
    half_base = {
        label: colour_mask(mixed["image"], [0, 1], [v / 2 for v in base_colour(label)[:2]], tol=4)
        for label in range(12)
    }
    for label in range(12):
        if label in base["labels"]:
            box = mixed["boxes"][list(mixed["labels"]).index(label)]
            seen = extent(half_base[label])
            assert seen is not None and np.all(seen[:2] >= box[:2] - 1) and np.all(seen[2:] <= box[2:] + 1)
    for label, mask in partner_masks(mixed, scale=0.5).items():
        if label in other["labels"]:
            box = mixed["boxes"][list(mixed["labels"]).index(label)]
            np.testing.assert_allclose(box, extent(mask), atol=1.5)


def test_mixup_ratio_weights_the_images():
    a = {"image": np.full((4, 4, 3), 200, np.uint8), "boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}
    b = {"image": np.full((4, 4, 3), 100, np.uint8), "boxes": [[0, 0, 2, 2]], "labels": [7], "image_id": 3}
    mixed = mixup(a, b, 0.7)
    assert np.all(mixed["image"] == 170)
    np.testing.assert_array_equal(mixed["labels"], [7])
    with pytest.raises(ValueError, match="different shapes"):
        mixup(a, {**b, "image": np.zeros((5, 4, 3), np.uint8)}, 0.5)


def test_warp_boxes_and_affine_matrix():
    boxes = np.array([[0, 0, 10, 20]], np.float64)
    rot90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(warp_boxes(boxes, rot90), [[-20, 0, 0, 10]])
    m = random_affine_matrix(np.random.default_rng(0), (100, 200), (50.0, 60.0), 0.0, 0.0, (2.0, 2.0), 0.0)
    np.testing.assert_allclose(m @ [50, 60, 1], [100, 50, 1])  # the centre goes to the output centre
    np.testing.assert_allclose(m[:2, :2], [[2, 0], [0, 2]], atol=1e-12)
    m = random_affine_matrix(np.random.default_rng(1), (100, 100), (0.0, 0.0), 30.0, 0.0, (1.0, 1.0), 0.0)
    angle = math.degrees(math.atan2(-m[0, 1], m[0, 0]))
    assert abs(angle) <= 30.0 and abs(np.linalg.det(m[:2, :2]) - 1.0) < 1e-9


def test_box_candidates_thresholds():
    full = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 100, 2], [0, 0, 10, 10]], np.float64)
    clipped = np.array([[0, 0, 10, 10], [0, 0, 10, 0.5], [0, 0, 100, 2], [0, 0, 5, 1.9]], np.float64)
    np.testing.assert_array_equal(box_candidates(full, clipped, 1.0, 0.1, 20.0), [True, False, False, False])
    np.testing.assert_array_equal(box_candidates(full, clipped, 0.0, 0.0, 60.0), [True, True, True, True])


def test_params_from_config_errors_name_key_and_expectation():
    assert MixParams.from_config({"mosaic_prob": 0.5, "scale": [0.5, 1.5]}).scale == (0.5, 1.5)
    with pytest.raises(
        ConfigError, match=r"data\.mix\.mosaic_porb: unknown key; did you mean 'data\.mix\.mosaic_prob'"
    ):
        MixParams.from_config({"mosaic_porb": 1.0})
    with pytest.raises(ConfigError, match=r"data\.mix\.mixup_prob: expected a value in \[0, 1\], got 1.5"):
        MixParams.from_config({"mixup_prob": 1.5})
    with pytest.raises(ConfigError, match=r"data\.mix\.scale: expected \[low, high\] with 0 < low <= high"):
        MixParams.from_config({"scale": [2.0, 1.0]})
    with pytest.raises(ConfigError, match=r"data\.mix\.mixup_source: 'both'; expected one of 'plain', 'mosaic'"):
        MixParams.from_config({"mixup_source": "both"})
    with pytest.raises(ConfigError, match=r"data\.mix\.buffer_size: 2.5; expected an integer"):
        MixParams.from_config({"buffer_size": 2.5})
    with pytest.raises(ConfigError, match=r"data\.mix\.degrees: 'ten'; expected a number"):
        MixParams.from_config({"degrees": "ten"})
