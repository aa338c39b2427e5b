"""Priors (grid cells with their stride and optional anchor size) and box decoding.

A prior is one row ``(grid_x, grid_y, stride, anchor_w, anchor_h)``: integer cell indices,
the level's stride in input pixels, and the anchor size in input pixels (``stride`` for
anchor-free heads, i.e. one cell). Priors are ordered level by level, then anchor, then
row-major (y, then x) inside a level, which is the order head outputs are flattened in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def make_priors(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    anchors: Sequence[Sequence[tuple[float, float]]] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Priors for maps of ``feature_sizes`` [(h, w), ...] at ``strides``.

    ``anchors`` (optional) gives per level a list of (w, h) anchor sizes in input pixels.
    Returns ``[P, 5]`` with ``P = sum(A_l * h_l * w_l)``.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(f"{len(feature_sizes)} feature maps but {len(strides)} strides")
    if anchors is not None and len(anchors) != len(strides):
        raise ValueError(f"anchors has {len(anchors)} levels, expected {len(strides)}")
    levels = []
    for level, ((h, w), stride) in enumerate(zip(feature_sizes, strides, strict=True)):
        ys, xs = torch.meshgrid(
            torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
        )
        cells = torch.stack((xs.reshape(-1), ys.reshape(-1), torch.full_like(xs.reshape(-1), stride)), dim=1)
        sizes = anchors[level] if anchors is not None else [(stride, stride)]
        for aw, ah in sizes:
            anchor = cells.new_tensor([aw, ah]).expand(cells.shape[0], 2)
            levels.append(torch.cat((cells, anchor), dim=1))
    return torch.cat(levels, dim=0)


def prior_centers(priors: torch.Tensor) -> torch.Tensor:
    """Centres of the priors' cells in input pixels, ``[P, 2]`` (x, y) = (grid + 0.5) * stride."""
    return (priors[:, :2] + 0.5) * priors[:, 2:3]


def decode_yolox_boxes(box_raw: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """YOLOX box decoding: ``[..., P, 4]`` (tx, ty, tw, th) -> (cx, cy, w, h) input pixels.

    cx = (tx + grid_x) * stride, w = exp(tw) * stride (no +0.5 on the grid, as in YOLOX).
    """
    grid = priors[:, :2]
    stride = priors[:, 2:3]
    xy = (box_raw[..., :2] + grid) * stride
    wh = torch.exp(box_raw[..., 2:4]) * stride
    return torch.cat((xy, wh), dim=-1)


def decode_yolov5_boxes(box_raw: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """YOLOv5 box decoding: ``[..., P, 4]`` raw (tx, ty, tw, th) -> (cx, cy, w, h) input pixels.

    cx = (2 sigmoid(tx) - 0.5 + grid_x) * stride, w = (2 sigmoid(tw))^2 * anchor_w: centres stay
    within 1.5 cells of the cell's corner and sizes within 4x the anchor.
    """
    grid = priors[:, :2]
    stride = priors[:, 2:3]
    anchor = priors[:, 3:5]
    xy = box_raw[..., :2].sigmoid()
    wh = box_raw[..., 2:4].sigmoid()
    return torch.cat(((xy * 2 - 0.5 + grid) * stride, (wh * 2) ** 2 * anchor), dim=-1)
