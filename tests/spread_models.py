"""A detector with the varied channel ranges of a trained one, for tests of what depends on them
(cross-layer equalisation, INT8): not a test module."""

import torch
from torch import nn

from detector import build_model, load_config


def spread_model(act="silu", depthwise=True, seed=0):
    """``(config, model)``: a Nano-sized detector with activation ``act`` whose channels have very
    different ranges (log-normal per-channel weight scales) and BatchNorms with spread
    statistics, in eval mode."""
    overrides = {f"model.{part}.act": act for part in ("backbone", "neck", "head")}
    if not depthwise:
        overrides.update({f"model.{part}.depthwise": False for part in ("backbone", "neck", "head")})
    cfg = load_config("yolox_nano_shapes", overrides=overrides)
    torch.manual_seed(seed)
    model = build_model(cfg)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.1, 2)
            m.bias.data.uniform_(-1, 2)
        if isinstance(m, nn.Conv2d):
            m.weight.data *= torch.exp(torch.randn(m.weight.shape[0], 1, 1, 1))
    return cfg, model.eval()
