"""Model compression on the generated shapes set: structured pruning after fine-tuning, and INT8.

    python bench/compress.py [--parts accuracy int8 qat latency profile] [--models nano tiny] [--seeds 0 1 2]
                             [--prunings ...] [--distill] [--method l2] [--runs 100] [--out runs/bench_rep]
                             [--weight-bits 8|7] [--skip-pruned]

* accuracy: the trained baselines of ``bench/rep.py`` (YOLOX-Nano, 12 epochs, one per seed;
  ``nano36``: 36 epochs) and ``bench/distill.py`` (YOLOX-Tiny, 36 epochs, seed 0) are pruned by
  ``detector prune --flops F`` (``PRUNINGS``: 70 % and 50 % of the FLOPs kept, per-layer and
  global ranking) and fine-tuned through ``detector train`` from the pruned weights for a third
  of the baseline's epochs, one fine-tune per seed. Rows: the baseline; the baseline itself
  fine-tuned the same way (the control: what the extra epochs give without pruning); each
  pruned model, with ``--distill`` the last one distilled from its unpruned baseline too; ONNX INT8 (static QDQ PTQ, 100
  calibration images) of the baseline and the last pruned model. mAP50-95 / mAP50 on the
  shapes validation set, mean ± sample std over seeds.
* int8: the SiLU Nano baselines and ReLU ones (``yolox_nano_relu_shapes``, 12 epochs per seed;
  ``--int8-epochs N``: both trained for N epochs instead) exported to ONNX fp32 and INT8 PTQ, each
  with and without cross-layer equalisation (``--equalize`` / ``--equalize-silu``).
* qat: INT8 by PTQ and by quantisation-aware fine-tuning (``qat.enabled``) at equal calibration
  data, for each model's baselines over the seeds (Tiny: 36-epoch baselines of seeds 1, 2 are
  trained beside distill.py's seed-0 teacher; ``s``: YOLOX-S, 36 epochs per seed) and Nano's
  pruned versions (``--skip-pruned``: not), and the latency of each; ``--weight-bits 7``: both
  with 7-bit weights (ONNX Runtime's ``reduce_range``, for x86 CPUs without VNNI).
* latency: parameters, GFLOPs (640) and batch-1 ONNX Runtime latency of each model's fp32 and
  INT8 export at 320 and 640, all variants of one model and size timed in turns in one run
  (medians), with Ultralytics' YOLOv8n fp32 (exported in bench/.venv-yolov8, see export_speed.py).

* profile: ONNX Runtime's per-operator times of YOLOX-Nano (SiLU and ReLU, fp32 and INT8) at 640.

Never part of the test run; latency means something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill import TEACHER  # noqa: E402
from export_speed import interleaved_medians_ms, yolov8n_models  # noqa: E402
from shapes_runs import (  # noqa: E402, E501
    REPO,
    data_overrides,
    detector_command,
    last_row,
    make_shapes_set,
    mean_spread,
    onnx_metrics,
    train_run,
)

from detector.data.synthetic import CLASS_NAMES, render_image  # noqa: E402
from detector.export import export_onnx  # noqa: E402
from detector.export.quantize import quantize_int8  # noqa: E402
from detector.inference import load_detector  # noqa: E402
from detector.models.summary import count_flops, count_parameters  # noqa: E402

CONFIG = str(REPO / "configs" / "yolox_nano_shapes.yaml")
YOLOX_S = ["model.backbone.width=0.5", "model.backbone.depthwise=false", "model.neck.depthwise=false",
           "model.head.depthwise=false", "model.head.feat_channels=128"]  # fmt: skip
#: model -> (baseline run name pattern, baseline epochs, overrides of the Nano config, seeds of the baseline)
MODELS = {
    "nano": ("conv_s{seed}", 12, [], "per seed"),
    # The same recipe trained three times as long (the SiLU runs of `--parts int8 --int8-epochs 36`).
    "nano36": ("conv_s{seed}_e36", 36, [], "per seed"),
    "tiny": ("teacher_tiny_e36", 36, TEACHER, "seed 0"),
    # YOLOX-S (configs/_base_/models/yolox_s.yaml's sizes) on the same recipe, for its QAT target.
    "s": ("yolox_s_e36_s{seed}", 36, YOLOX_S, "per seed"),
}


#: Pruned variants: label -> (FLOPs fraction kept, extra `detector prune` arguments).
PRUNINGS = {
    "pruned to 70% FLOPs": (0.7, []),
    "pruned to 50% FLOPs": (0.5, []),
    "pruned to 50% FLOPs, global ranking": (0.5, ["--global"]),
}


def baseline_run(args: argparse.Namespace, data: Path, model: str, seed: int) -> Path:
    """The trained ``model`` baseline of ``seed``. A baseline named without ``{seed}`` (the Tiny
    teacher of distill.py, seed 0) gets a ``_s{seed}`` suffix for the other seeds."""
    pattern, epochs, overrides, _ = MODELS[model]
    name = pattern.format(seed=seed) if "{seed}" in pattern or seed == 0 else f"{pattern}_s{seed}"
    return train_run(CONFIG, name, seed, args.out, data, epochs, overrides)


def pruned_key(args: argparse.Namespace, model: str, seed: int, pruning: str) -> str:
    """The file and run name of the ``model`` baseline of ``seed`` pruned as ``PRUNINGS[pruning]``."""
    flops, prune_args = PRUNINGS[pruning]
    return f"{model}_p{round(flops * 100)}{'g' if '--global' in prune_args else ''}_{args.method}_s{seed}"


def pruned_run(args: argparse.Namespace, data: Path, model: str, seed: int, pruning: str | None,
               distill: bool = False) -> Path:  # fmt: skip
    """The fine-tuned run of the ``model`` baseline of ``seed`` pruned as ``PRUNINGS[pruning]``
    (None: the control, fine-tuned unpruned)."""
    _, epochs, overrides, _ = MODELS[model]
    baseline = baseline_run(args, data, model, seed if "{seed}" in MODELS[model][0] else 0)
    best = baseline / "weights" / "last.pt"
    if pruning is None:
        tag, config, extra = f"{model}_control_s{seed}", CONFIG, [*overrides, f"train.init_weights={best}"]
    else:
        flops, prune_args = PRUNINGS[pruning]
        key = pruned_key(args, model, seed, pruning)
        pruned = args.out / "pruned" / f"{key}.pt"
        if not pruned.exists():
            detector_command("prune", CONFIG, "--ckpt", best, "--out", pruned, "--flops", flops, "--method",
                             args.method, *prune_args, "--set", *overrides, *data_overrides(data))  # fmt: skip
        tag, config, extra = key, str(pruned.with_suffix(".yaml")), []
    if distill:
        tag, extra = f"{tag}_kd", [*extra, f"distill.teacher.ckpt={best}"]
    return train_run(config, tag, seed, args.out, data, max(epochs // 3, 1), extra)


def accuracy_tables(args: argparse.Namespace, data: Path) -> list[str]:
    lines = []
    for model in args.models:
        pattern, epochs, overrides, baseline_seeds = MODELS[model]
        rows: dict[str, dict[str, list[float]]] = {}

        def add(label: str, metrics: dict[str, float], rows=rows) -> None:
            row = rows.setdefault(label, {"map": [], "map50": []})
            row["map"].append(float(metrics["mAP50_95"]))
            row["map50"].append(float(metrics["mAP50"]))

        for seed in args.seeds:
            baseline = baseline_run(args, data, model, seed if "{seed}" in pattern else 0)
            add("baseline", last_row(baseline))
            add(f"baseline + {epochs // 3} epochs (control)", last_row(pruned_run(args, data, model, seed, None)))
            for pruning in args.prunings:
                add(f"{pruning} + {epochs // 3} epochs", last_row(pruned_run(args, data, model, seed, pruning)))
            if args.distill:
                pruning = args.prunings[-1]
                add(f"{pruning} + {epochs // 3} epochs distilled from the baseline",
                    last_row(pruned_run(args, data, model, seed, pruning, distill=True)))  # fmt: skip
            if args.int8:
                add("baseline, ONNX INT8 PTQ", onnx_metrics(baseline, CONFIG, data, args.out / "onnx", int8=True))
                run = pruned_run(args, data, model, seed, args.prunings[-1])
                add(f"{args.prunings[-1]}, fine-tuned, ONNX INT8 PTQ",
                    onnx_metrics(run, CONFIG, data, args.out / "onnx", int8=True))  # fmt: skip
            print(f"{model} seed {seed}: " + ", ".join(f"{k} {v['map'][-1]:.3f}" for k, v in rows.items()), flush=True)
        lines += [
            f"YOLOX-{model.capitalize()}: baseline {epochs} epochs ({baseline_seeds}), pruned with "
            f"`detector prune --flops F --method {args.method}`, fine-tunes seeds {', '.join(map(str, args.seeds))}; "
            "mean ± sample std (min-max)",
            "",
            "| model | mAP50-95 | mAP50 |",
            "|---|---:|---:|",
            *(f"| {label} | {mean_spread(r['map'])} | {mean_spread(r['map50'])} |" for label, r in rows.items()),
            "",
        ]
        base = rows["baseline"]["map"]
        for label, r in rows.items():
            if label.startswith("pruned") and len(r["map"]) == len(base):
                drops = [b - p for b, p in zip(base, r["map"], strict=True)]
                lines.append(f"- {label}: mAP50-95 lost per seed {', '.join(f'{d:+.3f}' for d in drops)}; "
                             f"mean {statistics.mean(drops):+.3f}")  # fmt: skip
        lines.append("")
    return lines


#: INT8 variants of the Nano baselines: label -> (run name pattern, config, export arguments).
INT8_MODELS = {
    "SiLU (demo recipe)": ("conv_s{seed}", CONFIG, ["--equalize-silu"]),
    "ReLU (yolox_nano_relu_shapes)": (
        "relu_s{seed}",
        str(REPO / "configs" / "yolox_nano_relu_shapes.yaml"),
        ["--equalize"],
    ),
}


def int8_tables(args: argparse.Namespace, data: Path) -> list[str]:
    """ONNX fp32 / INT8 PTQ mAP of the SiLU and ReLU Nano baselines, with and without cross-layer
    equalisation before export."""
    rows: dict[str, dict[str, list[float]]] = {}
    epochs = args.int8_epochs
    for seed in args.seeds:
        for label, (pattern, config, cle) in INT8_MODELS.items():
            name = pattern.format(seed=seed) + ("" if epochs == 12 else f"_e{epochs}")
            run = train_run(config, name, seed, args.out, data, epochs)
            onnx_dir = args.out / "onnx"
            variants = {
                "fp32": onnx_metrics(run, config, data, onnx_dir, int8=False),
                "fp32, CLE": onnx_metrics(run, config, data, onnx_dir, int8=False, export_args=cle, tag="_cle"),
                "INT8 PTQ": onnx_metrics(run, config, data, onnx_dir, int8=True),
                "CLE + INT8 PTQ": onnx_metrics(run, config, data, onnx_dir, int8=True, export_args=cle, tag="_cle"),
            }
            for variant, metrics in variants.items():
                rows.setdefault(f"{label}, {variant}", {"map": [], "map50": []})
                rows[f"{label}, {variant}"]["map"].append(float(metrics["mAP50_95"]))
                rows[f"{label}, {variant}"]["map50"].append(float(metrics["mAP50"]))
            print(f"seed {seed} {label}: " + ", ".join(f"{k} {v['mAP50_95']:.3f}" for k, v in variants.items()),
                  flush=True)  # fmt: skip
    lines = [
        f"YOLOX-Nano, {epochs} epochs, seeds {', '.join(map(str, args.seeds))}: ONNX Runtime mAP, INT8 static QDQ "
        "PTQ on 100 calibration images; CLE = `detector export --equalize` (ReLU) / `--equalize-silu` (SiLU)",
        "",
        "| model | mAP50-95 | mAP50 |",
        "|---|---:|---:|",
        *(f"| {label} | {mean_spread(r['map'])} | {mean_spread(r['map50'])} |" for label, r in rows.items()),
        "",
    ]
    for label in INT8_MODELS:
        fp32 = rows[f"{label}, fp32"]["map"]
        for variant in ("INT8 PTQ", "CLE + INT8 PTQ"):
            drops = [f - q for f, q in zip(fp32, rows[f"{label}, {variant}"]["map"], strict=True)]
            lines.append(f"- {label}, {variant}: mAP50-95 lost per seed {', '.join(f'{d:+.3f}' for d in drops)}; "
                         f"mean {statistics.mean(drops):+.3f}")  # fmt: skip
    return [*lines, ""]


#: Quantisation-aware fine-tuning: extra `--set` entries of its runs (see qat_tables).
QAT_SETTINGS = ["qat.enabled=true"]


def qat_tables(args: argparse.Namespace, data: Path, tmp: Path, model: str) -> list[str]:
    """INT8 by PTQ and by QAT at equal calibration data (the first 100 training images) for the
    ``model`` baselines of every seed and, for Nano, their pruned (50 % FLOPs, global) versions.
    QAT fine-tunes for a third of the baseline's epochs, so the fair PTQ comparison is PTQ of the
    control fine-tuned as long in float; the pruned model's QAT is its fine-tune. Then ONNX
    Runtime latency of fp32, PTQ and QAT at 640 in turns (QAT exports the same QDQ graph)."""
    pattern, epochs, overrides, _ = MODELS[model]
    extra_epochs = args.qat_epochs or max(epochs // 3, 1)
    # Another recipe than the default (a third of the epochs at the baseline's lr) for the
    # control and QAT alike gets its own run names.
    recipe = [f"optimizer.lr={args.qat_lr}"] if args.qat_lr else []
    suffix = "" if not (args.qat_epochs or args.qat_lr) else f"_e{extra_epochs}_lr{args.qat_lr or 'base'}"
    overrides = [*overrides, *recipe]
    # 7-bit weights: PTQ with --weight-bits 7, QAT with qat.weight_bits=7 (own run and file names).
    bits_tag = "" if args.weight_bits == 8 else f"_w{args.weight_bits}"
    ptq_args = [] if args.weight_bits == 8 else ["--weight-bits", str(args.weight_bits)]
    qat_settings = [*QAT_SETTINGS, *([] if args.weight_bits == 8 else [f"qat.weight_bits={args.weight_bits}"])]
    # Pruned rows for Nano only: a Tiny pruned + QAT run costs as much as its baseline.
    pruning = "pruned to 50% FLOPs, global ranking" if model == "nano" and not args.skip_pruned else None
    rows: dict[str, dict[str, list[float]]] = {}
    onnx_dir = args.out / "onnx"

    def add(label: str, metrics: dict[str, float]) -> None:
        row = rows.setdefault(label, {"map": [], "map50": []})
        row["map"].append(float(metrics["mAP50_95"]))
        row["map50"].append(float(metrics["mAP50"]))

    runs = {}
    for seed in args.seeds:
        baseline = baseline_run(args, data, model, seed)
        # Named as pruned_run names Nano's control; a Tiny control of seed s > 0 starts from its own
        # baseline here, not from the seed-0 one pruned_run fine-tunes.
        control_name = (f"{model}_control_s{seed}" if "{seed}" in pattern else f"{baseline.name}_control") + suffix
        control = train_run(CONFIG, control_name, seed, args.out, data, extra_epochs,
                            [*overrides, f"train.init_weights={baseline / 'weights' / 'last.pt'}"])  # fmt: skip
        init = f"train.init_weights={baseline / 'weights' / 'last.pt'}"
        qat = train_run(CONFIG, f"{model}_qat_s{seed}{suffix}{bits_tag}", seed, args.out, data, extra_epochs,
                        [*overrides, *qat_settings, init])  # fmt: skip
        ptq = dict(int8=True, tag=bits_tag, quantize_args=ptq_args)
        add("baseline, fp32", onnx_metrics(baseline, CONFIG, data, onnx_dir, int8=False))
        add("baseline, PTQ", onnx_metrics(baseline, CONFIG, data, onnx_dir, **ptq))
        add(
            f"baseline + {extra_epochs} epochs fp32 (control), fp32",
            onnx_metrics(control, CONFIG, data, onnx_dir, int8=False),
        )
        add(
            f"baseline + {extra_epochs} epochs fp32 (control), PTQ",
            onnx_metrics(control, CONFIG, data, onnx_dir, **ptq),
        )
        add(f"baseline + {extra_epochs} epochs QAT", onnx_metrics(qat, CONFIG, data, onnx_dir, int8=False))
        runs[seed] = {"fp32": baseline, "QAT": qat}
        if pruning is not None:
            pruned_ft = pruned_run(args, data, model, seed, pruning)
            key = pruned_key(args, model, seed, pruning)
            pruned_qat = train_run(str(args.out / "pruned" / f"{key}.yaml"), f"{key}_qat{bits_tag}", seed, args.out,
                                   data, extra_epochs, qat_settings)  # fmt: skip
            add(f"{pruning}, + {extra_epochs} epochs fp32, fp32",
                onnx_metrics(pruned_ft, CONFIG, data, onnx_dir, int8=False))  # fmt: skip
            add(f"{pruning}, + {extra_epochs} epochs fp32, PTQ",
                onnx_metrics(pruned_ft, CONFIG, data, onnx_dir, **ptq))  # fmt: skip
            add(f"{pruning}, + {extra_epochs} epochs QAT", onnx_metrics(pruned_qat, CONFIG, data, onnx_dir, int8=False))
            runs[seed]["pruned + QAT"] = pruned_qat
        print(f"qat seed {seed}: " + ", ".join(f"{k} {v['map'][-1]:.3f}" for k, v in rows.items()), flush=True)
    lines = [
        f"YOLOX-{model.capitalize()} (SiLU), baseline {epochs} epochs, seeds {', '.join(map(str, args.seeds))}: "
        f"ONNX Runtime mAP; PTQ and QAT both calibrated on the first 100 training images, {args.weight_bits}-bit "
        "weights; mean ± sample std (min-max)",
        "",
        "| model | mAP50-95 | mAP50 |",
        "|---|---:|---:|",
        *(f"| {label} | {mean_spread(r['map'])} | {mean_spread(r['map50'])} |" for label, r in rows.items()),
        "",
    ]
    fp32 = rows[f"baseline + {extra_epochs} epochs fp32 (control), fp32"]["map"]
    for label in (f"baseline + {extra_epochs} epochs fp32 (control), PTQ", f"baseline + {extra_epochs} epochs QAT"):
        drops = [f - q for f, q in zip(fp32, rows[label]["map"], strict=True)]
        lines.append(f"- {label}: mAP50-95 below the control's fp32 per seed {', '.join(f'{d:+.3f}' for d in drops)}; "
                     f"mean {statistics.mean(drops):+.3f}")  # fmt: skip
    # Latency: the same graph, so the same kernels; measured all the same.
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    rng = np.random.default_rng(0)
    size = max(args.sizes)
    calibration = [render_image(size, size, rng, CLASS_NAMES, 8, 12, None)[0] for _ in range(16)]
    exported = {label: export_onnx(load_detector(run / "weights" / "last.pt")[0], tmp / f"qat_{model}_{i}.onnx",
                                   imgsz=size)
                for i, (label, run) in enumerate(runs[args.seeds[0]].items())}  # fmt: skip
    fp32_path = exported.pop("fp32")
    ptq_path = quantize_int8(fp32_path, tmp / f"qat_{model}_ptq.onnx", calibration, weight_bits=args.weight_bits)
    paths = {"fp32": fp32_path, "PTQ": ptq_path, **exported}
    feed = {"images": (np.random.default_rng(1).random((1, 3, size, size)) * 255).astype(np.float32)}
    sessions = {label: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for label, path in paths.items()}  # fmt: skip
    ms = interleaved_medians_ms({label: (lambda s=s: s.run(None, feed)) for label, s in sessions.items()}, args.runs)
    timing = "; ".join(f"{label} {value:.2f} ms ({ms['fp32'] / value:.2f}x fp32)" for label, value in ms.items())
    rounds = f"medians of {args.runs} interleaved rounds"
    lines += ["", f"Latency at {size}, batch 1, {args.threads} threads, {rounds}: {timing}"]
    return [*lines, ""]


def latency_tables(args: argparse.Namespace, data: Path, tmp: Path) -> list[str]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = lambda path: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])  # noqa: E731
    v8 = {} if args.no_yolov8n else yolov8n_models(args.sizes, tmp)
    rng = np.random.default_rng(0)
    lines = []
    for model in args.models:
        pattern, epochs, overrides, _ = MODELS[model]
        seed = args.seeds[0]
        baseline = baseline_run(args, data, model, seed if "{seed}" in pattern else 0)
        variants = {"baseline": baseline / "weights" / "last.pt"}
        for pruning in args.prunings:
            variants[pruning] = pruned_run(args, data, model, seed, pruning) / "weights" / "last.pt"
        if model == "nano":
            pattern, config, _ = INT8_MODELS["ReLU (yolox_nano_relu_shapes)"]
            relu = train_run(config, pattern.format(seed=seed), seed, args.out, data, 12)
            variants["ReLU"] = relu / "weights" / "last.pt"
        lines += [f"YOLOX-{model.capitalize()} (seed {seed}), batch 1, {args.threads} threads, medians of {args.runs} "
                  "interleaved rounds", "",
                  "| model | params | GFLOPs 640 | input | ORT fp32 ms | ORT INT8 ms | INT8 speed-up "
                  "| speed-up vs baseline fp32 / INT8 | YOLOv8n fp32 ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for size in args.sizes:
            calls, counts = {}, {}
            calibration = [render_image(size, size, rng, CLASS_NAMES, 8, 12, None)[0] for _ in range(16)]
            feed = {"images": (torch.rand(1, 3, size, size) * 255).numpy()}
            for label, ckpt in variants.items():
                net, _, _ = load_detector(ckpt)
                counts[label] = (count_parameters(net), count_flops(net.eval(), 640))
                fp32 = export_onnx(net, tmp / f"{model}_{len(calls)}_{size}.onnx", imgsz=size)
                int8 = quantize_int8(fp32, fp32.with_name(fp32.stem + "_int8.onnx"), calibration)
                for precision, path in (("fp32", fp32), ("int8", int8)):
                    calls[f"{label}|{precision}"] = lambda s=session(path), f=feed: s.run(None, f)  # noqa: B008
            if size in v8:
                v8_feed = {"images": feed["images"] / 255.0}
                calls["yolov8n"] = lambda s=session(v8[size]), f=v8_feed: s.run(None, f)  # noqa: B008
            ms = interleaved_medians_ms(calls, args.runs)
            for label in variants:
                fp32_ms, int8_ms = ms[f"{label}|fp32"], ms[f"{label}|int8"]
                params, flops = counts[label]
                lines.append(
                    f"| {label} | {params:,} | {flops / 1e9:.2f} | {size} | {fp32_ms:.2f} | {int8_ms:.2f} | "
                    f"{fp32_ms / int8_ms:.2f}x | {ms['baseline|fp32'] / fp32_ms:.2f}x / "
                    f"{ms['baseline|int8'] / int8_ms:.2f}x | {ms['yolov8n']:.2f} |"
                    if "yolov8n" in ms
                    else f"| {label} | {params:,} | {flops / 1e9:.2f} | {size} | {fp32_ms:.2f} | {int8_ms:.2f} | "
                    f"{fp32_ms / int8_ms:.2f}x | {ms['baseline|fp32'] / fp32_ms:.2f}x / "
                    f"{ms['baseline|int8'] / int8_ms:.2f}x | - |"
                )
                print(lines[-1], flush=True)
        lines.append("")
    return lines


def profile_table(args: argparse.Namespace, tmp: Path, size: int = 640, runs: int = 30) -> list[str]:
    """ONNX Runtime's per-operator time (its profiler, summed per operator type) of YOLOX-Nano with
    SiLU and with ReLU, fp32 and INT8, at ``size``: where INT8 gains and where it loses."""
    import collections
    import json

    from detector import build_model, load_config

    rng = np.random.default_rng(0)
    calibration = [render_image(size, size, rng, CLASS_NAMES, 8, 12, None)[0] for _ in range(16)]
    feed = {"images": (np.random.default_rng(1).random((1, 3, size, size)) * 255).astype(np.float32)}
    totals: dict[str, collections.Counter] = {}
    paths: dict[str, Path] = {}
    for act in ("silu", "relu"):
        overrides = {f"model.{part}.act": act for part in ("backbone", "neck", "head")}
        fp32 = export_onnx(build_model(load_config("_base_/models/yolox_nano", overrides=overrides)),
                           tmp / f"profile_{act}.onnx", imgsz=size)  # fmt: skip
        int8 = quantize_int8(fp32, tmp / f"profile_{act}_int8.onnx", calibration)
        paths[f"{act} fp32"], paths[f"{act} INT8"] = fp32, int8
        if act == "silu":  # the depthwise convs (and their activations) left in float
            depthwise = [n.name for n in onnx.load(str(fp32)).graph.node if n.name.endswith("dconv/conv/Conv")]
            paths["silu INT8, depthwise float"] = quantize_int8(fp32, tmp / "profile_silu_int8_dw.onnx", calibration,
                                                                keep_float=depthwise)  # fmt: skip
        for precision, path in (("fp32", fp32), ("INT8", int8)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.enable_profiling = True
            options.profile_file_prefix = str(tmp / f"profile_{act}_{precision}")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for _ in range(runs):
                session.run(None, feed)
            events = json.loads(Path(session.end_profiling()).read_text())
            per_op = collections.Counter()
            for event in events:
                if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                    per_op[event["args"]["op_name"]] += event["dur"] / runs / 1e3
            totals[f"{act} {precision}"] = per_op
    ops = sorted({op for c in totals.values() for op in c}, key=lambda op: -max(c[op] for c in totals.values()))
    lines = [f"YOLOX-Nano at {size}, batch 1, {args.threads} threads: ONNX Runtime profiler, ms per run by operator "
             f"(mean of {runs} runs; kernels only)", "",
             "| operator | " + " | ".join(totals) + " |", "|---|" + "---:|" * len(totals)]  # fmt: skip
    for op in ops[:12]:
        lines.append(f"| {op} | " + " | ".join(f"{c[op]:.2f}" if c[op] else "-" for c in totals.values()) + " |")
    lines.append("| total | " + " | ".join(f"{sum(c.values()):.2f}" for c in totals.values()) + " |")
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {label: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for label, path in paths.items()}  # fmt: skip
    calls = {label: (lambda s=session: s.run(None, feed)) for label, session in sessions.items()}
    ms = interleaved_medians_ms(calls, args.runs)
    lines += ["", f"Latency at {size} (medians of {args.runs} interleaved rounds): "
              + "; ".join(f"{label} {value:.2f} ms ({ms['silu fp32'] / value:.2f}x SiLU fp32)"
                          for label, value in ms.items())]  # fmt: skip
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["accuracy", "int8", "qat", "latency", "profile"],
                        choices=["accuracy", "int8", "qat", "latency", "profile"])  # fmt: skip
    parser.add_argument("--models", nargs="+", default=["nano", "tiny"], choices=sorted(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--prunings", nargs="+", default=list(PRUNINGS), choices=list(PRUNINGS))
    parser.add_argument("--distill", action="store_true", help="also the last pruning distilled from the baseline")
    parser.add_argument("--method", default="l2", help="detector prune --method")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="accuracy: skip the INT8 rows")
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 640])
    parser.add_argument("--no-yolov8n", action="store_true")
    parser.add_argument(
        "--qat-epochs", type=int, help="qat: epochs of QAT and its control (default a third of the baseline's)"
    )
    parser.add_argument("--qat-lr", type=float, help="qat: optimizer.lr of QAT and its control (default the config's)")
    parser.add_argument(
        "--weight-bits",
        type=int,
        default=8,
        choices=(8, 7),
        help="qat: PTQ and QAT weight bits (7: ONNX Runtime's reduce_range, for CPUs without VNNI)",
    )
    parser.add_argument(
        "--int8-epochs",
        type=int,
        default=12,
        help="int8: epochs of the SiLU and ReLU Nano runs (12: rep.py's baselines)",
    )
    parser.add_argument("--skip-pruned", action="store_true", help="qat: leave out the pruned Nano rows")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_rep", help="shared with rep.py, distill.py")
    args = parser.parse_args()
    data = make_shapes_set(args.out / "data", args.train_images, 100)
    lines = []
    if "accuracy" in args.parts:
        lines += accuracy_tables(args, data)
    if "int8" in args.parts:
        lines += int8_tables(args, data)
    with tempfile.TemporaryDirectory() as tmp:
        if "qat" in args.parts:
            for model in args.models:
                lines += qat_tables(args, data, Path(tmp), model)
        if "latency" in args.parts:
            lines += latency_tables(args, data, Path(tmp))
        if "profile" in args.parts:
            lines += profile_table(args, Path(tmp))
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
