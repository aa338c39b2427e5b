import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from detector.data import problems as P
from detector.data.yolo_txt import YoloTxtDataset, label_path_for
from detector.errors import ConfigError
from detector.registry import DATASETS


def _image(path: Path, h: int, w: int, value: int = 80) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def _labels(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def yolo_tree(tmp_path):
    """data/ with a.png (100x200, two boxes), b.png (no label file), c.png in val; the YAML lives beside."""
    root = tmp_path / "data"
    _image(root / "images" / "train" / "a.png", 100, 200)
    _image(root / "images" / "train" / "b.png", 50, 60)
    _image(root / "images" / "val" / "c.png", 40, 40)
    _labels(root / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.4\n\n1 0.25 0.75 0.1 0.1\n")
    _labels(root / "labels" / "val" / "c.txt", "1 0.5 0.5 1.2 0.5\n")  # wider than the image: clipped
    data_yaml = tmp_path / "cfg" / "data.yaml"
    data_yaml.parent.mkdir()
    data_yaml.write_text("path: ../data\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n")
    return data_yaml


def test_reads_boxes_in_pixels(yolo_tree):
    dataset = YoloTxtDataset(yolo_tree, "train")
    assert len(dataset) == 2 and dataset.image_ids == [0, 1]
    assert dataset.class_names == ["cat", "dog"] and dataset.num_classes == 2 and dataset.cat_ids == [1, 2]
    a = dataset[0]
    assert a["image"].shape == (100, 200, 3) and a["orig_size"] == (100, 200) and a["image_id"] == 0
    # cx 100, cy 50, w 40, h 40; and cx 50, cy 75, w 20, h 10.
    np.testing.assert_allclose(a["boxes"], [[80, 30, 120, 70], [40, 70, 60, 80]], atol=1e-4)
    np.testing.assert_array_equal(a["labels"], [0, 1])
    assert a["boxes"].dtype == np.float32 and a["labels"].dtype == np.int64
    b = dataset[1]  # no label file: an image without boxes
    assert b["boxes"].shape == (0, 4) and b["labels"].shape == (0,) and b["image_id"] == 1


def test_val_split_clips_and_names_list(yolo_tree):
    yolo_tree.write_text("path: ../data\ntrain: images/train\nval: [images/val]\nnames: [cat, dog]\n")
    dataset = DATASETS.build({"type": "YoloTxtDataset", "data_yaml": str(yolo_tree), "split": "val"})
    assert dataset.class_names == ["cat", "dog"]
    np.testing.assert_allclose(dataset[0]["boxes"], [[0, 10, 40, 30]], atol=1e-4)


def test_coco_ground_truth_for_the_evaluator(yolo_tree):
    dataset = YoloTxtDataset(yolo_tree, "train")
    coco = dataset.coco
    assert sorted(coco.getCatIds()) == [1, 2]
    assert [coco.cats[c]["name"] for c in (1, 2)] == ["cat", "dog"]
    assert sorted(coco.getImgIds()) == [0, 1]
    assert (coco.imgs[0]["height"], coco.imgs[0]["width"]) == (100, 200)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[0]))
    assert sorted((a["category_id"], *np.round(a["bbox"], 3)) for a in anns) == [
        (1, 80, 30, 40, 40),
        (2, 40, 70, 20, 10),
    ]
    assert coco.getAnnIds(imgIds=[1]) == []
    # Perfect detections score mAP 1 against it.
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in coco.dataset["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_wrong_column_count_is_counted_with_file_and_line(yolo_tree):
    bad = yolo_tree.parent.parent / "data" / "labels" / "train" / "a.txt"
    bad.write_text("0 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.2\n")
    dataset = YoloTxtDataset(yolo_tree, "train")
    assert dataset.problems.examples[P.BAD_LABEL_LINE] == ["a.txt:2"]
    index = [path.name for path in dataset.image_files].index("a.png")
    assert dataset.load_sample(index)["labels"].tolist() == [0]  # the good line is kept


def test_bad_class_and_values_are_counted_with_file_and_line(yolo_tree):
    bad = yolo_tree.parent.parent / "data" / "labels" / "train" / "a.txt"
    bad.write_text("2 0.5 0.5 0.2 0.4\n0 0.5 x 0.2 0.4\n")
    problems = YoloTxtDataset(yolo_tree, "train").problems
    assert problems.examples[P.BAD_CLASS_ID] == ["a.txt:1"] and problems.examples[P.BAD_LABEL_LINE] == ["a.txt:2"]


def test_config_errors(yolo_tree):
    with pytest.raises(ConfigError, match="test: missing"):
        YoloTxtDataset(yolo_tree, "test")
    yolo_tree.write_text("train: images/train\n")
    with pytest.raises(ConfigError, match="names: missing"):
        YoloTxtDataset(yolo_tree, "train")


def test_label_path_replaces_the_last_images_component():
    assert label_path_for(Path("/x/images/ds/images/train/a.jpg")) == Path("/x/images/ds/labels/train/a.txt")
    with pytest.raises(ValueError, match="not under an 'images' folder"):
        label_path_for(Path("/x/pics/a.jpg"))
