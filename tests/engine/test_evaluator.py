"""The COCO evaluator against direct pycocotools runs on tinycoco val (6 real COCO images)."""

import contextlib
import copy
import io
import json
import math
import os
import random

import numpy as np
import pytest
import torch
from conftest import shared_dir
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.engine.evaluator import (
    STAT_NAMES,
    detections_to_coco_results,
    evaluate_coco,
    format_metrics_table,
    format_per_class_table,
    write_metrics_json,
)


@pytest.fixture(scope="module")
def gt_path() -> str:
    path = shared_dir() / "data" / "tinycoco" / "annotations" / "instances_val2017.json"
    assert path.is_file(), f"tinycoco not found at {path}"
    return str(path)


@pytest.fixture(scope="module")
def gt_json(gt_path) -> dict:
    with open(gt_path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def coco_gt(gt_path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(gt_path)


def direct_cocoeval(gt_path: str, results_path: str, image_ids=None) -> tuple[COCOeval, str]:
    """The reference: pycocotools exactly as its own example runs it; returns (eval, its stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gt = COCO(gt_path)
        dt = gt.loadRes(results_path)
        ev = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev, out.getvalue()


def summary_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(" Average")]


def gt_as_results(gt_json: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
        for a in gt_json["annotations"]
        if not a["iscrowd"]
    ]


def perturbed_results(gt_json: dict, seed: int = 0) -> list[dict]:
    """Jittered gt boxes with random scores, some dropped, some relabelled, plus false positives."""
    rng = random.Random(seed)
    cat_ids = [c["id"] for c in gt_json["categories"]]
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt_json["images"]}
    results = []
    for a in gt_json["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = a["bbox"]
        j = 0.15 * rng.random()
        box = [x + rng.uniform(-j, j) * w, y + rng.uniform(-j, j) * h, w * (1 + rng.uniform(-j, j)), h]
        cat = a["category_id"] if rng.random() > 0.1 else rng.choice(cat_ids)
        results.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": rng.random()})
    for image_id, (width, height) in sizes.items():
        for _ in range(rng.randint(3, 12)):
            w, h = rng.uniform(5, width / 2), rng.uniform(5, height / 2)
            box = [rng.uniform(0, width - w), rng.uniform(0, height - h), w, h]
            results.append(
                {"image_id": image_id, "category_id": rng.choice(cat_ids), "bbox": box, "score": rng.random() / 2}
            )
    rng.shuffle(results)
    return results


def write_json(obj, path) -> str:
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)


def assert_same_as_direct(metrics: dict, ev: COCOeval) -> None:
    assert metrics["stats"] == [float(s) for s in ev.stats]  # bit-for-bit, not approximately
    for name, value in zip(STAT_NAMES, ev.stats, strict=True):
        assert metrics[name] == float(value), name


def test_gt_as_results_scores_like_pycocotools(gt_path, gt_json, tmp_path, capsys):
    results = gt_as_results(gt_json)
    ev, direct_out = direct_cocoeval(gt_path, write_json(results, tmp_path / "res.json"))
    assert ev.stats[0] == 1.0 and ev.stats[1] == 1.0  # pycocotools' own verdict on perfect boxes

    metrics = evaluate_coco(gt_path, results, verbose=True)
    assert_same_as_direct(metrics, ev)
    assert metrics["mAP50_95"] == 1.0
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in metrics["per_class"].values())  # eps in tp/(tp+fp)
    # verbose: the summary lines are pycocotools' own, unchanged
    assert summary_lines(capsys.readouterr().out) == summary_lines(direct_out)
    assert len(summary_lines(direct_out)) == 12


def test_perturbed_results_equal_direct_run(gt_path, gt_json, coco_gt, tmp_path):
    for seed in range(3):
        results = perturbed_results(gt_json, seed)
        untouched = copy.deepcopy(results)
        res_path = write_json(results, tmp_path / f"res{seed}.json")
        ev, _ = direct_cocoeval(gt_path, res_path)
        assert 0.0 < ev.stats[0] < 1.0
        assert_same_as_direct(evaluate_coco(coco_gt, results, verbose=False), ev)
        assert_same_as_direct(evaluate_coco(gt_path, res_path, verbose=False), ev)
        assert results == untouched  # loadRes adds keys to its input; ours must not leak that


def test_image_subset_equals_direct_run(gt_path, gt_json, coco_gt, tmp_path):
    results = perturbed_results(gt_json, seed=7)
    subset = [g["id"] for g in gt_json["images"][:3]]
    ev, _ = direct_cocoeval(gt_path, write_json(results, tmp_path / "res.json"), image_ids=subset)
    metrics = evaluate_coco(coco_gt, results, image_ids=subset, verbose=False)
    assert_same_as_direct(metrics, ev)
    # classes whose only gt lies outside the subset have no precision and are left out
    subset_cats = {a["category_id"] for a in gt_json["annotations"] if a["image_id"] in subset and not a["iscrowd"]}
    names = {c["id"]: c["name"] for c in gt_json["categories"]}
    assert set(metrics["per_class"]) == {names[c] for c in subset_cats}
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_coco(coco_gt, results, image_ids=[1], verbose=False)


def test_per_class_from_precision_by_hand(gt_path, gt_json, coco_gt, tmp_path):
    results = perturbed_results(gt_json, seed=3)
    ev, _ = direct_cocoeval(gt_path, write_json(results, tmp_path / "res.json"))
    metrics = evaluate_coco(coco_gt, results, verbose=False)

    k = ev.params.catIds.index(1)  # person: 27 boxes on tinycoco val
    p = ev.eval["precision"][:, :, k, 0, 2]  # all IoUs, all recalls, area "all", maxDets 100
    assert p.shape == (10, 101) and (p > -1).all()
    assert metrics["per_class"]["person"] == pytest.approx(float(p.mean()), abs=1e-15)
    assert metrics["per_class_ap50"]["person"] == pytest.approx(float(p[0].mean()), abs=1e-15)

    # only classes with (non-crowd) gt appear, in category-id order, and they average to mAP
    present = sorted({a["category_id"] for a in gt_json["annotations"] if not a["iscrowd"]})
    names = {c["id"]: c["name"] for c in gt_json["categories"]}
    assert list(metrics["per_class"]) == [names[c] for c in present]
    assert np.mean(list(metrics["per_class"].values())) == pytest.approx(metrics["mAP50_95"], abs=1e-12)
    assert np.mean(list(metrics["per_class_ap50"].values())) == pytest.approx(metrics["mAP50"], abs=1e-12)

    # user-given names follow ascending category id
    custom = [f"c{c['id']}" for c in sorted(gt_json["categories"], key=lambda c: c["id"])]
    renamed = evaluate_coco(coco_gt, results, class_names=custom, verbose=False)
    assert renamed["per_class"]["c1"] == metrics["per_class"]["person"]
    with pytest.raises(ValueError, match="class names"):
        evaluate_coco(coco_gt, results, class_names=custom[:-1], verbose=False)


def test_empty_results_give_zeros(coco_gt, capsys):
    metrics = evaluate_coco(coco_gt, [], verbose=False)
    assert metrics["stats"] == [0.0] * 12  # tinycoco val has gt in every area range
    assert all(metrics[name] == 0.0 for name in STAT_NAMES)
    assert all(v == 0.0 for v in metrics["per_class"].values()) and metrics["per_class"]
    assert "no detections" in capsys.readouterr().out


def test_quiet_prints_nothing(gt_path, gt_json, capsys):
    evaluate_coco(gt_path, perturbed_results(gt_json), verbose=False)
    assert capsys.readouterr().out == ""


def test_bad_ids_raise_naming_the_entry(coco_gt, gt_json):
    good = gt_as_results(gt_json)[:5]
    bad = good[:2] + [dict(good[2], category_id=0), dict(good[3], category_id=999)]
    with pytest.raises(ValueError, match=r"result #2 .*category_id 0 is not a category") as info:
        evaluate_coco(coco_gt, bad, verbose=False)
    assert "999" not in str(info.value)  # the first offender only
    with pytest.raises(ValueError, match=r"result #1 .*image_id 123 is not an image"):
        evaluate_coco(coco_gt, [good[0], dict(good[1], image_id=123)], verbose=False)
    with pytest.raises(ValueError, match=r"result #0 .*expected a dict"):
        evaluate_coco(coco_gt, [{"image_id": good[0]["image_id"]}], verbose=False)


def test_detections_to_coco_results_by_hand():
    cat_ids = [1, 3, 90]
    dets = [
        (  # torch input, float32, the two boxes by hand: xyxy -> xywh
            torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.5, 1.25, 2.0, 3.0]]),
            torch.tensor([0.9, 0.123456789]),
            torch.tensor([2, 0]),
        ),
        (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)),  # an image without detections
        (np.array([[100.0, 100.0, 101.0, 300.0]]), np.array([0.5]), np.array([1])),
    ]
    results = detections_to_coco_results([42, 7, np.int64(5)], dets, cat_ids)
    assert results == [
        {"image_id": 42, "category_id": 90, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.9},
        {"image_id": 42, "category_id": 1, "bbox": [0.5, 1.25, 1.5, 1.75], "score": 0.12346},
        {"image_id": 5, "category_id": 3, "bbox": [100.0, 100.0, 1.0, 200.0], "score": 0.5},
    ]
    assert all(type(r["image_id"]) is int and type(r["category_id"]) is int for r in results)
    json.dumps(results)  # plain Python types only
    with pytest.raises(ValueError, match="label 3 outside"):
        detections_to_coco_results([1], [(torch.zeros(1, 4), torch.ones(1), torch.tensor([3]))], cat_ids)
    with pytest.raises(ValueError, match="image ids"):
        detections_to_coco_results([1, 2], dets[:1], cat_ids)


def test_round_trip_through_coco_ids(coco_gt, gt_json):
    """gt -> contiguous labels + xyxy -> results -> perfect score: the id mapping is consistent."""
    cat_ids = sorted(coco_gt.getCatIds())
    image_ids, dets = [], []
    for image_id in coco_gt.getImgIds():
        anns = [a for a in coco_gt.imgToAnns[image_id] if not a["iscrowd"]]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        xyxy = torch.cat((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), dim=1)
        labels = torch.tensor([cat_ids.index(a["category_id"]) for a in anns])
        image_ids.append(image_id)
        dets.append((xyxy, torch.ones(len(anns)), labels))
    metrics = evaluate_coco(coco_gt, detections_to_coco_results(image_ids, dets, cat_ids), verbose=False)
    assert metrics["mAP50_95"] == 1.0


def test_tables(coco_gt, gt_json):
    metrics = evaluate_coco(coco_gt, perturbed_results(gt_json), verbose=False)
    table = format_metrics_table(metrics).splitlines()
    assert table[:2] == ["| metric | value |", "|---|---:|"] and len(table) == 14
    assert table[2] == f"| mAP50_95 | {metrics['mAP50_95']:.3f} |"
    by_name = format_per_class_table(metrics, sort_by="name").splitlines()[2:]
    assert [row.split("|")[1].strip() for row in by_name] == sorted(metrics["per_class"])
    by_id = format_per_class_table(metrics).splitlines()[2:]
    assert by_id[0] == (
        f"| person | {metrics['per_class']['person']:.3f} | {metrics['per_class_ap50']['person']:.3f} |"
    )


def test_write_metrics_json_is_atomic_and_reloads(coco_gt, gt_json, tmp_path):
    metrics = evaluate_coco(coco_gt, perturbed_results(gt_json), verbose=False)
    metrics["extra"] = {"nan": math.nan, "np": np.float32(0.5)}
    out = tmp_path / "sub" / "metrics.json"
    write_metrics_json(metrics, out)
    write_metrics_json(metrics, out)  # overwriting works too
    assert os.listdir(out.parent) == ["metrics.json"]  # no temp file left behind
    loaded = json.loads(out.read_text())
    assert loaded["stats"] == metrics["stats"] and loaded["per_class"] == metrics["per_class"]
    assert loaded["extra"] == {"nan": None, "np": 0.5}

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_metrics_json({"bad": Unserialisable()}, out)
    assert os.listdir(out.parent) == ["metrics.json"]
    assert json.loads(out.read_text()) == loaded  # the old file survives a failed write
