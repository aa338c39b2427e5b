"""Re-parameterised blocks (``block: repvgg / qarepvgg`` in the CSP bottlenecks) against the plain
model: the fold's error, deployed latency, accuracy at equal epochs and INT8 accuracy.

    python bench/rep.py [--parts parity latency accuracy] [--seeds 0 1 2] [--epochs 12]
                        [--train-images 400] [--runs 100] [--out runs/bench_rep]

* parity: largest |fused - branches| of YOLOX-Nano and S outputs (eval mode, random BN statistics).
* latency: batch-1 ONNX Runtime fp32 and PyTorch eager latency at 320 of the plain model, the
  Rep model (both fused, as deployed) and the plain model without the head's merged
  box/objectness conv, interleaved (one call of each per round), medians of ``--runs`` rounds.
* accuracy: the demo's YOLOX-Nano recipe (yolox_nano_shapes.yaml) with each block, trained from
  scratch for ``--epochs`` on a generated shapes set of ``--train-images`` (100 validation
  images), one run per seed; float mAP (PyTorch), and ONNX fp32 and INT8 mAP (static QDQ
  post-training quantization, 100 calibration images), with the mean ± spread over seeds.

Never part of the test run; speeds mean something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import interleaved_medians_ms  # noqa: E402
from shapes_runs import REPO, last_row, make_shapes_set, mean_spread, onnx_metrics, train_run  # noqa: E402

from detector import build_model, load_config  # noqa: E402
from detector.export import export_onnx  # noqa: E402
from detector.models.layers import fuse_model  # noqa: E402
from detector.models.rep import fold_rep_convs  # noqa: E402

BLOCKS = ("conv", "repvgg", "qarepvgg")


def block_config(model: str, block: str) -> dict:
    return load_config(model, overrides={"model.backbone.block": block, "model.neck.block": block})


def randomise_batchnorm(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model


def parity_table() -> list[str]:
    lines = ["| model | block | max abs error (outputs up to ~100 px) | train-time params | deployed params |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    torch.manual_seed(0)
    for model_name in ("yolox_nano", "yolox_s"):
        for block in ("repvgg", "qarepvgg"):
            model = randomise_batchnorm(build_model(block_config(f"_base_/models/{model_name}", block))).eval()
            x = torch.rand(2, 3, 320, 320) * 255
            with torch.no_grad():
                branches = model(x)
                fused = copy.deepcopy(model).fuse()
                error = (fused(x) - branches).abs().max().item()
            count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
            lines.append(f"| {model_name} | {block} | {error:.1e} | {count(model):,} | {count(fused):,} |")
    return lines


class Unmerged(nn.Module):
    """A fused detector whose head keeps separate box and objectness convs (no ``fuse`` method,
    so ``export_onnx`` exports it as it is)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        fold_rep_convs(model)
        self.model = fuse_model(model).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def latency_table(runs: int, tmp: Path) -> list[str]:
    lines = ["| model | variant | ORT fp32 ms | vs plain | eager ms | vs plain |", "|---|---|---:|---:|---:|---:|"]
    size = 320
    for model_name in ("yolox_nano", "yolox_s"):
        variants = {
            "plain (fused, merged head)": build_model(block_config(f"_base_/models/{model_name}", "conv")),
            "qarepvgg (fused, merged head)": build_model(block_config(f"_base_/models/{model_name}", "qarepvgg")),
            "plain, head convs not merged": None,
        }
        variants["plain, head convs not merged"] = Unmerged(copy.deepcopy(variants["plain (fused, merged head)"]))
        x = torch.rand(1, 3, size, size) * 255
        feed = {"images": x.numpy()}
        calls = {}
        for name, model in variants.items():
            model = model.eval()
            path = export_onnx(copy.deepcopy(model), tmp / f"{model_name}_{len(calls)}.onnx", imgsz=size)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            eager = model if isinstance(model, Unmerged) else copy.deepcopy(model).fuse()
            calls[(name, "ort")] = lambda s=session, f=feed: s.run(None, f)
            calls[(name, "eager")] = lambda m=eager, x=x: m(x)
        with torch.inference_mode():
            ms = interleaved_medians_ms(calls, runs)
        base = "plain (fused, merged head)"
        for name in variants:
            ort_ms, eager_ms = ms[(name, "ort")], ms[(name, "eager")]
            lines.append(
                f"| {model_name} {size} | {name} | {ort_ms:.2f} | {ort_ms / ms[(base, 'ort')]:.3f} |"
                f" {eager_ms:.2f} | {eager_ms / ms[(base, 'eager')]:.3f} |"
            )
            print(lines[-1], flush=True)
    return lines


def accuracy_table(args: argparse.Namespace) -> list[str]:
    data = make_shapes_set(args.out / "data", args.train_images, 100)
    config = "yolox_nano_shapes"
    results: dict[str, dict[str, list[float]]] = {}
    for block in BLOCKS:
        for seed in args.seeds:
            name = f"{block}_s{seed}"
            run = train_run(config, name, seed, args.out, data, args.epochs,
                            [f"model.backbone.block={block}", f"model.neck.block={block}"])  # fmt: skip
            row = last_row(run)
            fp32 = onnx_metrics(run, config, data, args.out / "onnx", int8=False)
            int8 = onnx_metrics(run, config, data, args.out / "onnx", int8=True)
            entry = results.setdefault(block, {})
            for key, value in (("map", float(row["mAP50_95"])), ("map50", float(row["mAP50"])),
                               ("onnx", fp32["mAP50_95"]), ("int8", int8["mAP50_95"]),
                               ("drop", fp32["mAP50_95"] - int8["mAP50_95"])):  # fmt: skip
                entry.setdefault(key, []).append(value)
            print(f"{name}: mAP50-95 {row['mAP50_95']} mAP50 {row['mAP50']} ONNX fp32 {fp32['mAP50_95']:.3f} "
                  f"INT8 {int8['mAP50_95']:.3f}", flush=True)  # fmt: skip
    lines = [f"YOLOX-Nano, demo recipe, {args.epochs} epochs on {args.train_images} generated images at 192 px, "
             f"seeds {', '.join(map(str, args.seeds))}; mean ± sample std (min-max)", "",
             "| block | mAP50-95 | mAP50 | ONNX fp32 mAP50-95 | ONNX INT8 mAP50-95 | fp32 - INT8 |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for block, entry in results.items():
        lines.append(
            f"| {block} | {mean_spread(entry['map'])} | {mean_spread(entry['map50'])} | {mean_spread(entry['onnx'])} |"
            f" {mean_spread(entry['int8'])} | {mean_spread(entry['drop'])} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["parity", "latency", "accuracy"],
                        choices=["parity", "latency", "accuracy"])  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--runs", type=int, default=100, help="latency rounds")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_rep")
    args = parser.parse_args()
    tables = []
    if "parity" in args.parts:
        tables.append(parity_table())
    if "latency" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            header = f"CPU, {torch.get_num_threads()} threads, batch 1, medians of {args.runs} interleaved rounds"
            tables.append([header, "", *latency_table(args.runs, Path(tmp))])
    if "accuracy" in args.parts:
        tables.append(accuracy_table(args))
    for table in tables:
        print()
        print("\n".join(table))


if __name__ == "__main__":
    main()
