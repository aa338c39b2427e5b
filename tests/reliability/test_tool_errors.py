"""Every tool answers a user's mistake with exit code 2 and one line naming the file or value
and what was expected; ``--debug`` adds the traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/yolox_nano_shapes.yaml"
CASES = {
    "train": (["tools/train.py", "/nope.yaml"], "/nope.yaml: config file not found"),
    "eval": (["tools/eval.py", CONFIG, "--ckpt", "/nope.pt"], "/nope.pt: checkpoint not found"),
    "predict": (["tools/predict.py", "/nope.jpg", "--ckpt", "/nope.pt"], "/nope.jpg: no such image file or folder"),
    "track": (["tools/track.py", "/nope.mp4", "--dets", "/nope.txt"], "/nope.mp4: no such video"),
    "export": (["tools/export.py", CONFIG, "--ckpt", "/nope.pt", "--out", "/tmp/x.onnx"], "checkpoint not found"),
    "quantize": (["tools/quantize.py", "/nope.onnx", CONFIG, "--out", "/tmp/y.onnx"], "/nope.onnx: no such ONNX model"),
    "eval_mot": (["tools/eval_mot.py", "/nope1.txt", "/nope2.txt"], "/nope1.txt: no such MOT results file"),
    "check_dataset": (["tools/check_dataset.py", "/nope.yaml"], "/nope.yaml: config file not found"),
    "browse_dataset": (["tools/browse_dataset.py", "/nope.yaml"], "/nope.yaml: config file not found"),
    "summary": (["tools/summary.py", "/nope.yaml"], "/nope.yaml: config file not found"),
    "make_synthetic": (["tools/make_synthetic.py", "--out", "/tmp/never", "--size", "0"], "image_size 0 is too small"),
    "bad override": (["tools/train.py", CONFIG, "--set", "model.head.num_classes"], "expected KEY=VALUE"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_user_errors_are_one_line_with_exit_2(name):
    args, message = CASES[name]
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr


@pytest.mark.slow
def test_debug_shows_the_traceback():
    done = subprocess.run([sys.executable, "tools/train.py", "/nope.yaml", "--debug"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" in done.stderr and done.stderr.strip().endswith("not found")
