"""Evaluation pictures: the confusion matrix by hand, the PNGs written by evaluate_coco(plots_dir=...)."""

import contextlib
import io
import json
import math
import random

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from detector.engine import validate
from detector.engine.eval_plots import (
    confusion_matrix,
    plot_class_ap,
    plot_confusion_matrix,
    plot_pr_curves,
    write_evaluation_plots,
)
from detector.engine.evaluator import _plot_inputs, evaluate_coco, write_metrics_json

PNG_NAMES = ("pr_curve_50.png", "pr_curve_50_95.png", "confusion_matrix.png", "class_ap.png")


def cm(gt, det, num_classes=2, **kwargs):
    """Confusion matrix of one image: gt = [(box, label)], det = [(box, label, score)]."""
    gt_boxes = np.array([g[0] for g in gt], dtype=np.float64).reshape(-1, 4)
    gt_labels = np.array([g[1] for g in gt], dtype=np.int64)
    det_boxes = np.array([d[0] for d in det], dtype=np.float64).reshape(-1, 4)
    det_labels = np.array([d[1] for d in det], dtype=np.int64)
    det_scores = np.array([d[2] for d in det], dtype=np.float64)
    return confusion_matrix([gt_boxes], [gt_labels], [det_boxes], [det_labels], [det_scores], num_classes, **kwargs)


A = [0, 0, 10, 10]
B = [100, 100, 120, 130]


# --- confusion matrix: rows predicted, columns true, index C = background ---------------------------------------


def test_perfect_match_is_the_diagonal():
    m = cm([(A, 0), (B, 1)], [(A, 0, 0.9), (B, 1, 0.8)])
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert m.dtype == np.int64 and m.shape == (3, 3)


def test_class_swap_lands_off_diagonal():
    m = cm([(A, 0)], [(A, 1, 0.9)])
    assert m[1, 0] == 1  # predicted 1, true 0
    assert m.sum() == 1


def test_missed_gt_lands_in_the_background_row():
    m = cm([(A, 0), (B, 1)], [(A, 0, 0.9)])
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 0, 0], [0, 1, 0]])


def test_false_positive_lands_in_the_background_column():
    m = cm([(A, 0)], [(A, 0, 0.9), (B, 1, 0.7)])
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 0, 1], [0, 0, 0]])


def test_detection_below_conf_threshold_is_ignored():
    m = cm([(A, 0)], [(A, 0, 0.1), (B, 1, 0.2)], conf_threshold=0.25)
    np.testing.assert_array_equal(m, [[0, 0, 0], [0, 0, 0], [1, 0, 0]])  # only the miss counts
    m = cm([(A, 0)], [(A, 0, 0.25)], conf_threshold=0.25)  # at the threshold it counts
    assert m[0, 0] == 1


