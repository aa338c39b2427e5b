"""NMS speed: our entry point against torchvision's, 1k / 10k / 30k boxes of 80 classes with
detector-like overlap (jittered copies of a few hundred objects).

    python bench/nms_speed.py [--repeats 20]

CPU rows: ours (``batched_nms``, which sends CPU tensors to torchvision's C++ op), the plain-torch
backend, and ``torchvision.ops.batched_nms`` itself. With a CUDA device also: our kernel
against torchvision's CUDA NMS (synchronised, after warm-up). Medians, milliseconds; ratios are
torchvision's time over ours (> 1: ours is faster). Never part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
import torchvision

from detector.ops.nms import batched_nms


def detector_like(n: int, classes: int = 80, objects: int = 300, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``n`` candidate boxes on a 640 x 640 image: jittered copies (about 10 % of the object's size)
    of ``objects`` objects, mostly of the object's class, scores higher near the object."""
    g = torch.Generator().manual_seed(seed)
    size = torch.exp(torch.empty(objects).uniform_(2.3, 5.7, generator=g))  # 10..300 px
    centre = torch.rand(objects, 2, generator=g) * 640
    cls = torch.randint(0, classes, (objects,), generator=g)
    owner = torch.randint(0, objects, (n,), generator=g)
    jitter = torch.randn(n, 4, generator=g) * 0.1
    wh = size[owner, None] * torch.exp(jitter[:, 2:])
    xy = centre[owner] + jitter[:, :2] * size[owner, None]
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    scores = (torch.rand(n, generator=g) * torch.exp(-jitter.abs().sum(1))).clamp(0, 1)
    labels = torch.where(torch.rand(n, generator=g) < 0.9, cls[owner], torch.randint(0, classes, (n,), generator=g))
    return boxes, scores, labels


def median_ms(fn, repeats: int, cuda: bool) -> float:
    fn()  # warm-up (and the extension's first build or load)
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--iou", type=float, default=0.65)
    args = parser.parse_args()
    rows = []
    for n in (1000, 10000, 30000):
        data = detector_like(n)
        tv = median_ms(partial(torchvision.ops.batched_nms, *data, args.iou), args.repeats, False)
        ours = median_ms(partial(batched_nms, *data, args.iou), args.repeats, False)
        plain = median_ms(partial(batched_nms, *data, args.iou, backend="torch"), max(3, args.repeats // 4), False)
        kept = len(torchvision.ops.batched_nms(*data, args.iou))
        rows.append((f"cpu, {torch.get_num_threads()} threads", n, kept, ours, plain, tv))
        if torch.cuda.is_available():
            on_gpu = [t.cuda() for t in data]
            tv = median_ms(partial(torchvision.ops.batched_nms, *on_gpu, args.iou), args.repeats, True)
            ours = median_ms(partial(batched_nms, *on_gpu, args.iou, backend="cuda"), args.repeats, True)
            rows.append((torch.cuda.get_device_name(), n, kept, ours, None, tv))
    print("| device | boxes | kept | ours ms | plain-torch ms | torchvision ms | torchvision / ours |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for device, n, kept, ours, plain, tv in rows:
        plain_text = f"{plain:.2f}" if plain is not None else "-"
        print(f"| {device} | {n} | {kept} | {ours:.2f} | {plain_text} | {tv:.2f} | {tv / ours:.2f} |")


if __name__ == "__main__":
    main()
