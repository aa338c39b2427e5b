"""tools/eval_mot.py: MOT metrics of a results file against gt, as a table and JSON."""

import json
import subprocess
import sys

from conftest import REPO, shared_dir


def eval_mot(*args):
    cmd = [sys.executable, str(REPO / "tools" / "eval_mot.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_gt_against_itself_scores_one(tmp_path):
    gt = shared_dir() / "data" / "mot" / "TUD-Campus" / "gt" / "gt.txt"
    out = tmp_path / "m" / "metrics.json"
    result = eval_mot(gt, gt, "--iou", 0.5, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "| MOTA | 1.000 |" in result.stdout and "| IDF1 | 1.000 |" in result.stdout
    assert "| IDSW | 0 |" in result.stdout and f"metrics: {out}" in result.stdout
    metrics = json.loads(out.read_text())
    assert metrics["mota"] == 1.0 and metrics["num_gt"] == 359 and metrics["motp"] == 0.0
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]


def test_user_errors_are_one_line(tmp_path):
    # Each run costs a Python start with torch (~2 s): the other error messages are unit-tested.
    gt = shared_dir() / "data" / "mot" / "TUD-Campus" / "gt" / "gt.txt"
    bad = tmp_path / "results.txt"
    bad.write_text("1,1,10,20,30,40,1,-1,-1,-1\n2,1,10,20,30,-40,1,-1,-1,-1\n")
    result = eval_mot(bad, gt, "--out", tmp_path / "m.json")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}:2: h is '-40'; expected a positive height in pixels"
    assert not (tmp_path / "m.json").exists() and result.stdout == ""
