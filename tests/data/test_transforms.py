import albumentations as A
import numpy as np
import pytest

from detector.data.transforms import EvalTransform, TrainTransform, build_augmentations, letterbox
from detector.errors import ConfigError
from detector.registry import TRANSFORMS

GRAY = 90
RED_BOX = (50, 60, 170, 140)  # x1, y1, x2, y2 on a 240 x 320 (h x w) image


def red_sample(h: int = 240, w: int = 320, box=RED_BOX) -> dict:
    """A plain gray BGR image with a pure red filled rectangle exactly at ``box``."""
    image = np.full((h, w, 3), GRAY, np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = (0, 0, 255)
    return {
        "image": image,
        "boxes": np.array([box], np.float32),
        "labels": np.array([3], np.int64),
        "image_id": 1,
        "orig_size": (h, w),
    }


def red_extent(image: np.ndarray) -> np.ndarray:
    """xyxy extent of the clearly red pixels (half-blended edge pixels count as red)."""
    red = image[..., 2].astype(int) - np.maximum(image[..., 0], image[..., 1]).astype(int) > 100
    ys, xs = np.nonzero(red)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_letterbox_numbers():
    image = np.full((100, 200, 3), 7, np.uint8)
    canvas, r = letterbox(image, 64)
    assert r == pytest.approx(0.32) and canvas.shape == (64, 64, 3) and canvas.dtype == np.uint8
    assert np.all(canvas[:32, :64] == 7) and np.all(canvas[32:] == 114)

    canvas, r = letterbox(np.full((50, 50, 3), 7, np.uint8), (96, 128), pad_value=0)
    assert r == pytest.approx(1.92) and canvas.shape == (96, 128, 3)
    assert np.all(canvas[:, :96] == 7) and np.all(canvas[:, 96:] == 0)

    # 333 x 500 -> r = 1.28: 640 x int(426.24) = 426 rows of image, the rest padding.
    canvas, r = letterbox(np.full((333, 500, 3), 7, np.uint8), 640)
    assert r == pytest.approx(1.28)
    assert np.all(canvas[:426] == 7) and np.all(canvas[426:] == 114)

    gray, _ = letterbox(np.full((10, 20), 3, np.uint8), 8)
    assert gray.shape == (8, 8) and np.all(gray[:4] == 3) and np.all(gray[4:] == 114)


def test_eval_transform_keeps_boxes_on_their_pixels():
    for size in (256, (192, 320), (320, 200)):
        out = EvalTransform(size)(red_sample())
        th, tw = (size, size) if isinstance(size, int) else size
        r = min(th / 240, tw / 320)
        assert out["image"].shape == (th, tw, 3) and out["ratio"] == pytest.approx(r)
        np.testing.assert_allclose(out["boxes"][0], np.array(RED_BOX) * r, rtol=1e-6)
        np.testing.assert_allclose(red_extent(out["image"]), out["boxes"][0], atol=1.0)
        np.testing.assert_array_equal(out["labels"], [3])


def test_train_flip_hand_checked():
    out = TrainTransform(256, [{"type": "HorizontalFlip", "p": 1.0}])(red_sample())
    # flipped in 320 px: x 150..270; letterbox r = min(256/240, 256/320) = 0.8
    np.testing.assert_allclose(out["boxes"], [[120, 48, 216, 112]], atol=1e-4)
    np.testing.assert_allclose(red_extent(out["image"]), out["boxes"][0], atol=1.0)
    assert out["ratio"] == pytest.approx(0.8) and out["image"].shape == (256, 256, 3)
    assert np.all(out["image"][192:] == 114)  # padding below the 192 image rows


@pytest.mark.parametrize("seed", range(6))
def test_train_affine_scale_flip_keep_boxes_on_their_pixels(seed):
    augment = [
        {"type": "HorizontalFlip", "p": 1.0},
        {"type": "Affine", "scale": [0.5, 1.5], "translate_percent": [-0.1, 0.1], "fill": GRAY, "p": 1.0},
    ]
    out = TrainTransform((224, 256), augment, seed=seed)(red_sample())
    assert out["image"].shape == (224, 256, 3)
    assert out["boxes"].shape == (1, 4)
    np.testing.assert_array_equal(out["labels"], [3])
    np.testing.assert_allclose(red_extent(out["image"]), out["boxes"][0], atol=1.5)


def test_train_clips_and_drops_small_boxes_in_step_with_labels():
    sample = red_sample()
    sample["boxes"] = np.array([[10, 10, 11, 30], [300, 10, 400, 50], [20, 20, 60, 60]], np.float32)
    sample["labels"] = np.array([5, 6, 7], np.int64)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in sample.items()}
    out = TrainTransform(160, min_box_size=2.0)(sample)  # r = 0.5
    np.testing.assert_allclose(out["boxes"], [[150, 5, 160, 25], [10, 10, 30, 30]])
    np.testing.assert_array_equal(out["labels"], [6, 7])
    assert out["boxes"].dtype == np.float32 and out["labels"].dtype == np.int64
    for key, value in before.items():  # the input sample is left alone
        np.testing.assert_array_equal(sample[key], value)
    assert len(TrainTransform(160, min_box_size=25.0)(sample)["boxes"]) == 0


