"""detector.tracking.metrics: MOT metrics through motmetrics (and HOTA through TrackEval)."""

import contextlib
import io
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dir

from detector.tracking.metrics import evaluate_mot, format_mot_table, import_motmetrics, import_trackeval
from detector.tracking.mot_io import read_mot, write_mot_results

HAS_TRACKEVAL = import_trackeval() is not None


def box(frame, ident, x, y=0.0, w=10.0, h=10.0):
    return [frame, ident, x, y, w, h, 1.0, -1, -1, -1]


@pytest.fixture
def hand_case():
    """Two gt tracks over 5 frames, 100 px apart. The tracker follows track 1 all along as id 1;
    track 2 as id 2 in frames 1-3, then as id 3 in frame 4 (one ID switch), loses it in frame 5
    (one miss) and reports a box where nothing is in frame 5 (one false positive)."""
    gt = np.array([box(f, 1, 0) for f in range(1, 6)] + [box(f, 2, 100) for f in range(1, 6)])
    results = np.array(
        [box(f, 1, 0) for f in range(1, 6)] + [box(f, 2, 100) for f in (1, 2, 3)] + [box(4, 3, 100), box(5, 4, 300)]
    )
    return gt, results[:, :7]


def test_hand_case_matches_the_hand_count(hand_case):
    gt, results = hand_case
    m = evaluate_mot(gt, results)
    # 10 gt boxes, 10 result boxes, 8 correct matches + 1 switched match.
    assert (m["num_gt"], m["num_predictions"], m["num_frames"]) == (10, 10, 5)
    assert (m["num_false_positives"], m["num_misses"], m["num_switches"]) == (1, 1, 1)
    assert m["mota"] == pytest.approx(1 - (1 + 1 + 1) / 10)  # 0.7
    # Identity: gt 1 <-> id 1 (5 frames), gt 2 <-> id 2 (3 frames): IDTP 8 of 10 gt and 10 predicted.
    assert m["idf1"] == pytest.approx(2 * 8 / (10 + 10))  # 0.8
    assert m["idp"] == pytest.approx(0.8) and m["idr"] == pytest.approx(0.8)
    # Track 2 is covered 4 of 5 frames (>= 80%: mostly tracked); the miss ends it, no fragment.
    assert (m["mostly_tracked"], m["partially_tracked"], m["mostly_lost"], m["num_fragmentations"]) == (2, 0, 0, 0)
    assert m["motp"] == 0.0 and m["precision"] == pytest.approx(0.9) and m["recall"] == pytest.approx(0.9)
    assert all(isinstance(m[k], int) for k in ("num_switches", "num_false_positives", "num_misses", "num_gt"))
    if HAS_TRACKEVAL:  # every box overlap is 0 or 1, so each alpha gives the same numbers
        # DetA = TP / (TP + FN + FP) = 9 / 11. AssA averages, over the 9 true positives, the
        # association IoU of their (gt, id) pair: (1, 1) 5/5 for 5 TPs, (2, 2) 3/5 for 3, (2, 3) 1/5 for 1.
        assert m["deta"] == pytest.approx(9 / 11) and m["assa"] == pytest.approx((5 + 3 * 0.6 + 0.2) / 9)
        assert m["hota"] == pytest.approx(np.sqrt(9 / 11 * 7 / 9))


def test_hand_case_equals_motmetrics_called_directly(hand_case):
    gt, results = hand_case
    mm = import_motmetrics()

    def frame(rows):
        df = pd.DataFrame(rows[:, 2:6], columns=["X", "Y", "Width", "Height"])
        df.index = pd.MultiIndex.from_arrays([rows[:, 0].astype(int), rows[:, 1].astype(int)], names=["FrameId", "Id"])
        return df

    acc = mm.utils.compare_to_groundtruth(frame(gt), frame(results), "iou", distth=0.5)
    names = ["mota", "idf1", "idp", "idr", "num_switches", "num_false_positives", "num_misses", "num_fragmentations"]
    direct = mm.metrics.create().compute(acc, metrics=names, return_dataframe=False)
    ours = evaluate_mot(gt, results)
    assert {k: ours[k] for k in names} == pytest.approx({k: float(direct[k]) for k in names})


def test_motmetrics_works_through_our_import_under_this_numpy():
    mm = import_motmetrics()
    # iou_matrix is where motmetrics 1.4.0 calls np.asfarray, gone since NumPy 2.0.
    dist = mm.distances.iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 10, 10], [50, 50, 5, 5]], max_iou=0.5)
    np.testing.assert_allclose(dist, [[0.0, np.nan, np.nan]])  # IoU 1, 1/3 (> 0.5 distance), 0
    assert np.asfarray([1, 2]).dtype == np.float64


def test_iou_threshold_decides_a_match():
    gt = np.array([box(1, 1, 0)])
    shifted = np.array([box(1, 7, 2.0)])  # 8 x 10 overlap of two 10 x 10 boxes: IoU 80 / 120 = 0.667
    assert evaluate_mot(gt, shifted, iou_threshold=0.6)["num_matches"] == 1
    m = evaluate_mot(gt, shifted, iou_threshold=0.7)
    assert (m["num_matches"], m["num_false_positives"], m["num_misses"]) == (0, 1, 1)
    with pytest.raises(ValueError, match=r"iou_threshold: got 0; expected a value in \(0, 1\]"):
        evaluate_mot(gt, shifted, iou_threshold=0)


