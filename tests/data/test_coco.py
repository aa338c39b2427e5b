import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_dir

from detector.data import problems as P
from detector.data.coco import CocoDataset
from detector.data.transforms import EvalTransform
from detector.errors import DatasetError
from detector.registry import DATASETS


@pytest.fixture(scope="session")
def tinycoco() -> Path:
    return shared_dir() / "data" / "tinycoco"


@pytest.fixture(scope="module")
def train_json(tinycoco):
    return json.loads((tinycoco / "annotations" / "instances_train2017.json").read_text())


@pytest.fixture(scope="module")
def train_set(tinycoco):
    return CocoDataset(tinycoco / "annotations" / "instances_train2017.json", tinycoco / "images" / "train2017")


def test_tinycoco_images_and_categories(train_set, train_json):
    assert len(train_set) == 32
    assert train_set.num_classes == 80
    file_ids = sorted(c["id"] for c in train_json["categories"])
    assert train_set.cat_ids == file_ids
    assert train_set.cat_ids[0] == 1 and train_set.cat_ids[-1] == 90  # not contiguous in the file
    names = {c["id"]: c["name"] for c in train_json["categories"]}
    assert train_set.class_names == [names[i] for i in file_ids]
    assert train_set.image_ids == sorted(im["id"] for im in train_json["images"])


def test_tinycoco_labels_map_back_to_file_boxes(train_set, train_json):
    def key(image_id, cat_id, xyxy):
        return (image_id, cat_id, *(round(float(v), 2) for v in xyxy))

    expected = Counter(
        key(a["image_id"], a["category_id"], [x, y, x + w, y + h])
        for a in train_json["annotations"]
        if not a["iscrowd"]
        for x, y, w, h in [a["bbox"]]
    )
    got = Counter()
    for image_id in train_set.image_ids:
        boxes, labels = train_set._targets[image_id]
        assert boxes.dtype == np.float32 and labels.dtype == np.int64
        for box, label in zip(boxes, labels, strict=True):
            got[key(image_id, train_set.cat_ids[label], box)] += 1
    assert got == expected


def test_tinycoco_crowd_boxes_excluded_but_kept_in_coco(train_set, train_json):
    total = sum(len(train_set._targets[i][1]) for i in train_set.image_ids)
    assert total == 288 - 4
    assert len(train_set.coco.getAnnIds(iscrowd=True)) == 4
    assert len(train_set.coco.getAnnIds()) == 288
    # Image 386912 has the crowd box [82, 0, 557, 479] (xywh): it is not among its training boxes.
    index = train_set.image_ids.index(386912)
    boxes = train_set.load_sample(index)["boxes"]
    assert not np.any(np.all(np.isclose(boxes, [82, 0, 82 + 557, 479], atol=0.01), axis=1))


