"""YOLOv5 matching: shape-ratio anchor matching plus the two nearest neighbouring cells.

A gt matches an anchor of a level when max(w / aw, aw / w, h / ah, ah / h) < ``anchor_t``.
Each match makes the gt's own cell a positive and also the neighbouring cells on the sides
its centre is closest to: left when the centre's fractional x is below ``offset`` (0.5), right
when above, the same in y, except at the map border. Matching is batched over the images and
gts; a gt can match several anchors on several levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from detector.assigners.atss import level_sizes
from detector.assigners.base import BACKGROUND, Assigner
from detector.ops.boxes import aligned_iou_cxcywh
from detector.registry import ASSIGNERS

#: YOLOv5's default anchors (w, h input pixels) for strides 8, 16, 32.
YOLOV5_ANCHORS = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)


class LevelTargets(NamedTuple):
    """Matches on one level, one row per (gt, anchor, cell) as YOLOv5's ``build_targets``.

    image, anchor, grid_y, grid_x: ``[n]`` long; labels ``[n]`` long; boxes ``[n, 4]`` (x - gi,
    y - gj, w, h) grid units; anchors ``[n, 2]`` grid units; target_index ``[n]`` row of the
    input targets each match comes from.
    """

    image: Tensor
    anchor: Tensor
    grid_y: Tensor
    grid_x: Tensor
    labels: Tensor
    boxes: Tensor
    anchors: Tensor
    target_index: Tensor


def match_yolov5(
    targets: Tensor,
    anchors: Tensor,
    grid_sizes: Sequence[tuple[int, int]],
    anchor_t: float = 4.0,
    offset: float = 0.5,
) -> list[LevelTargets]:
    """YOLOv5 matching of ``targets [nt, 6]`` (image index, class, x, y, w, h normalised to 0..1)
    against ``anchors [L, A, 2]`` in grid units (pixels / stride) for maps of ``grid_sizes``
    [(h, w), ...]. Rows per level: own cell for every match first, then the left, up, right and
    down neighbours, in YOLOv5's order (reproduces ``ComputeLoss.build_targets``)."""
    device = targets.device
    num_anchors, num_targets = anchors.shape[1], targets.shape[0]
    anchor_index = torch.arange(num_anchors, device=device, dtype=targets.dtype)
    # [A, nt, 8]: each target once per anchor, with its anchor index and its own row index.
    rows = torch.cat(
        (
            targets[None].expand(num_anchors, -1, -1),
            anchor_index[:, None, None].expand(-1, num_targets, 1),
            torch.arange(num_targets, device=device, dtype=targets.dtype)[None, :, None].expand(num_anchors, -1, 1),
        ),
        dim=2,
    )
    # Own cell, then the neighbours left, up, right, down (offsets subtracted from the centre).
    shifts = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=device, dtype=targets.dtype) * offset
    levels = []
    for level, (grid_h, grid_w) in enumerate(grid_sizes):
        gain = torch.tensor([1, 1, grid_w, grid_h, grid_w, grid_h, 1, 1], device=device, dtype=targets.dtype)
        t = rows * gain
        if num_targets:
            ratio = t[..., 4:6] / anchors[level][:, None]
            t = t[torch.max(ratio, 1 / ratio).max(dim=2).values < anchor_t]
            xy = t[:, 2:4]
            xy_inverse = gain[[2, 3]] - xy
            near_low = (xy % 1 < offset) & (xy > 1)
            near_high = (xy_inverse % 1 < offset) & (xy_inverse > 1)
            take = torch.stack(
                (torch.ones_like(near_low[:, 0]), near_low[:, 0], near_low[:, 1], near_high[:, 0], near_high[:, 1])
            )
            cell_shift = (torch.zeros_like(xy)[None] + shifts[:, None])[take]
            t = t[None].expand(5, -1, -1)[take]
        else:
            t = rows[0]
            cell_shift = torch.zeros_like(t[:, 2:4])
        xy = t[:, 2:4]
        cell = (xy - cell_shift).long()
        cell[:, 0].clamp_(0, grid_w - 1)
        cell[:, 1].clamp_(0, grid_h - 1)
        anchor = t[:, 6].long()
        levels.append(
            LevelTargets(
                image=t[:, 0].long(),
                anchor=anchor,
                grid_y=cell[:, 1],
                grid_x=cell[:, 0],
                labels=t[:, 1].long(),
                boxes=torch.cat((xy - cell, t[:, 4:6]), dim=1),
                anchors=anchors[level][anchor],
                target_index=t[:, 7].long(),
            )
        )
    return levels


