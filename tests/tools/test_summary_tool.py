import subprocess
import sys

from conftest import REPO


def run_summary(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "summary.py"), *args], capture_output=True, text=True, cwd=REPO
    )


def test_summary_prints_markdown_table():
    result = run_summary("configs/_base_/models/yolox_nano.yaml", "--imgsz", "416")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "| config | input | parameters | GFLOPs |"
    assert lines[2] == "| configs/_base_/models/yolox_nano.yaml | 416x416 | 912,159 | 1.045 |"


def test_summary_non_square_and_overrides():
    config = "configs/_base_/models/yolox_nano.yaml"
    result = run_summary(config, "--imgsz", "384", "640", "--set", "model.head.num_classes=1")
    assert result.returncode == 0, result.stderr
    assert "| 384x640 |" in result.stdout


def test_summary_user_error_is_one_line():
    result = run_summary("configs/_base_/models/yolox_nano.yaml", "--set", "model.neck.type=PAN")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: configs/_base_/models/yolox_nano.yaml: model.neck.type: unknown NECKS type 'PAN'; "
        "did you mean 'PAFPN', 'FPN'?"
    ]