def test_colour_transforms_see_rgb_and_sample_stays_bgr():
    augment = [{"type": "RGBShift", "r_shift_limit": [50, 50], "g_shift_limit": 0, "b_shift_limit": 0, "p": 1.0}]
    sample = red_sample()
    out = TrainTransform((240, 320), augment)(sample)
    assert out["ratio"] == 1.0
    assert out["image"][0, 0].tolist() == [GRAY, GRAY, GRAY + 50]  # B, G, R: only red moved
    np.testing.assert_allclose(out["boxes"], sample["boxes"])


def test_seeded_pipelines_repeat():
    augment = [{"type": "HorizontalFlip", "p": 0.5}, {"type": "Affine", "scale": [0.5, 1.5], "p": 0.5}]

    def run(transform):
        return [transform(red_sample())["boxes"].tolist() for _ in range(8)]

    first = TrainTransform(128, augment, seed=3)
    assert run(first) == run(TrainTransform(128, augment, seed=3))
    assert run(TrainTransform(128, augment, seed=4)) != run(TrainTransform(128, augment, seed=3))
    again = run(first)
    first.reseed(3)
    assert run(first) == run(TrainTransform(128, augment, seed=3)) != again


def test_unknown_augmentation_name():
    with pytest.raises(ConfigError) as info:
        build_augmentations([{"type": "HorizontalFlip", "p": 0.5}, {"type": "HorizontalFlp", "p": 0.5}])
    message = str(info.value)
    assert "augmentations[1].type" in message and "'HorizontalFlp'" in message and "'HorizontalFlip'" in message


def test_bad_augmentation_entries():
    with pytest.raises(ConfigError, match=r"augmentations\[0\]\.scal: Affine has no argument 'scal'; did you mean"):
        build_augmentations([{"type": "Affine", "scal": [0.5, 1.5]}])
    with pytest.raises(ConfigError, match=r"augmentations\[0\]: expected a mapping with a 'type' key"):
        build_augmentations(["HorizontalFlip"])
    with pytest.raises(ConfigError, match=r"augmentations\[0\]: bad arguments for HorizontalFlip"):
        build_augmentations([{"type": "HorizontalFlip", "p": 3.0}])


def test_build_from_config_and_nested_compose():
    pipeline = build_augmentations(
        [{"type": "OneOf", "transforms": [{"type": "Blur", "blur_limit": 3}, {"type": "MedianBlur"}], "p": 1.0}]
    )
    assert isinstance(pipeline, A.Compose) and isinstance(pipeline.transforms[0], A.OneOf)
    transform = TRANSFORMS.build(
        {"type": "TrainTransform", "imgsz": 128, "augmentations": [{"type": "HorizontalFlip", "p": 0.5}]}
    )
    assert transform(red_sample())["image"].shape == (128, 128, 3)
    assert TRANSFORMS.build({"type": "EvalTransform", "imgsz": [96, 128]})(red_sample())["image"].shape == (96, 128, 3)