def test_iou_below_threshold_is_no_match():
    shifted = [5, 0, 15, 10]  # IoU with A = 50 / 150 = 1/3
    m = cm([(A, 0)], [(shifted, 0, 0.9)], iou_threshold=0.45)
    np.testing.assert_array_equal(m, [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    m = cm([(A, 0)], [(shifted, 0, 0.9)], iou_threshold=0.3)
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_greedy_matching_takes_highest_iou_first_each_box_once():
    # det 0 (class 0, score 0.5) overlaps gt 1 (IoU 90/110) and gt 0 (IoU 60/140); det 1 (class 1,
    # score 0.9) overlaps only gt 1 (IoU 1/3). Highest IoU first: det 0 takes gt 1 (a class swap),
    # det 1 is left a false positive and gt 0 a miss (matching by score would give the diagonal).
    gt = [([0, 0, 100, 10], 0), ([50, 0, 150, 10], 1)]
    det = [([40, 0, 140, 10], 0, 0.5), ([100, 0, 200, 10], 1, 0.9)]
    m = cm(gt, det, iou_threshold=0.3)
    np.testing.assert_array_equal(m, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    # one detection over two gts matches only one (the higher IoU); the other gt is missed
    m = cm([([0, 0, 10, 10], 0), ([0, 0, 10, 11], 1)], [([0, 0, 10, 10], 1, 0.9)])
    np.testing.assert_array_equal(m, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_empty_images():
    empty = np.zeros((0, 4))
    none = np.zeros(0)
    m = confusion_matrix([empty, empty], [none, none], [empty, empty], [none, none], [none, none], 3)
    np.testing.assert_array_equal(m, np.zeros((4, 4)))
    m = confusion_matrix([], [], [], [], [], 2)
    np.testing.assert_array_equal(m, np.zeros((3, 3)))
    # gt only in image 0, detections only in image 1: one miss and one false positive
    m = confusion_matrix(
        [np.array([A]), empty],
        [np.array([1]), none],
        [empty, np.array([B])],
        [none, np.array([0])],
        [none, np.array([0.9])],
        2,
    )
    np.testing.assert_array_equal(m, [[0, 0, 1], [0, 0, 0], [0, 1, 0]])


def test_confusion_matrix_sums_over_images_and_rejects_bad_input():
    one = (np.array([A]), np.array([0]), np.array([A]), np.array([0]), np.array([1.0]))
    m = confusion_matrix(*([x, x] for x in one), num_classes=1)
    np.testing.assert_array_equal(m, [[2, 0], [0, 0]])
    with pytest.raises(ValueError, match="label outside"):
        confusion_matrix([np.array([A])], [np.array([2])], [np.zeros((0, 4))], [[]], [[]], 2)
    with pytest.raises(ValueError, match="one entry per image"):
        confusion_matrix([np.array([A])], [], [], [], [], 2)


# --- the pictures -------------------------------------------------------------------------------------------------


def assert_png(path, min_side=200):
    assert path.is_file(), path
    image = cv2.imread(str(path))
    assert image is not None, path
    h, w = image.shape[:2]
    assert min_side <= h <= 5000 and min_side <= w <= 5000, (path, image.shape)
    assert image.std() > 0  # something is drawn


def no_temp_files(folder):
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def fake_precision(num_classes, no_gt=(), seed=0):
    """A COCOeval-shaped precision [10, 101, K, 4, 3]: decreasing curves, -1 for classes without gt
    and for the unused areas, zeros beyond the reached recall."""
    rng = np.random.default_rng(seed)
    p = -np.ones((10, 101, num_classes, 4, 3))
    recall = np.linspace(0, 1, 101)
    for k in range(num_classes):
        if k in no_gt:
            continue
        for t in range(10):
            reach = 0.95 - 0.06 * t - 0.3 * rng.random()
            curve = np.clip(1.0 - 0.5 * recall**2 - 0.05 * t, 0, 1)
            curve[recall > reach] = 0.0
            p[t, :, k, 0, :] = curve[:, None]
    return p


def test_plot_pr_curves_with_missing_data(tmp_path):
    p = fake_precision(3, no_gt=(1,))
    p[5:, 90:, 2, 0, -1] = -1  # partial "no data" inside a class
    paths = plot_pr_curves(p, ["cat", "dog", "bird"], tmp_path)
    assert [q.name for q in paths] == ["pr_curve_50.png", "pr_curve_50_95.png"]
    for q in paths:
        assert_png(q)
    assert no_temp_files(tmp_path)


def test_plot_pr_curves_all_classes_without_gt_and_many_classes(tmp_path):
    paths = plot_pr_curves(-np.ones((10, 101, 2, 4, 3)), ["a", "b"], tmp_path / "none")
    for q in paths:
        assert_png(q)
    names = [f"class{k}" for k in range(25)]
    for q in plot_pr_curves(fake_precision(25, no_gt=(3, 7)), names, tmp_path / "many"):
        assert_png(q)
    with pytest.raises(ValueError, match="class names"):
        plot_pr_curves(fake_precision(3), ["a"], tmp_path)
    with pytest.raises(ValueError, match=r"\[T, R, K, A, M\]"):
        plot_pr_curves(np.zeros((10, 101, 3)), ["a", "b", "c"], tmp_path)


def test_plot_confusion_matrix_and_class_ap(tmp_path):
    m = np.array([[5, 1, 2], [0, 3, 1], [1, 0, 0]])
    for normalize in (True, False):
        out = tmp_path / str(normalize)
        assert_png(plot_confusion_matrix(m, ["cat", "dog"], out, normalize=normalize))
    big = np.random.default_rng(0).integers(0, 5, size=(41, 41))
    assert_png(plot_confusion_matrix(big, [f"c{k}" for k in range(40)], tmp_path / "big"))
    with pytest.raises(ValueError, match="matrix must be"):
        plot_confusion_matrix(m, ["cat"], tmp_path)

    path = plot_class_ap({"cat": 0.5, "dog": math.nan, "bird": 0.7}, {"cat": 0.8, "bird": 0.9}, tmp_path)
    assert path.name == "class_ap.png"
    assert_png(path)
    assert_png(plot_class_ap({}, {}, tmp_path / "empty"), min_side=100)
    assert no_temp_files(tmp_path)


# --- evaluate_coco(plots_dir=...) on a synthetic COCO ground truth ------------------------------------------------

CATEGORIES = [(3, "circle"), (7, "square"), (12, "triangle"), (20, "star")]  # ids not contiguous on purpose


def synthetic_gt(num_images=12, seed=0):
    """A COCO instances dict: random boxes of 4 categories, one crowd box, an image without boxes."""
    rng = random.Random(seed)
    images, annotations = [], []
    for i in range(num_images):
        images.append({"id": 100 + i, "width": 320, "height": 240, "file_name": f"{i}.jpg"})
        for _ in range(0 if i == 0 else rng.randint(1, 6)):
            w, h = rng.uniform(12, 120), rng.uniform(12, 100)
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + i,
                    "category_id": rng.choice(CATEGORIES)[0],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    annotations[0]["iscrowd"] = 1
    categories = [{"id": c, "name": n} for c, n in CATEGORIES]
    return {"images": images, "annotations": annotations, "categories": categories}


def make_coco(dataset):
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def noisy_results(dataset, seed=1):
    """Jittered gt boxes with random scores; some dropped, some relabelled, plus false positives."""
    rng = random.Random(seed)
    cat_ids = [c for c, _ in CATEGORIES]
    results = []
    for a in dataset["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = a["bbox"]
        j = 0.2 * rng.random()
        box = [x + rng.uniform(-j, j) * w, y + rng.uniform(-j, j) * h, w * (1 + rng.uniform(-j, j)), h]
        cat = a["category_id"] if rng.random() > 0.15 else rng.choice(cat_ids)
        results.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": rng.uniform(0.2, 1)})
    for im in dataset["images"]:
        for _ in range(rng.randint(0, 3)):
            w, h = rng.uniform(10, 80), rng.uniform(10, 80)
            box = [rng.uniform(0, 320 - w), rng.uniform(0, 240 - h), w, h]
            results.append(
                {"image_id": im["id"], "category_id": rng.choice(cat_ids), "bbox": box, "score": rng.random()}
            )
    return results


def without_plots(metrics):
    return {k: v for k, v in metrics.items() if k != "plots"}


def test_evaluate_coco_writes_the_four_pngs_and_same_numbers(tmp_path):
    dataset = synthetic_gt()
    results = noisy_results(dataset)
    plain = evaluate_coco(make_coco(dataset), results, verbose=False)
    out = tmp_path / "plots" / "val"  # created
    metrics = evaluate_coco(make_coco(dataset), results, verbose=False, plots_dir=out)
    assert without_plots(metrics) == plain  # every number unchanged (NaN-free here)
    assert 0 < plain["mAP50_95"] < 1
    assert metrics["plots"] == [str(out / name) for name in PNG_NAMES]
    for name in PNG_NAMES:
        assert_png(out / name)
    assert no_temp_files(out)
    # the metrics stay plain JSON: no array, the paths are strings
    written = json.loads(write_metrics_json(metrics, tmp_path / "m.json").read_text())
    assert written["plots"] == metrics["plots"]
    assert "precision" not in written


def test_evaluate_coco_plots_with_subset_and_no_detections(tmp_path):
    dataset = synthetic_gt()
    metrics = evaluate_coco(make_coco(dataset), [], verbose=False, plots_dir=tmp_path / "empty", image_ids=[100, 101])
    assert metrics["mAP50_95"] in (0.0, -1.0)
    for name in PNG_NAMES:
        assert_png(tmp_path / "empty" / name, min_side=100)


def test_plot_inputs_follow_the_category_order():
    dataset = synthetic_gt(num_images=4)
    coco = make_coco(dataset)
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in dataset["annotations"]
        if not a["iscrowd"]
    ]
    image_ids = sorted(coco.getImgIds())
    ground_truth, detections = _plot_inputs(coco, perfect, image_ids, sorted(coco.getCatIds()))
    assert len(ground_truth) == len(detections) == len(image_ids)
    for (gb, gl), (db, ds, dl) in zip(ground_truth, detections, strict=True):
        np.testing.assert_allclose(gb, db)
        np.testing.assert_array_equal(gl, dl)
        assert np.all(ds == 1.0)
    first = next(a for a in dataset["annotations"] if not a["iscrowd"])
    gb, gl = ground_truth[image_ids.index(first["image_id"])]
    x, y, w, h = first["bbox"]
    assert np.isclose(gb, [x, y, x + w, y + h]).all(axis=1).any()  # xywh -> xyxy
    assert set(np.concatenate([g[1] for g in ground_truth]).tolist()) <= {0, 1, 2, 3}
    # the crowd box is left out
    assert sum(len(g[1]) for g in ground_truth) == sum(1 for a in dataset["annotations"] if not a["iscrowd"])
    # perfect detections: the confusion matrix is diagonal
    m = confusion_matrix(
        [g[0] for g in ground_truth],
        [g[1] for g in ground_truth],
        [d[0] for d in detections],
        [d[2] for d in detections],
        [d[1] for d in detections],
        4,
    )
    assert m.trace() == m.sum() == len(perfect)


def test_write_evaluation_plots_checks_its_inputs(tmp_path):
    with pytest.raises(ValueError, match="entries"):
        write_evaluation_plots(fake_precision(1), {}, {}, ["a"], [(np.zeros((0, 4)), np.zeros(0))], [], tmp_path)


def test_evaluate_dataset_passes_plots_dir(monkeypatch, tmp_path):
    seen = {}

    class FakeDataset:
        coco, class_names, cat_ids, image_ids = "gt", ["a"], [1], [5]

    def fake_evaluate_coco(coco_gt, results, **kwargs):
        seen.update(kwargs)
        return {"mAP50_95": 0.0}

    monkeypatch.setattr(validate, "predict_dataset", lambda *args, **kwargs: ([], []))
    monkeypatch.setattr(validate, "evaluate_coco", fake_evaluate_coco)
    validate.evaluate_dataset(None, FakeDataset(), plots_dir=tmp_path)
    assert seen["plots_dir"] == tmp_path
    validate.evaluate_dataset(None, FakeDataset())
    assert seen["plots_dir"] is None
