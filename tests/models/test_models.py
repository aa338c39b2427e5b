"""Output shapes of every model config, model-building errors, and BN fusion."""

import copy
import re

import pytest
import torch

from detector import build_model, load_config
from detector.errors import ConfigError
from detector.models.layers import Focus

PRESETS = ["nano", "tiny", "s", "m", "l", "x"]
SIZES = [(320, 320), (416, 416), (640, 640), (384, 640)]


def config_path(configs_dir, name):
    return configs_dir / "_base_" / "models" / (name if name.endswith(".yaml") else f"yolox_{name}.yaml")


def num_priors(h, w):
    return sum((h // s) * (w // s) for s in (8, 16, 32))


@pytest.fixture(scope="module")
def models(configs_dir):
    names = [*PRESETS, "yolov3_darknet53.yaml"]
    return {n: build_model(load_config(config_path(configs_dir, n))).eval() for n in names}


@pytest.mark.parametrize("name", [*PRESETS, "yolov3_darknet53.yaml"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_eval_output_shape(models, name, size):
    h, w = size
    with torch.no_grad():
        out = models[name](torch.rand(1, 3, h, w) * 255)
    assert out.shape == (1, num_priors(h, w), 85)
    assert torch.isfinite(out).all()
    assert ((out[..., 4:] >= 0) & (out[..., 4:] <= 1)).all()


def test_training_mode_returns_raw_level_maps(models):
    model = copy.deepcopy(models["nano"]).train()
    levels = model(torch.rand(2, 3, 384, 640))
    assert [tuple(t.shape) for t in levels] == [(2, 85, 48, 80), (2, 85, 24, 40), (2, 85, 12, 20)]


def test_decoded_boxes_are_centred_on_their_cells(models):
    """With zero box regression, cx/cy land on the cell's corner and w/h equal the stride."""
    model = copy.deepcopy(models["nano"])
    for conv in model.head.reg_preds:
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 96))
    # level 0 is 8 x 12 cells of stride 8; prior 13 is row 1, column 1
    assert out[0, 13, :4].tolist() == [8.0, 8.0, 8.0, 8.0]
    # the first prior of level 2 (stride 32) follows the 8*12 + 4*6 priors before it
    assert out[0, 120, :4].tolist() == [0.0, 0.0, 32.0, 32.0]


def test_input_size_must_be_divisible_by_32(models):
    with pytest.raises(ValueError, match=r"multiples of 32, got \[1, 3, 100, 128\]"):
        models["nano"](torch.rand(1, 3, 100, 128))


@pytest.mark.parametrize("name", ["nano", "s", "yolov3_darknet53.yaml"])
def test_fuse_keeps_outputs(models, name):
    model = copy.deepcopy(models[name])
    for m in model.modules():  # non-trivial BN statistics so that fusion has work to do
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(2, 3, 256, 320) * 255
    with torch.no_grad():
        expected = model(x)
        fused = model.fuse()(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.folded for m in model.modules() if isinstance(m, Focus))  # space-to-depth folded too
    assert (fused - expected).abs().max().item() < 1e-5 * max(1.0, expected.abs().max().item())


def test_num_classes_override_changes_head(configs_dir):
    cfg = load_config(config_path(configs_dir, "nano"), ["model.head.num_classes=6"])
    model = build_model(cfg).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 320, 320)).shape == (1, 2100, 11)


def test_build_model_errors_name_the_config_path(configs_dir):
    path = config_path(configs_dir, "nano")
    cases = {
        "model.neck.in_channels=[1, 2, 3]": r"model.neck.in_channels: \[1, 2, 3\] does not match .* \[64, 128, 256\]",
        "model.head.num_clases=3": r"model.head.num_clases: YOLOXHead has no argument 'num_clases'",
        "model.backbone.type=CSPDarkNet": r"model.backbone.type: unknown BACKBONES type 'CSPDarkNet'",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError, match=rf"^{message}"):
            build_model(load_config(path, [override], check_parts=False))
        # Loading the config already checks the model (on the meta device), naming the file.
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
            load_config(path, [override])
    with pytest.raises(ConfigError, match=r"^model.neck: missing"):
        build_model({"model": {"backbone": {"type": "Darknet53"}, "head": {}}})
