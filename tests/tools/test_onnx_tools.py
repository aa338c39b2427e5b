"""predict, eval and track with --onnx: an exported model behind every tool (slow: subprocesses)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO

from detector.data.synthetic import generate_synthetic_coco
from detector.export import export_onnx

pytestmark = pytest.mark.slow


class Blobs(torch.nn.Module):
    """A 'detector' whose scores follow the pixels (dark pixels score high), 2 classes."""

    def forward(self, x):
        b, _, h, w = x.shape
        ys, xs = torch.meshgrid(torch.arange(h // 8), torch.arange(w // 8), indexing="ij")
        cx, cy = (xs.flatten() * 8 + 4).float(), (ys.flatten() * 8 + 4).float()
        dark = 1 - torch.nn.functional.avg_pool2d(x, 8).mean(1).flatten(1) / 255  # [B, P]
        size = torch.full_like(dark, 24.0)
        boxes = torch.stack([cx.expand_as(dark), cy.expand_as(dark), size, size], -1)
        cls = torch.stack([dark, 1 - dark], -1)
        return torch.cat([boxes, dark[..., None], cls], -1)


def tool(name, *args):
    cmd = [sys.executable, str(REPO / "tools" / name), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "blobs.onnx"
    return export_onnx(Blobs(), path, imgsz=96, dynamic_batch=True, class_names=["dark", "light"])


def test_predict_and_eval_with_onnx(model, tmp_path):
    image = np.full((96, 128, 3), 230, np.uint8)
    image[30:60, 40:70] = 10
    cv2.imwrite(str(tmp_path / "a.png"), image)
    result = tool("predict.py", tmp_path / "a.png", "--onnx", model, "--out", tmp_path / "pred", "--conf", "0.5")
    assert result.returncode == 0, result.stderr
    records = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert records[0]["names"] and records[0]["names"][0] == "dark"
    data = generate_synthetic_coco(tmp_path / "data", num_train=1, num_val=3, image_size=96, seed=4)
    result = tool("eval.py", "--onnx", model, "--ann", data["val_ann"], "--images", data["val_images"],
                  "--out", tmp_path / "m.json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mAP50_95" in json.loads((tmp_path / "m.json").read_text())


def test_track_with_onnx(model, tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    for t in range(6):
        frame = np.full((96, 128, 3), 230, np.uint8)
        frame[30:60, 10 + 8 * t : 40 + 8 * t] = 10
        writer.write(frame)
    writer.release()
    result = tool("track.py", tmp_path / "v.mp4", "--onnx", model, "--out", tmp_path / "t", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "6 frames" in result.stdout and (tmp_path / "t" / "annotated.mp4").is_file()