def test_tinycoco_samples_match_json_sizes(tinycoco, train_set, train_json):
    sizes = {im["id"]: (im["height"], im["width"]) for im in train_json["images"]}
    for index in range(len(train_set)):
        sample = train_set.load_sample(index)
        image = sample["image"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[:2] == sizes[sample["image_id"]] == sample["orig_size"]
        h, w = sample["orig_size"]
        boxes = sample["boxes"]
        assert boxes.shape == (len(sample["labels"]), 4)
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    # BGR as cv2 decodes it.
    first = train_set.load_sample(0)
    path = tinycoco / "images" / "train2017" / train_set.coco.imgs[first["image_id"]]["file_name"]
    np.testing.assert_array_equal(first["image"], cv2.imread(str(path)))


def test_tinycoco_images_without_boxes(tinycoco, train_set):
    for image_id in (226111, 58636):
        sample = train_set.load_sample(train_set.image_ids.index(image_id))
        assert sample["boxes"].shape == (0, 4) and sample["labels"].shape == (0,)
    kept = CocoDataset(
        tinycoco / "annotations" / "instances_train2017.json", tinycoco / "images" / "train2017", filter_empty=True
    )
    assert len(kept) == 30
    assert 226111 not in kept.image_ids and 58636 not in kept.image_ids


def test_tinycoco_val_through_registry_with_transform(tinycoco):
    dataset = DATASETS.build(
        {
            "type": "CocoDataset",
            "ann_file": str(tinycoco / "annotations" / "instances_val2017.json"),
            "img_dir": str(tinycoco / "images" / "val2017"),
        },
        transform=EvalTransform(320),
    )
    assert len(dataset) == 6 and dataset.num_classes == 80
    assert len(dataset.coco.getAnnIds(iscrowd=True)) == 1
    sample = dataset[0]
    h, w = sample["orig_size"]
    assert sample["image"].shape == (320, 320, 3)
    assert sample["ratio"] == pytest.approx(min(320 / h, 320 / w))
    raw = dataset.load_sample(0)
    np.testing.assert_allclose(sample["boxes"], raw["boxes"] * sample["ratio"], rtol=1e-5)


def _write_coco(tmp_path: Path, images, annotations, categories) -> Path:
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file


@pytest.fixture
def small_coco(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    cv2.imwrite(str(img_dir / "a.png"), np.full((20, 30, 3), 50, np.uint8))
    (img_dir / "broken.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(img_dir / "wrong_size.png"), np.zeros((10, 10, 3), np.uint8))
    images = [
        {"id": 7, "file_name": "a.png", "height": 20, "width": 30},
        {"id": 8, "file_name": "missing.jpg", "height": 20, "width": 30},
        {"id": 9, "file_name": "broken.jpg", "height": 20, "width": 30},
        {"id": 10, "file_name": "wrong_size.png", "height": 20, "width": 30},
    ]
    bbox_and_cat = [
        ([-5, 2, 10, 10], 3),  # sticks out on the left: clipped to x1 = 0
        ([25, 5, 10, 4], 1),  # sticks out on the right: clipped to x2 = 30
        ([40, 5, 3, 3], 1),  # entirely outside: dropped
        ([3, 3, 0, 5], 3),  # zero width: dropped
    ]
    annotations = [
        {"id": i + 1, "image_id": 7, "category_id": cat, "bbox": box, "area": 1.0, "iscrowd": 0}
        for i, (box, cat) in enumerate(bbox_and_cat)
    ]
    annotations.append({"id": 99, "image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 1})
    categories = [{"id": 3, "name": "three"}, {"id": 1, "name": "one"}]  # unsorted on purpose
    return _write_coco(tmp_path, images, annotations, categories), img_dir


def test_clipping_degenerate_and_crowd(small_coco):
    ann_file, img_dir = small_coco
    dataset = CocoDataset(ann_file, img_dir, max_broken_fraction=1.0)
    assert dataset.cat_ids == [1, 3] and dataset.class_names == ["one", "three"]
    sample = dataset.load_sample(0)
    assert sample["image_id"] == 7 and sample["orig_size"] == (20, 30)
    np.testing.assert_allclose(sample["boxes"], [[0, 2, 5, 12], [25, 5, 30, 9]])
    np.testing.assert_array_equal(sample["labels"], [1, 0])
    # The entirely-outside and zero-width boxes are counted and left out of the ground truth too.
    assert len(dataset.coco.getAnnIds(imgIds=[7])) == 3
    assert dataset.problems.examples[P.OUTSIDE_BOX] == ["annotation 3"]
    assert dataset.problems.examples[P.EMPTY_BOX] == ["annotation 4"]
    assert dataset.problems.counts[P.CLIPPED_BOX] == 2
    assert CocoDataset(ann_file, img_dir, filter_empty=True, max_broken_fraction=1.0).image_ids == [7]


def test_missing_and_unreadable_images_are_named_and_replaced(small_coco):
    ann_file, img_dir = small_coco
    with pytest.raises(DatasetError, match=r"1 of 4 images are broken .*image file missing: 1 \(missing\.jpg\)"):
        CocoDataset(ann_file, img_dir)  # the default share, 5 %
    dataset = CocoDataset(ann_file, img_dir, max_broken_fraction=1.0)
    assert dataset.image_ids == [7, 9, 10]  # missing.jpg left out when the set is built
    assert dataset[1]["image_id"] == 7  # broken.jpg, then wrong_size.png fail: the next readable one
    assert dataset.problems.examples[P.UNREADABLE_IMAGE] == ["broken.jpg"]
    assert dataset.problems.examples[P.SIZE_MISMATCH] == ["wrong_size.png"]
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDataset(ann_file.parent / "nope.json", img_dir)
