"""Parameter and FLOP counts of the YOLOX configs equal the official model's."""

import pytest

from detector import build_model, load_config
from detector.models.summary import count_flops, count_parameters


@pytest.mark.parametrize(
    ("name", "imgsz", "params", "gflops"),
    [("s", 640, 8_968_255, 26.69), ("nano", 416, 912_159, 1.045)],
)
def test_counts_match_official_yolox(configs_dir, name, imgsz, params, gflops):
    model = build_model(load_config(configs_dir / "_base_" / "models" / f"yolox_{name}.yaml"))
    assert count_parameters(model) == params
    assert round(count_flops(model, imgsz) / 1e9, 3 if gflops < 2 else 2) == gflops
    assert model.training  # counting leaves the mode as it was


def test_flops_scale_with_input_area(configs_dir):
    model = build_model(load_config(configs_dir / "_base_" / "models" / "yolox_nano.yaml"))
    ratio = count_flops(model, (320, 640)) / count_flops(model, 320)
    assert ratio == pytest.approx(2.0, rel=1e-6)
