"""Fault injection into data sets: every kind of bad data is counted, left out and named, the
set still trains and evaluates, and it refuses to start past ``max_broken_fraction``."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.data import problems as P
from detector.data.coco import CocoDataset
from detector.data.problems import image_file_problem
from detector.data.synthetic import generate_synthetic_coco
from detector.data.yolo_txt import YoloTxtDataset, read_label_file
from detector.errors import DatasetError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shapes(tmp_path):
    paths = generate_synthetic_coco(tmp_path / "shapes", num_train=20, num_val=2, image_size=64, seed=1)
    data = json.loads(paths["train_ann"].read_text())
    return paths, data


def write(paths, data) -> Path:
    paths["train_ann"].write_text(json.dumps(data))
    return paths["train_ann"]


def image_path(paths, data, i) -> Path:
    return paths["train_images"] / data["images"][i]["file_name"]


def test_truncated_missing_and_empty_image_files_are_left_out(shapes):
    paths, data = shapes
    first = image_path(paths, data, 0)
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])  # a cut-off download
    image_path(paths, data, 1).unlink()
    image_path(paths, data, 2).write_bytes(b"")
    dataset = CocoDataset(write(paths, data), paths["train_images"], max_broken_fraction=0.2)
    assert len(dataset) == 17
    assert dataset.problems.counts[P.UNREADABLE_IMAGE] == 2 and dataset.problems.counts[P.MISSING_IMAGE] == 1
    assert data["images"][0]["file_name"] in dataset.problems.examples[P.UNREADABLE_IMAGE]
    assert {data["images"][i]["file_name"] for i in range(3)} == dataset.problems.broken
    assert data["images"][0]["id"] not in dataset.coco.imgs  # not evaluated either


def test_image_file_check_reads_end_markers(tmp_path):
    image = np.full((8, 8, 3), 100, np.uint8)
    for suffix in (".jpg", ".png"):
        path = tmp_path / f"a{suffix}"
        cv2.imwrite(str(path), image)
        assert image_file_problem(path) is None
        path.write_bytes(path.read_bytes()[:-12])
        assert image_file_problem(path) == P.UNREADABLE_IMAGE
    assert image_file_problem(tmp_path / "missing.jpg") == P.MISSING_IMAGE


def test_undecodable_or_resized_image_is_replaced_at_load_time_and_reported(shapes, caplog):
    paths, data = shapes
    garbage = image_path(paths, data, 3)
    garbage.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4 + b"\xff\xd9")  # markers right, content not
    small = image_path(paths, data, 4)
    cv2.imwrite(str(small), np.zeros((10, 10, 3), np.uint8))  # the JSON says 64x64
    dataset = CocoDataset(write(paths, data), paths["train_images"], max_broken_fraction=0.2)
    assert len(dataset) == 20  # not detectable without decoding
    with caplog.at_level("WARNING", logger="detector.data"):
        replaced = dataset.load_sample(3)
        resized = dataset.load_sample(4)
        again = dataset.load_sample(3)
    assert replaced["image_id"] == data["images"][5]["id"] == resized["image_id"] == again["image_id"]
    assert dataset.problems.counts[P.UNREADABLE_IMAGE] == 1 and dataset.problems.counts[P.SIZE_MISMATCH] == 1
    assert sum("left out" in r.message for r in caplog.records) == 2  # reported once each


def test_too_many_broken_images_stop_the_set_with_counts(shapes):
    paths, data = shapes
    for i in range(3):
        image_path(paths, data, i).unlink()
    with pytest.raises(DatasetError, match=r"3 of 20 images are broken \(15\.0% > max_broken_fraction 5\.0%\): "
                       r"image file missing: 3 \("):  # fmt: skip
        CocoDataset(write(paths, data), paths["train_images"])


def test_images_failing_at_load_time_past_the_share_stop_the_run(shapes):
    paths, data = shapes
    for i in (0, 5):
        image_path(paths, data, i).write_bytes(b"\xff\xd8\xff" + b"\x00" * 100 + b"\xff\xd9")
    dataset = CocoDataset(write(paths, data), paths["train_images"], max_broken_fraction=0.05)
    assert dataset.load_sample(0)["image_id"] == data["images"][1]["id"]  # 1 of 20: within 5 %
    with pytest.raises(DatasetError, match="2 of 20 images failed to load, more than max_broken_fraction 5.0%"):
        dataset.load_sample(5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"images": [', r"instances_train\.json:1:13: malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"annotations": [], "categories": []}', "'images': missing or not a list"),
        ('{"images": [], "categories": {}}', "'categories': missing or not a list"),
        ('{"images": [], "categories": [{"id": "1", "name": "a"}]}', r"categories\[0\]: expected an object"),
        ('{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}', "appears twice"),
        (b'{"images": "\x80"}', "not UTF-8 JSON text"),
    ],
)
def test_unreadable_annotation_files_are_one_line_errors(shapes, text, message):
    paths, _ = shapes
    if isinstance(text, bytes):
        paths["train_ann"].write_bytes(text)
    else:
        paths["train_ann"].write_text(text)
    with pytest.raises(DatasetError, match=message) as info:
        CocoDataset(paths["train_ann"], paths["train_images"])
    assert "\n" not in str(info.value)


def test_schema_violations_and_bad_boxes_are_dropped_and_counted(shapes):
    paths, data = shapes
    anns = data["annotations"]
    del data["images"][5]["width"]
    data["images"][6]["height"] = "64"
    data["images"].append(dict(data["images"][7]))  # duplicate id
    anns[0]["bbox"] = "12 12 4 4"
    del anns[1]["category_id"]
    anns[2]["category_id"] = 99
    anns[3]["image_id"] = 12345
    anns[4]["bbox"] = [float("nan"), 1.0, 5.0, 5.0]
    anns[5]["bbox"] = [3.0, 3.0, 0.0, 5.0]
    anns[6]["bbox"] = [3.0, 3.0, -4.0, 5.0]
    anns[7]["bbox"] = [70.0, 3.0, 5.0, 5.0]  # right of a 64-pixel image
    anns[8]["bbox"] = [60.0, 3.0, 10.0, 5.0]  # partly outside: clipped, kept
    anns[9]["bbox"] = [3.0, 3.0, True, 5.0]
    dataset = CocoDataset(write(paths, data), paths["train_images"], max_broken_fraction=0.2)
    counts = dataset.problems.counts
    assert counts[P.MALFORMED_IMAGE_ENTRY] == 2 and counts[P.DUPLICATE_IMAGE] == 1
    assert counts[P.MALFORMED_ANNOTATION] == 3 and counts[P.UNKNOWN_CATEGORY] == 1 and counts[P.UNKNOWN_IMAGE] == 1
    assert counts[P.NON_FINITE_BOX] == 1 and counts[P.EMPTY_BOX] == 2 and counts[P.OUTSIDE_BOX] == 1
    assert counts[P.CLIPPED_BOX] >= 1
    assert "annotation 3 (category id 99)" in dataset.problems.examples[P.UNKNOWN_CATEGORY]
    kept = {a["id"] for a in dataset.coco.dataset["annotations"]}
    assert anns[8]["id"] in kept and not kept & {a["id"] for a in anns[:8]}
    for i in range(len(dataset)):
        sample = dataset.load_sample(i)
        assert np.isfinite(sample["boxes"]).all() and (sample["boxes"][:, 2:] > sample["boxes"][:, :2]).all()
        assert (sample["boxes"] <= 64).all() and (sample["boxes"] >= 0).all()


def yolo_set(tmp_path, lines_by_image: dict[str, str], classes=("a", "b")) -> Path:
    images, labels = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for name, lines in lines_by_image.items():
        cv2.imwrite(str(images / f"{name}.png"), np.full((32, 48, 3), 90, np.uint8))
        (labels / f"{name}.txt").write_text(lines)
    yaml_path = tmp_path / "data.yaml"
    yaml_path.write_text(f"path: .\ntrain: images/train\nval: images/train\nnames: {list(classes)}\n")
    return yaml_path


def test_yolo_label_lines_with_wrong_columns_values_or_classes_are_skipped(tmp_path):
    lines = "\n".join(
        [
            "0 0.5 0.5 0.2 0.2",  # good
            "1 0.5 0.5 0.2",  # 4 columns
            "1 0.5 0.5 0.2 0.2 7",  # 6 columns
            "x 0.5 0.5 0.2 0.2",  # non-numeric
            "2 0.5 0.5 0.2 0.2",  # class out of range
            "1.5 0.5 0.5 0.2 0.2",  # not an integer class
            "0 nan 0.5 0.2 0.2",
            "0 0.5 0.5 0 0.2",
            "0 1.5 0.5 0.2 0.2",  # outside
            "1 0.95 0.5 0.2 0.2",  # partly outside: kept
        ]
    )
    dataset = YoloTxtDataset(yolo_set(tmp_path, {"a": lines}))
    counts = dataset.problems.counts
    assert counts[P.BAD_LABEL_LINE] == 3 and counts[P.BAD_CLASS_ID] == 2
    assert counts[P.NON_FINITE_BOX] == 1 and counts[P.EMPTY_BOX] == 1 and counts[P.OUTSIDE_BOX] == 1
    assert counts[P.CLIPPED_BOX] == 1 and "a.txt:2" in dataset.problems.examples[P.BAD_LABEL_LINE]
    sample = dataset.load_sample(0)
    assert sample["labels"].tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"a\.txt:2: expected 5 columns"):  # strict without a collector
        read_label_file(tmp_path / "labels" / "train" / "a.txt", 2)


def test_yolo_truncated_image_is_left_out(tmp_path):
    yaml_path = yolo_set(tmp_path, {f"i{k}": "0 0.5 0.5 0.2 0.2" for k in range(4)})
    png = tmp_path / "images" / "train" / "i0.png"
    png.write_bytes(png.read_bytes()[:-20])
    dataset = YoloTxtDataset(yaml_path, max_broken_fraction=0.3)
    assert len(dataset) == 3 and dataset.problems.broken == {"i0.png"}
    assert len(dataset.coco.dataset["images"]) == 3


def test_check_dataset_tool_reports_every_kind(shapes, tmp_path):
    paths, data = shapes
    image_path(paths, data, 0).unlink()
    image_path(paths, data, 1).write_bytes(b"\xff\xd8\xff" + b"\x00" * 64 + b"\xff\xd9")
    data["annotations"][-1]["bbox"] = [1.0, 1.0, -1.0, 2.0]  # of the last image
    write(paths, data)
    config = tmp_path / "check.yaml"
    config.write_text(
        "data:\n"
        f"  train: {{type: CocoDataset, ann_file: {paths['train_ann']}, img_dir: {paths['train_images']}, "
        "max_broken_fraction: 0.2}\n"
    )
    done = subprocess.run(
        [sys.executable, "tools/check_dataset.py", str(config), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "20 images listed, 2 left out" in done.stdout
    for kind in (P.MISSING_IMAGE, P.UNREADABLE_IMAGE, P.EMPTY_BOX):
        assert f"| {kind} | 1 |" in done.stdout
    strict = subprocess.run(
        [sys.executable, "tools/check_dataset.py", str(config), "--no-progress", "--set",
         "data.train.max_broken_fraction=0.05"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    errors = [line for line in strict.stderr.splitlines() if line.startswith("error: ")]
    assert strict.returncode == 2 and len(errors) == 1 and "Traceback" not in strict.stderr
    assert "2 of 20 images are broken" in errors[0] and "data.train.max_broken_fraction" in errors[0]


def test_image_names_leading_outside_the_image_folder_are_refused(shapes):
    paths, data = shapes
    outside = paths["root"] / "outside.jpg"
    cv2.imwrite(str(outside), np.zeros((64, 64, 3), np.uint8))
    data["images"][0]["file_name"] = "../outside.jpg"
    data["images"][1]["file_name"] = str(outside)  # absolute
    dataset = CocoDataset(write(paths, data), paths["train_images"], max_broken_fraction=0.2)
    assert dataset.problems.counts[P.OUTSIDE_IMAGE_FOLDER] == 2 and len(dataset) == 18
