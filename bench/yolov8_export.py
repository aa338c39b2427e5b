"""Exports Ultralytics' YOLOv8n (built from yolov8n.yaml: random weights, which latency does not
depend on) to ONNX with Ultralytics' own exporter; called by bench/export_speed.py with the
Python of bench/.venv-yolov8, never with the project's environment.

    YOLOV8_PYTHON bench/yolov8_export.py OUT_DIR SIZE [SIZE ...]

Writes OUT_DIR/yolov8n_SIZE.onnx (batch 1, opset of Ultralytics' choice, inputs RGB 0..1).
"""

import os
import shutil
import sys
from pathlib import Path

from ultralytics import YOLO


def main() -> None:
    out = Path(sys.argv[1]).resolve()
    os.chdir(out)  # the exporter writes next to the model's name
    model = YOLO("yolov8n.yaml")
    for size in map(int, sys.argv[2:]):
        path = model.export(format="onnx", imgsz=size, batch=1, dynamic=False, simplify=False, verbose=False)
        shutil.move(path, out / f"yolov8n_{size}.onnx")


if __name__ == "__main__":
    main()
