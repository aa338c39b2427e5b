"""tools/browse_dataset.py: a PNG grid of training samples as the model receives them."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO

from detector.data.synthetic import generate_synthetic_coco


@pytest.fixture(scope="module")
def overrides(tmp_path_factory):
    data = generate_synthetic_coco(tmp_path_factory.mktemp("browse"), num_train=6, num_val=1, image_size=80, seed=2)
    return [f"data.train.ann_file={data['train_ann']}", f"data.train.img_dir={data['train_images']}", "data.imgsz=96"]


def browse(*args):
    cmd = [sys.executable, str(REPO / "tools" / "browse_dataset.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_writes_a_grid_of_the_mosaic_samples(overrides, tmp_path):
    out = tmp_path / "grid.png"
    result = browse("configs/yolox_nano_mosaic_shapes.yaml", "--n", 5, "--out", out, "--set", *overrides)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: 5 samples" in result.stdout
    grid = cv2.imread(str(out))
    # 5 tiles: 3 columns x 2 rows of 96 px tiles with 4 px gaps; the unused sixth tile stays white.
    assert grid.shape == (2 * 100 + 4, 3 * 100 + 4, 3)
    assert np.all(grid[104:200, 204:300] == 255) and not np.all(grid[4:100, 4:100] == 255)
    # Same seed and epoch, same picture; another epoch, other samples.
    again = tmp_path / "again.png"
    browse("configs/yolox_nano_mosaic_shapes.yaml", "--n", 5, "--out", again, "--set", *overrides)
    np.testing.assert_array_equal(cv2.imread(str(again)), grid)
    other = tmp_path / "other.png"
    browse("configs/yolox_nano_mosaic_shapes.yaml", "--n", 5, "--out", other, "--epoch", 3, "--set", *overrides)
    assert not np.array_equal(cv2.imread(str(other)), grid)


def test_bad_arguments_are_one_line_errors(overrides, tmp_path):
    result = browse("configs/yolox_nano_mosaic_shapes.yaml", "--out", tmp_path / "x.jpg", "--set", *overrides)
    assert (
        result.returncode == 2 and result.stderr.strip() == f"error: --out: expected a .png file, got {tmp_path}/x.jpg"
    )
    result = browse("configs/yolox_nano_mosaic_shapes.yaml", "--n", 0, "--set", *overrides)
    assert result.returncode == 2 and "--n: expected at least 1 sample, got 0" in result.stderr
    bad = [*overrides, "data.mix.mosaic_prob=2"]
    result = browse("configs/yolox_nano_mosaic_shapes.yaml", "--out", tmp_path / "y.png", "--set", *bad)
    assert result.returncode == 2
    assert "data.mix.mosaic_prob: expected a value in [0, 1], got 2" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "y.png").exists()
