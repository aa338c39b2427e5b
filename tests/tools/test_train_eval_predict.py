"""The command-line tools end to end on a tiny generated set (slow: they train a model)."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

from detector.data.synthetic import generate_synthetic_coco

pytestmark = pytest.mark.slow


def run_tool(name, *args, cwd=REPO):
    cmd = [sys.executable, str(REPO / "tools" / name), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    data = generate_synthetic_coco(root / "data", num_train=8, num_val=4, image_size=96, seed=1)
    overrides = [
        f"data.train.ann_file={data['train_ann']}",
        f"data.train.img_dir={data['train_images']}",
        f"data.val.ann_file={data['val_ann']}",
        f"data.val.img_dir={data['val_images']}",
        "data.imgsz=96",
        "data.batch_size=4",
        "data.num_workers=0",
        "train.epochs=1",
        f"train.output_dir={root / 'runs'}",
        "train.name=tiny",
    ]
    result = run_tool("train.py", "configs/yolox_nano_shapes.yaml", "--no-progress", "--set", *overrides)
    assert result.returncode == 0, result.stderr
    return {"root": root, "data": data, "overrides": overrides, "run": root / "runs" / "tiny", "train": result}


def test_train_prints_table_and_writes_run(trained):
    out = trained["train"].stdout
    assert "| mAP50_95 |" in out and "| AR_large |" in out
    assert (trained["run"] / "weights" / "last.pt").is_file()


def test_eval_with_config_and_with_ann_give_same_metrics(trained):
    ckpt = trained["run"] / "weights" / "last.pt"
    out1, out2 = trained["root"] / "m1.json", trained["root"] / "m2.json"
    r1 = run_tool(
        "eval.py", "configs/yolox_nano_shapes.yaml", "--ckpt", ckpt, "--out", out1, "--set", *trained["overrides"]
    )
    assert r1.returncode == 0, r1.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in r1.stdout
    data = trained["data"]
    r2 = run_tool("eval.py", "--ckpt", ckpt, "--ann", data["val_ann"], "--images", data["val_images"], "--out", out2)
    assert r2.returncode == 0, r2.stderr
    m1, m2 = json.loads(out1.read_text()), json.loads(out2.read_text())
    assert {"mAP50_95", "mAP50", "mAP75", "per_class"} <= set(m1)
    assert m1["stats"] == m2["stats"]


def test_eval_scores_a_results_file(trained):
    data = trained["data"]
    gt = json.loads(data["val_ann"].read_text())
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
    ]
    path = trained["root"] / "results.json"
    path.write_text(json.dumps(results))
    out = trained["root"] / "perfect.json"
    r = run_tool("eval.py", "--ann", data["val_ann"], "--results", path, "--out", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["mAP50_95"] == pytest.approx(1.0)


def test_predict_writes_images_and_json(trained):
    out = trained["root"] / "pred"
    r = run_tool(
        "predict.py", trained["data"]["val_images"], "--ckpt", trained["run"] / "weights" / "last.pt", "--out", out
    )
    assert r.returncode == 0, r.stderr
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == 4 and len(list(out.glob("*.png"))) == 4
    assert set(records[0]) == {"file", "boxes_xyxy", "scores", "labels", "names"}


def test_resume_continues_the_run(trained):
    r = run_tool(
        "train.py",
        "configs/yolox_nano_shapes.yaml",
        "--no-progress",
        "--resume",
        trained["run"] / "weights" / "last.pt",
        "--set",
        *trained["overrides"][:-3],
        "train.epochs=2",
    )
    assert r.returncode == 0, r.stderr
    assert len((trained["run"] / "metrics.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("train.py", ["configs/nope.yaml"], "configs/nope.yaml: config file not found"),
        ("train.py", ["configs/yolox_nano_shapes.yaml", "--set", "data.train.type=Coco"], "unknown DATASETS type"),
        ("eval.py", ["--ann", "x.json"], "error: --ckpt or --onnx is required"),
        ("eval.py", ["--ckpt", "missing.pt", "--ann", "a.json", "--images", "d"], "missing.pt: checkpoint not found"),
        ("predict.py", ["nowhere/", "--ckpt", "x.pt"], "error: nowhere: no such image file or folder"),
    ],
)
def test_user_errors_are_one_line(tool, args, message):
    r = run_tool(tool, *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