def level_layout(priors: Tensor) -> tuple[list[tuple[int, int]], Tensor, list[float]]:
    """From anchor-based priors: map sizes [(h, w)], anchors ``[L, A, 2]`` in pixels, strides."""
    grid_sizes, anchors, strides, start = [], [], [], 0
    for count in level_sizes(priors):
        level = priors[start : start + count]
        grid_h, grid_w = int(level[:, 1].max()) + 1, int(level[:, 0].max()) + 1
        cells = grid_h * grid_w
        if count % cells:
            raise ValueError(f"a level of {count} priors is not a whole number of {grid_h}x{grid_w} grids")
        grid_sizes.append((grid_h, grid_w))
        anchors.append(level[::cells, 3:5])
        strides.append(float(level[0, 2]))
        start += count
    if len({a.shape[0] for a in anchors}) != 1:
        raise ValueError("YOLOv5 matching needs the same number of anchors on every level")
    return grid_sizes, torch.stack(anchors), strides


@ASSIGNERS.register()
class YOLOv5Assigner(Assigner):
    """YOLOv5 matching (see the module docstring) for anchor-based priors.

    YOLOv5 itself lets a prior take part once per gt matched to it; here a prior matched by
    several gts keeps the one its decoded prediction overlaps most, so that every assigner
    gives one target per prior.
    """

    def __init__(self, anchor_t: float = 4.0, offset: float = 0.5) -> None:
        if anchor_t <= 1:
            raise ValueError(f"anchor_t must be > 1, got {anchor_t}")
        self.anchor_t = anchor_t
        self.offset = offset

    def match(
        self,
        priors: Tensor,
        pred_boxes: Tensor,
        cls_logits: Tensor,
        obj_logits: Tensor | None,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_mask: Tensor,
    ) -> Tensor:
        batch, num_priors = pred_boxes.shape[:2]
        device = pred_boxes.device
        gt_inds = torch.full((batch, num_priors), BACKGROUND, dtype=torch.long, device=device)
        grid_sizes, anchors, strides = level_layout(priors)
        image, gt_index = gt_mask.nonzero(as_tuple=True)
        if image.numel() == 0:
            return gt_inds
        # Normalise by the input size (finest map size x stride), as YOLOv5's targets are.
        size = torch.tensor([grid_sizes[0][1] * strides[0], grid_sizes[0][0] * strides[0]], device=device)
        boxes = gt_boxes[image, gt_index]
        targets = torch.cat(
            (
                image[:, None].float(),
                gt_labels[image, gt_index][:, None].float(),
                boxes[:, :2] / size,
                boxes[:, 2:] / size,
            ),
            dim=1,
        )
        anchors_grid = anchors / torch.tensor(strides, device=device)[:, None, None]
        rows_image, rows_prior, rows_gt = [], [], []
        start = 0
        for level, matches in enumerate(match_yolov5(targets, anchors_grid, grid_sizes, self.anchor_t, self.offset)):
            grid_h, grid_w = grid_sizes[level]
            prior = start + (matches.anchor * grid_h + matches.grid_y) * grid_w + matches.grid_x
            rows_image.append(matches.image)
            rows_prior.append(prior)
            rows_gt.append(gt_index[matches.target_index])
            start += anchors.shape[1] * grid_h * grid_w
        rows_image, rows_prior, rows_gt = torch.cat(rows_image), torch.cat(rows_prior), torch.cat(rows_gt)
        if rows_image.numel() == 0:
            return gt_inds
        # Resolve priors matched more than once: highest prediction IoU first, then the first row.
        ious = aligned_iou_cxcywh(pred_boxes[rows_image, rows_prior], gt_boxes[rows_image, rows_gt])
        keys = rows_image * num_priors + rows_prior
        order = torch.argsort(ious, descending=True, stable=True)
        order = order[torch.argsort(keys[order], stable=True)]
        sorted_keys = keys[order]
        first = torch.ones_like(sorted_keys, dtype=torch.bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        keep = order[first]
        gt_inds[rows_image[keep], rows_prior[keep]] = rows_gt[keep]
        return gt_inds
