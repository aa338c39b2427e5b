"""NMS: every backend keeps exactly torchvision's boxes; the CUDA source compiles; the CUDA kernel
runs where a GPU is present."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
import torchvision
from conftest import REPO

from detector.ops.nms import batched_nms, batched_nms_images, nms
from detector.ops.nms_extension import SOURCES

HAS_CUDA = torch.cuda.is_available()
NVCC = shutil.which("nvcc")


def random_boxes(n, classes=80, seed=0, device="cpu", spread=600.0, size=80.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * spread
    wh = torch.rand(n, 2, generator=g) * size + 2
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return boxes.to(device), scores.to(device), labels.to(device)


def assert_same_kept(ours, reference, scores):
    """Same boxes kept; same score sequence (boxes of exactly equal score may swap places)."""
    assert sorted(ours.tolist()) == sorted(reference.tolist())
    torch.testing.assert_close(scores[ours], scores[reference], rtol=0, atol=0)


CASES = [(n, c, t) for n in (1, 2, 10, 300, 3000) for c in (1, 80) for t in (0.3, 0.5, 0.7)] + [(30000, 80, 0.5)]


@pytest.mark.parametrize(("n", "classes", "iou"), CASES)
def test_backends_keep_what_torchvision_keeps(n, classes, iou):
    boxes, scores, labels = random_boxes(n, classes, seed=n + classes)
    reference = torchvision.ops.batched_nms(boxes, scores, labels, iou)
    assert torch.equal(batched_nms(boxes, scores, labels, iou), reference)  # CPU "auto" is torchvision's op
    assert_same_kept(batched_nms(boxes, scores, labels, iou, backend="torch"), reference, scores)
    one_class = torchvision.ops.nms(boxes, scores, iou)
    assert_same_kept(nms(boxes, scores, iou, backend="torch"), one_class, scores)
    assert torch.equal(nms(boxes, scores, iou), one_class)


def test_empty_single_identical_and_all_overlapping():
    empty = torch.zeros((0, 4))
    for backend in ("auto", "torch", "torchvision"):
        out = batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5, backend=backend)
        assert out.dtype == torch.int64 and out.shape == (0,)
        assert nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), 0.5, backend=backend).tolist() == [0]
        same = torch.tensor([[10.0, 10, 50, 50]] * 5)
        assert nms(same, torch.tensor([0.1, 0.9, 0.5, 0.9, 0.2]), 0.5, backend=backend).tolist() == [1]
        # Nested boxes all overlap the best one by more than 0.3: only it survives.
        nested = torch.tensor([[0.0, 0, 100, 100], [2, 2, 98, 98], [4, 4, 96, 96], [1, 1, 99, 97]])
        assert nms(nested, torch.tensor([0.5, 0.9, 0.7, 0.8]), 0.3, backend=backend).tolist() == [1]
        # Exactly at the threshold is kept (suppression needs IoU strictly above it).
        half = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]])  # IoU 0.5
        assert nms(half, torch.tensor([0.9, 0.8]), 0.5, backend=backend).tolist() == [0, 1]


def test_ties_in_score_keep_input_order():
    boxes = torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110], [0, 0, 10, 10], [200, 0, 210, 10]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.7])
    for backend in ("auto", "torch"):
        assert nms(boxes, scores, 0.5, backend=backend).tolist() == [3, 0, 1]


def test_classes_never_suppress_each_other_and_max_det():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 4)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 1, 0, 2])
    for backend in ("auto", "torch"):
        assert batched_nms(boxes, scores, labels, 0.5, backend=backend).tolist() == [0, 1, 3]
        assert batched_nms(boxes, scores, labels, 0.5, max_det=2, backend=backend).tolist() == [0, 1]
        assert batched_nms(boxes, scores, None, 0.5, backend=backend).tolist() == [0]


def test_half_precision_inputs_give_the_float32_result():
    boxes, scores, labels = random_boxes(2000, 20, seed=7)
    half_boxes, half_scores = boxes.half(), scores.half()
    reference = torchvision.ops.batched_nms(half_boxes.float(), half_scores.float(), labels, 0.5)
    for backend in ("auto", "torch"):
        assert_same_kept(
            batched_nms(half_boxes, half_scores, labels, 0.5, backend=backend), reference, half_scores.float()
        )


def test_batch_of_images_in_one_call():
    boxes, scores, labels = random_boxes(3 * 400, 10, seed=3)
    boxes, scores, labels = boxes.view(3, 400, 4), scores.view(3, 400), labels.view(3, 400)
    valid = scores > 0.2
    kept = batched_nms_images(boxes, scores, labels, 0.6, valid=valid, max_det=100)
    assert len(kept) == 3
    for b in range(3):
        index = torch.nonzero(valid[b]).squeeze(1)
        reference = index[torchvision.ops.batched_nms(boxes[b, index], scores[b, index], labels[b, index], 0.6)][:100]
        assert torch.equal(kept[b], reference)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"boxes must be \[N, 4\] x1, y1, x2, y2, got \[3, 5\]"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"scores must be \[N\] = \[3\], got \[2\]"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match=r"backend must be one of auto, cuda, torchvision, torch, got 'gpu'"):
        nms(torch.zeros(3, 4), torch.zeros(3), 0.5, backend="gpu")
    with pytest.raises(ValueError, match=r"backend 'cuda' needs CUDA tensors, got cpu"):
        nms(torch.zeros(3, 4), torch.zeros(3), 0.5, backend="cuda")


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_cuda_source_compiles(tmp_path):
    kernel = next(s for s in SOURCES if s.suffix == ".cu")
    result = subprocess.run(
        [NVCC, "-c", "-O2", "--fmad=false", "-arch=sm_80", str(kernel), "-o", str(tmp_path / "nms_kernel.o")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "nms_kernel.o").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_extension_builds_and_loads_without_a_gpu(tmp_path):
    # The JIT build of kernel + PyTorch binding; where no GPU is visible torch cannot pick the
    # architecture itself, so it is named here.
    env = dict(
        os.environ, DETECTOR_CACHE=str(tmp_path), TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0")
    )
    env.setdefault("CUDA_HOME", os.path.dirname(os.path.dirname(os.path.realpath(NVCC))))
    if not os.path.isfile(os.path.join(env["CUDA_HOME"], "include", "cuda_runtime.h")):
        env["CUDA_HOME"] = "/usr/local/cuda"
    code = "from detector.ops.nms_extension import load_nms_extension as l; m = l(); print(m.nms_sorted.__doc__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr
    assert "Greedy NMS of score-sorted CUDA boxes" in result.stdout, result.stderr


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device: the kernel itself runs only on a GPU")
@pytest.mark.parametrize(
    ("n", "classes", "iou"), [(1, 1, 0.5), (64, 1, 0.5), (65, 3, 0.3), (1000, 80, 0.7), (30000, 80, 0.5)]
)
def test_cuda_kernel_keeps_what_torchvision_keeps(n, classes, iou):
    boxes, scores, labels = random_boxes(n, classes, seed=n, device="cuda")
    reference = torchvision.ops.batched_nms(boxes.cpu(), scores.cpu(), labels.cpu(), iou)
    ours = batched_nms(boxes, scores, labels, iou, backend="cuda")
    assert ours.is_cuda
    assert_same_kept(ours.cpu(), reference, scores.cpu())
    assert_same_kept(
        nms(boxes, scores, iou, backend="cuda").cpu(), torchvision.ops.nms(boxes.cpu(), scores.cpu(), iou), scores.cpu()
    )
    half = batched_nms(boxes.half(), scores.half(), labels, iou, backend="cuda").cpu()
    assert_same_kept(
        half,
        torchvision.ops.batched_nms(boxes.half().float().cpu(), scores.half().float().cpu(), labels.cpu(), iou),
        scores.half().float().cpu(),
    )
