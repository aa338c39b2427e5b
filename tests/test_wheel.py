"""The product as a user installs it: build a wheel, install it (not editable) into a fresh
virtualenv, and from a folder outside the checkout run the ``detector`` command end to end with
the packaged configs: make-synthetic, train, eval (with --plots), predict, export.

The fresh virtualenv sees the test environment's dependencies (torch & co.) through a ``.pth``
line instead of installing them again (several GB); ``detector`` itself comes only from the
wheel: that environment's own editable install is not active there, and the working folder is
not the checkout."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SKIP = shutil.ignore_patterns(".venv*", ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


def run(cmd, cwd, env, timeout=600):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    src = root / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=SKIP)
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist", src], root, env
    )
    (wheel,) = (root / "dist").glob("detector-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", venv], root, env)
    python = venv / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env).stdout.strip()
    (Path(purelib) / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], root, env)
    work = root / "work"
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "work": work, "env": {**env, "PATH": f"{venv / 'bin'}:{env['PATH']}"}}


def test_wheel_holds_the_configs_and_the_command(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "detector/configs/yolox_s.yaml" in names and "detector/configs/_base_/models/yolox_nano.yaml" in names
    assert "detector/commands/train.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "detector = detector.cli:main" in zipfile.ZipFile(installed["wheel"]).read(entry).decode()
    where = run(["python", "-c", "import detector; print(detector.__file__)"], installed["work"], installed["env"])
    assert str(installed["venv"]) in where.stdout and str(REPO) not in where.stdout


def test_detector_command_end_to_end(installed):
    work, env = installed["work"], installed["env"]
    detector = installed["venv"] / "bin" / "detector"
    run(
        [detector, "make-synthetic", "--out", "data/synthetic", "--size", "96", "--train", "16", "--val", "8"],
        work,
        env,
    )
    small = ["data.imgsz=96", "data.batch_size=8", "train.epochs=1", "train.eval_interval=1"]
    done = run([detector, "train", "yolox_nano_shapes", "--device", "cpu", "--no-progress", "--set", *small], work, env)
    run_dir = work / "runs" / "yolox_nano_shapes"
    ckpt = run_dir / "weights" / "last.pt"
    assert ckpt.is_file() and "mAP50" in done.stdout
    assert {"pr_curve_50.png", "pr_curve_50_95.png", "confusion_matrix.png", "class_ap.png"} <= {
        p.name for p in (run_dir / "plots").iterdir()
    }
    # The run's config.yaml is the full config: evaluating with it alone gives the training's numbers.
    done = run(
        [detector, "eval", run_dir / "config.yaml", "--ckpt", ckpt, "--out", "metrics.json", "--plots", "evalplots"],
        work,
        env,
    )
    assert json.loads((work / "metrics.json").read_text())["mAP50"] >= 0.0
    assert (work / "evalplots" / "confusion_matrix.png").is_file()
    run([detector, "predict", "data/synthetic/images/val", "--ckpt", ckpt, "--out", "pred"], work, env)
    assert len(list((work / "pred").glob("*.png"))) == 8
    run([detector, "export", "--ckpt", ckpt, "--out", "model.onnx"], work, env)
    assert (work / "model.onnx").stat().st_size > 100_000
    # A typo stops the run before any data is read, with one line naming the closest key.
    bad = subprocess.run(
        [str(detector), "train", "yolox_nano_shapes", "--set", "train.epoch=3"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().endswith("did you mean 'train.epochs'?"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
