"""Official YOLOX weights in our model reproduce the official code's outputs (fixtures)."""

import pytest
import torch

from detector import build_model, load_config, load_yolox_weights
from detector.models.yolox_weights import convert_yolox_state_dict

TOL = 1e-4


@pytest.fixture(scope="module", params=["nano", "tiny"])
def case(request, fixtures_dir, configs_dir):
    fixture = torch.load(fixtures_dir / f"yolox_{request.param}_parity.pt", weights_only=True)
    model = build_model(load_config(configs_dir / "_base_" / "models" / f"yolox_{request.param}.yaml"))
    load_yolox_weights(model, fixture["model"])  # strict=True: every key and shape must match
    return model.eval(), fixture


def max_diff(a, b):
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@torch.no_grad()
def test_neck_outputs_match(case):
    model, fixture = case
    for ours, ref in zip(model.features(fixture["input"]), fixture["fpn_outputs"], strict=True):
        assert max_diff(ours, ref) < TOL


@torch.no_grad()
def test_raw_and_decoded_outputs_match(case):
    model, fixture = case
    assert max_diff(model(fixture["input"], decode=False), fixture["raw_outputs"]) < TOL
    assert max_diff(model(fixture["input"]), fixture["decoded_outputs"]) < TOL


@torch.no_grad()
def test_fused_model_matches_fixture(case):
    model, fixture = case
    import copy

    fused = copy.deepcopy(model).fuse()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert max_diff(fused(fixture["input"]), fixture["decoded_outputs"]) < TOL


def test_checkpoint_file_with_model_entry_loads(tmp_path, fixtures_dir, configs_dir):
    fixture = torch.load(fixtures_dir / "yolox_nano_parity.pt", weights_only=True)
    path = tmp_path / "yolox_nano.pth"
    torch.save({"model": fixture["model"], "start_epoch": 300}, path)
    model = build_model(load_config(configs_dir / "_base_" / "models" / "yolox_nano.yaml"))
    load_yolox_weights(model, path)
    assert torch.equal(model.head.cls_preds[0].weight, fixture["model"]["head.cls_preds.0.weight"])


def test_key_mapping_covers_yolox_s_layout(fixtures_dir, configs_dir):
    """Every key of the official YOLOX-s checkpoint maps onto our YOLOX-s with its shape."""
    lines = (fixtures_dir / "yolox_s_state_dict_keys.txt").read_text().splitlines()
    official = {}
    for line in lines:
        key, shape = line.split("\t")
        official[key] = torch.empty(eval_shape(shape))
    ours = build_model(load_config(configs_dir / "_base_" / "models" / "yolox_s.yaml")).state_dict()
    mapped = convert_yolox_state_dict(official)
    assert mapped.keys() == ours.keys()
    assert all(mapped[k].shape == ours[k].shape for k in ours)


def eval_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.strip("()").split(",") if v.strip())


def test_unexpected_key_is_named():
    with pytest.raises(KeyError, match="unexpected key 'ema.step'"):
        convert_yolox_state_dict({"ema.step": torch.zeros(1)})
