"""The pruning workflow as a user runs it: ``detector prune`` on a trained checkpoint, the files it
writes (weights_only-loadable, a config that rebuilds the slim model), fine-tuning through the
trainer from those weights with distillation from the unpruned model, ``summary``, and ONNX
export with ONNX Runtime parity; ``train.init_weights`` and its errors."""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from detector import build_model, load_config
from detector.commands import prune as prune_command
from detector.commands import summary as summary_command
from detector.compress.prune import prune_channels
from detector.data.synthetic import coco_split_configs, generate_synthetic_coco
from detector.engine.hooks.init_weights import load_initial_weights
from detector.engine.trainer import Trainer
from detector.errors import ConfigError
from detector.export import export_onnx
from detector.models.yolox_weights import load_yolox_weights
from detector.utils.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch YOLOX-Nano run on a small shapes set: its config file and best.pt."""
    root = tmp_path_factory.mktemp("prune")
    shapes = generate_synthetic_coco(root / "shapes", num_train=12, num_val=4, image_size=96, seed=5)
    cfg = load_config("yolox_nano_shapes", overrides={"model.head.num_classes": 5})
    cfg["data"].update(**coco_split_configs(shapes), imgsz=96, batch_size=4, num_workers=0)
    cfg["train"].update(output_dir=str(root / "runs"), name="base", epochs=1, eval_interval=1, plots=False,
                        keep_freed_memory=False)  # fmt: skip
    Trainer(cfg, device="cpu", progress=False).train()
    config_path = root / "base.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    return root, config_path, root / "runs" / "base" / "weights" / "best.pt"


def test_prune_fine_tune_summary_and_export(trained, capsys):
    root, config_path, best = trained
    out = root / "pruned.pt"
    argv = [str(config_path), "--ckpt", str(best), "--out", str(out), "--flops", "0.5", "--method", "taylor",
            "--batches", "2", "--round-to", "4", "--min-channels", "4", "--imgsz", "96"]  # fmt: skip
    assert prune_command.main(argv) == 0
    printed = capsys.readouterr().out
    assert "pruned" in printed and "(taylor, ratio" in printed and "fine-tune with: detector train" in printed
    # The checkpoint: plain data only; its config rebuilds the slim network.
    state = load_checkpoint(out)  # weights_only=True
    layout = state["config"]["model"]["channel_layout"]
    assert all(type(c) is int for widths in layout.values() for c in widths)
    params_before, params_after = state["pruning"]["params"]
    flops_before, flops_after = state["pruning"]["flops"]
    assert params_after < params_before and 0.35 < flops_after / flops_before < 0.65
    assert state["class_names"] == load_checkpoint(best)["class_names"]
    slim = build_model(state["config"])
    slim.load_state_dict(state["model"])
    # summary reads the checkpoint's own config: the slim counts.
    assert summary_command.main([str(out), "--imgsz", "96"]) == 0
    assert f"| {params_after:,} |" in capsys.readouterr().out

    # Fine-tune from the written config, distilled from the unpruned model (its neck is wider:
    # the feature loss gets adapters).
    written = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert written["train"]["init_weights"] == str(out.resolve()) and written["train"]["name"] == "pruned"
    cfg = load_config(out.with_suffix(".yaml"), overrides={"distill.teacher.ckpt": str(best)})
    trainer = Trainer(cfg, device="cpu", progress=False)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, state["model"][key]), key
    trainer.train()
    log = (root / "runs" / "pruned" / "train.log").read_text()
    assert f"initial weights: {out.resolve()}" in log and "distill_cwd=" in log
    tuned = load_checkpoint(root / "runs" / "pruned" / "weights" / "last.pt")
    assert tuned["config"]["model"]["channel_layout"] == layout

    # Export with the checkpoint's config; ONNX Runtime equals PyTorch.
    model = build_model(tuned["config"])
    model.load_state_dict(tuned["model"])
    model.eval()
    path = export_onnx(copy.deepcopy(model), root / "pruned.onnx", imgsz=96)
    x = torch.rand(2, 3, 96, 96) * 255
    with torch.no_grad():
        reference = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for i in range(2):
        np.testing.assert_allclose(session.run(None, {"images": x[i : i + 1].numpy()})[0], reference[i : i + 1],
                                   atol=1e-4, rtol=0)  # fmt: skip


def test_pruned_official_yolox_nano_exports_with_parity(fixtures_dir, tmp_path):
    """Real weights (the official YOLOX-Nano of the parity fixture), pruned to about half the
    FLOPs: ONNX Runtime reproduces the pruned PyTorch model within 1e-4 pixels/probabilities."""
    fixture = torch.load(fixtures_dir / "yolox_nano_parity.pt", weights_only=True)
    cfg = load_config("_base_/models/yolox_nano")
    model = load_yolox_weights(build_model(cfg), fixture["model"])
    result = prune_channels(model, 0.4, "l2", imgsz=416)
    assert result.flops_ratio < 0.7
    model.eval()
    path = export_onnx(copy.deepcopy(model), tmp_path / "nano.onnx", imgsz=416)
    with torch.no_grad():
        reference = model(fixture["input"][:1]).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": fixture["input"][:1].numpy()})[0], reference, atol=1e-4,
                               rtol=0)  # fmt: skip


def test_init_weights_official_checkpoint_other_classes_and_errors(fixtures_dir, tmp_path):
    fixture = torch.load(fixtures_dir / "yolox_nano_parity.pt", weights_only=True)
    official = tmp_path / "yolox_nano.pth"
    torch.save({"start_epoch": 300, "model": fixture["model"]}, official)
    # 80 COCO classes into a 5-class model: everything but the class convs is loaded.
    cfg = load_config("yolox_nano_shapes", overrides={"model.head.num_classes": 5})
    model = build_model(cfg)
    skipped = load_initial_weights(model, official)
    assert skipped == [f"head.cls_preds.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    stem = fixture["model"]["backbone.backbone.stem.conv.conv.weight"]
    assert torch.equal(model.backbone.stem.conv.conv.weight, stem)
    # A pruned checkpoint with the unpruned config: the error says which config to use.
    pruned = build_model(cfg)
    prune_channels(pruned, 0.5)
    ours = tmp_path / "pruned.pt"
    save_checkpoint({"config": cfg, "model": pruned.state_dict()}, ours)
    expected = r"init_weights: .*pruned.pt: 'backbone.*' is \[.*\] there, .*; a pruned checkpoint needs the config"
    with pytest.raises(ConfigError, match=expected):
        load_initial_weights(build_model(cfg), ours)
    other = build_model(load_config("yolox_s", overrides={"model.head.num_classes": 5}))
    with pytest.raises(ConfigError, match=r"train.init_weights: .*pruned.pt: \d+ tensors missing, \d+ not in the"):
        load_initial_weights(other, ours)
    with pytest.raises(ConfigError, match="train.init_weights: .*junk.pt: neither a checkpoint of this package"):
        torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "junk.pt")
        load_initial_weights(build_model(cfg), tmp_path / "junk.pt")
