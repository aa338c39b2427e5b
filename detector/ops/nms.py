"""Non-maximum suppression: one entry point for every device.

Boxes are ``[N, 4]`` x1, y1, x2, y2 (any unit); a box is suppressed by a higher-scoring kept box
of the same label whose IoU with it is strictly above ``iou_threshold``. Every function returns
indices into its input, sorted by descending score (ties keep input order).

Backends (``backend=``): ``"auto"`` sends CUDA tensors to our kernel (``csrc/``, built on first
use) or, when it cannot be built, to torchvision's CUDA NMS, and CPU tensors to torchvision's
C++ NMS; ``"cuda"`` insists on our kernel; ``"torchvision"``; ``"torch"``, plain tensor
operations that run anywhere (a reference, and a torchvision without its C++ ops). All keep the
same boxes; among boxes of exactly equal score the order may differ.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from detector.ops.nms_extension import load_nms_extension

BACKENDS = ("auto", "cuda", "torchvision", "torch")
#: Rows of the IoU matrix the plain-torch path holds at once (memory: this x N booleans).
_TORCH_BLOCK = 256
#: Most boxes our CUDA kernel takes in one call (``max_boxes()`` in csrc/nms_kernel.cu); more go
#: to torchvision.
CUDA_MAX_BOXES = 65536


def _check(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None, backend: str) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"nms: boxes must be [N, 4] x1, y1, x2, y2, got {list(boxes.shape)}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"nms: scores must be [N] = [{boxes.shape[0]}], got {list(scores.shape)}")
    if labels is not None and labels.shape != (boxes.shape[0],):
        raise ValueError(f"nms: labels must be [N] = [{boxes.shape[0]}], got {list(labels.shape)}")
    if backend not in BACKENDS:
        raise ValueError(f"nms: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _sorted_order(scores: torch.Tensor) -> torch.Tensor:
    return torch.sort(scores.float(), descending=True, stable=True)[1]


def _nms_torch(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None, iou: float) -> torch.Tensor:
    """Greedy NMS with plain tensor operations, one label at a time (labels never interact, and
    80 small problems are far cheaper than one large one); the kept boxes of all labels are then
    put in score order."""
    if labels is None:
        return _nms_torch_one_class(boxes, scores, iou)
    kept = []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).squeeze(1)
        kept.append(members[_nms_torch_one_class(boxes[members], scores[members], iou)])
    keep = torch.cat(kept)
    # Sorting the kept indices first makes equal scores come out in input order.
    keep = keep.sort()[0]
    return keep[_sorted_order(scores[keep])]


def _nms_torch_one_class(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy NMS of one class: IoUs of one block of rows against all later boxes at a time;
    inside a block the rows are resolved in order, then its kept rows suppress the later boxes
    in one reduction."""
    order = _sorted_order(scores)
    b = boxes.float()[order]
    n = b.shape[0]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    removed = np.zeros(n, dtype=bool)
    for start in range(0, n, _TORCH_BLOCK):
        stop = min(start + _TORCH_BLOCK, n)
        rows = b[start:stop]
        lt = torch.maximum(rows[:, None, :2], b[None, start:, :2])
        rb = torch.minimum(rows[:, None, 2:], b[None, start:, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        over = (inter / (area[start:stop, None] + area[None, start:] - inter) > iou).cpu().numpy()
        gone = removed[start:stop]  # a view: updated in place
        kept = []
        for r in range(stop - start):
            if not gone[r]:
                kept.append(r)
                gone[r + 1 :] |= over[r, r + 1 : stop - start]
        if kept and stop < n:
            removed[stop:] |= over[kept, stop - start :].any(axis=0)
    return order[torch.from_numpy(np.flatnonzero(~removed)).to(order.device)]


def _nms_cuda(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None, iou: float, required: bool
) -> torch.Tensor | None:
    extension = load_nms_extension() if boxes.shape[0] <= CUDA_MAX_BOXES else None
    if extension is None:
        if required:
            raise RuntimeError(
                f"nms: backend 'cuda' asked for, but the CUDA NMS kernel is not available for {boxes.shape[0]} boxes "
                f"(it takes at most {CUDA_MAX_BOXES}; a build failure is warned about)"
            )
        return None
    order = _sorted_order(scores)
    sorted_labels = labels[order] if labels is not None else boxes.new_empty(0, dtype=torch.int32)
    return order[extension.nms_sorted(boxes[order], sorted_labels, float(iou))]


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor | None,
    iou_threshold: float,
    max_det: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Class-aware NMS: boxes of different ``labels`` never suppress each other (``labels=None``:
    one class). Returns int64 indices of the kept boxes sorted by score, at most ``max_det``."""
    _check(boxes, scores, labels, backend)
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    keep = None
    if backend == "cuda" or (backend == "auto" and boxes.is_cuda):
        if not boxes.is_cuda:
            raise ValueError(f"nms: backend 'cuda' needs CUDA tensors, got {boxes.device}")
        keep = _nms_cuda(boxes, scores, labels, iou_threshold, required=backend == "cuda")
    if keep is None and backend in ("auto", "cuda", "torchvision"):
        b, s = boxes.float(), scores.float()
        keep = (
            torchvision.ops.nms(b, s, iou_threshold)
            if labels is None
            else torchvision.ops.batched_nms(b, s, labels, iou_threshold)
        )
    if keep is None:
        keep = _nms_torch(boxes, scores, labels, iou_threshold)
    return keep[:max_det] if max_det is not None else keep


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, backend: str = "auto") -> torch.Tensor:
    """NMS of one class: indices of the kept boxes sorted by descending score."""
    return batched_nms(boxes, scores, None, iou_threshold, backend=backend)


def batched_nms_images(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor | None,
    iou_threshold: float,
    valid: torch.Tensor | None = None,
    max_det: int | None = None,
    backend: str = "auto",
) -> list[torch.Tensor]:
    """Class-aware NMS of a whole batch in one call.

    ``boxes`` ``[B, N, 4]``, ``scores`` ``[B, N]``, ``labels`` ``[B, N]`` or None, ``valid``
    ``[B, N]`` bool (candidates; default all). Boxes of different images never suppress each
    other. Returns per image the kept indices into its N boxes, sorted by score, at most
    ``max_det``.
    """
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:2]:
        raise ValueError(
            f"nms: expected boxes [B, N, 4] and scores [B, N], got {list(boxes.shape)}, {list(scores.shape)}"
        )
    batch, n = scores.shape
    if valid is None:
        valid = torch.ones_like(scores, dtype=torch.bool)
    one_call = boxes.is_cuda and backend in ("auto", "cuda") and load_nms_extension() is not None
    if not one_call:
        # torchvision makes classes disjoint by offsetting coordinates, which loses float32
        # precision with image x class offsets: one image at a time there.
        results = []
        for b in range(batch):
            index = torch.nonzero(valid[b]).squeeze(1)
            lab = labels[b, index] if labels is not None else None
            keep = batched_nms(boxes[b, index], scores[b, index], lab, iou_threshold, max_det, backend)
            results.append(index[keep])
        return results
    # Our kernel compares labels exactly, so image x class groups cost nothing: one launch.
    image, index = torch.nonzero(valid, as_tuple=True)
    groups = image if labels is None else image * (int(labels.max()) + 1) + labels[image, index]
    keep = batched_nms(boxes[image, index], scores[image, index], groups, iou_threshold, backend=backend)
    kept_image, kept_index = image[keep], index[keep]
    results = []
    for b in range(batch):
        mine = kept_index[kept_image == b]
        results.append(mine[:max_det] if max_det is not None else mine)
    return results