def test_perfect_tracker_scores_one(hand_case):
    gt, _ = hand_case
    m = evaluate_mot(gt, gt[:, :7])
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["num_switches"] == 0
    if HAS_TRACKEVAL:
        assert m["hota"] == pytest.approx(1.0) and m["deta"] == pytest.approx(1.0) and m["assa"] == pytest.approx(1.0)


def test_tud_campus_gt_against_itself():
    gt = read_mot(shared_dir() / "data" / "mot" / "TUD-Campus" / "gt" / "gt.txt", what="gt")
    m = evaluate_mot(gt, gt)
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["num_gt"] == 359 and m["num_gt_tracks"] == 8
    assert m["num_frames"] == 71
    table = format_mot_table(m)
    assert table.splitlines()[:2] == ["| metric | value |", "|---|---|"] and "| MOTA | 1.000 |" in table


def test_gt_flag_zero_rows_are_ignored():
    gt = np.array([box(1, 1, 0), box(1, 2, 100), box(2, 1, 0)])
    gt[1, 6] = 0  # MOT16+: "ignore this box"
    m = evaluate_mot(gt, np.array([box(1, 1, 0), box(2, 1, 0)]))
    assert (m["num_gt"], m["num_misses"], m["mota"]) == (2, 0, 1.0)
    no_flag = gt.copy()
    no_flag[:, 6] = -1  # a 6-column gt read by read_mot: counting none of it would be silent nonsense
    with pytest.raises(ValueError, match=r"none of its 3 rows has flag \(column 7\) >= 1"):
        evaluate_mot(no_flag, gt)


def test_duplicate_ids_in_a_frame_are_refused():
    dets = np.array([box(1, -1, 0), box(1, -1, 50)])
    with pytest.raises(ValueError, match=r"results: frame 1 has id -1 more than once \(a detection file"):
        evaluate_mot(dets[:1], dets)
    with pytest.raises(ValueError, match="gt: a frame or id is not an integer"):
        evaluate_mot(np.array([box(1, 1.5, 0)]), dets[:1])


def test_empty_results_are_all_misses(hand_case):
    gt, _ = hand_case
    m = evaluate_mot(gt, np.zeros((0, 7)))
    assert (m["num_misses"], m["num_false_positives"], m["mota"], m["mostly_lost"]) == (10, 0, 0.0, 2)
    assert "| Precision | n/a |" in format_mot_table(m)


@pytest.mark.skipif(not HAS_TRACKEVAL, reason="TrackEval is not installed")
def test_hota_equals_trackeval_on_files(tmp_path):
    """Our in-memory HOTA data dict against TrackEval's own MOT15 file pipeline on TUD-Campus with
    a noisy tracker (shifted boxes, dropped boxes, switched ids, false positives)."""
    import trackeval

    seq = shared_dir() / "data" / "mot" / "TUD-Campus"
    gt = read_mot(seq / "gt" / "gt.txt", what="gt")
    rng = np.random.default_rng(1)
    results = gt[:, :7].copy()
    results[:, 2:4] += rng.normal(0, 8, (len(results), 2))
    results[::9, 1] += 50
    results = results[rng.random(len(results)) > 0.1]
    extra = results[::11].copy()
    extra[:, 1] = 900 + np.arange(len(extra))
    extra[:, 2] += 200
    results = np.concatenate([results, extra])
    results_file = write_mot_results(tmp_path / "trackers" / "ours" / "data" / "TUD-Campus.txt", results)
    (tmp_path / "gt" / "TUD-Campus" / "gt").mkdir(parents=True)
    shutil.copy(seq / "gt" / "gt.txt", tmp_path / "gt" / "TUD-Campus" / "gt" / "gt.txt")
    shutil.copy(seq / "seqinfo.ini", tmp_path / "gt" / "TUD-Campus" / "seqinfo.ini")
    (tmp_path / "seqmap.txt").write_text("name\nTUD-Campus\n")
    dataset = trackeval.datasets.MotChallenge2DBox(
        {
            "GT_FOLDER": str(tmp_path / "gt"),
            "TRACKERS_FOLDER": str(tmp_path / "trackers"),
            "OUTPUT_FOLDER": str(tmp_path / "out"),
            "SEQMAP_FILE": str(tmp_path / "seqmap.txt"),
            "SKIP_SPLIT_FOL": True,
            "BENCHMARK": "MOT15",
            "TRACKERS_TO_EVAL": ["ours"],
            "PRINT_CONFIG": False,
        }
    )
    quiet = {"PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False, "LOG_ON_ERROR": None}
    outputs = {"OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False}
    evaluator = trackeval.Evaluator({**quiet, **outputs})
    with contextlib.redirect_stdout(io.StringIO()):
        res, _ = evaluator.evaluate([dataset], [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR()])
    theirs = res["MotChallenge2DBox"]["ours"]["TUD-Campus"]["pedestrian"]
    ours = evaluate_mot(gt, read_mot(results_file, what="results"))
    for key, name in (("hota", "HOTA"), ("deta", "DetA"), ("assa", "AssA"), ("loca", "LocA")):
        assert ours[key] == pytest.approx(float(np.mean(theirs["HOTA"][name])), abs=1e-12)
    assert 0.3 < ours["hota"] < 0.9  # a real mix of errors, not a degenerate case
    assert ours["mota"] == pytest.approx(theirs["CLEAR"]["MOTA"])
    assert ours["num_switches"] == theirs["CLEAR"]["IDSW"]
