import importlib.util
import json
from collections import Counter

import numpy as np
import pytest
from conftest import REPO

from detector.data.coco import CocoDataset, load_coco_quietly
from detector.data.synthetic import CLASS_NAMES, generate_synthetic_coco, render_image, shape_mask


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_coco(root / "a", num_train=60, num_val=6, image_size=128, seed=0)


def test_same_seed_gives_identical_files(generated, tmp_path):
    again = generate_synthetic_coco(tmp_path / "b", num_train=60, num_val=6, image_size=128, seed=0)
    first, second = _files(generated["root"]), _files(again["root"])
    assert len(first) == 60 + 6 + 2
    assert first == second
    other = generate_synthetic_coco(tmp_path / "c", num_train=6, num_val=1, image_size=128, seed=1)
    assert other["train_ann"].read_bytes() != generated["train_ann"].read_bytes()
    name = "images/train/000000.jpg"
    assert (other["root"] / name).read_bytes() != (generated["root"] / name).read_bytes()


def test_coco_json_is_sane(generated):
    coco = load_coco_quietly(generated["train_ann"])
    assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == list(CLASS_NAMES)
    assert sorted(coco.cats) == [1, 2, 3, 4, 5]
    assert len(coco.imgs) == 60
    anns = coco.dataset["annotations"]
    assert all(a["iscrowd"] == 0 for a in anns)
    boxes = np.array([a["bbox"] for a in anns])
    x, y, w, h = boxes.T
    assert np.all(x >= 0) and np.all(y >= 0) and np.all(x + w <= 128) and np.all(y + h <= 128)
    longer = np.maximum(w, h)
    assert longer.min() >= 7 and longer.max() <= 66  # 8 px up to half the side, +-1 px of rasterising
    assert longer.min() < 16 and longer.max() > 40  # the range is used, small objects included
    area = np.array([a["area"] for a in anns])
    # area is the visible pixel count: inside the box, and never almost nothing of it.
    assert np.all(area <= w * h) and np.all(area >= 0.1 * w * h)
    counts = Counter(a["category_id"] for a in anns)
    assert set(counts) == {1, 2, 3, 4, 5}
    assert min(counts.values()) >= 20
    per_image = Counter(a["image_id"] for a in anns)
    assert max(per_image.values()) <= 8 and len(per_image) == 60


def test_loads_as_coco_dataset(generated):
    dataset = CocoDataset(generated["val_ann"], generated["val_images"])
    assert len(dataset) == 6 and dataset.class_names == list(CLASS_NAMES)
    sample = dataset[0]
    assert sample["image"].shape == (128, 128, 3) and len(sample["boxes"]) >= 1


def test_shapes_stand_out_and_boxes_are_tight():
    rng = np.random.default_rng(5)
    for kind in CLASS_NAMES:
        for size in (8.0, 23.5, 60.0):
            mask = shape_mask(kind, size, rng)
            assert abs(max(mask.shape) - size) <= 2, (kind, size, mask.shape)
            # tight: every border row and column of the crop holds shape pixels
            assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
    ring = shape_mask("ring", 40.0, rng)
    assert not ring[ring.shape[0] // 2, ring.shape[1] // 2]  # the hole
    image, objects = render_image(96, 128, np.random.default_rng(0), max_objects=8)
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8 and objects


def test_tool_writes_then_skips(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_synthetic", REPO / "tools" / "make_synthetic.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "shapes"
    args = ["--out", str(out), "--train", "3", "--val", "2", "--size", "64", "96", "--seed", "2"]
    assert tool.main(args) == 0
    assert "wrote 3 train + 2 val images" in capsys.readouterr().out
    data = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert len(data["images"]) == 2 and (data["images"][0]["height"], data["images"][0]["width"]) == (64, 96)
    assert tool.main(args) == 0
    assert "skipping" in capsys.readouterr().out
    assert tool.main([*args[:3], "1", *args[4:], "--force"]) == 0
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["000000.jpg"]
    # Other settings than the folder's were made with: regenerated, not silently reused.
    assert tool.main([*args[:3], "1", *args[4:], "--min-size", "12"]) == 0
    assert "made with other settings" in capsys.readouterr().out
    assert json.loads((out / "generator.json").read_text())["min_size"] == 12.0
