"""Our trackers against SORT, supervision's ByteTrack and BoxMOT's motion-only trackers on
identical detections, all scored by the same code (motmetrics at IoU 0.5, HOTA by TrackEval),
online (tracks as emitted) and offline (gaps up to 20 frames interpolated, ByteTrack's step, for
every tracker; ours is scored on what ``detector track`` writes: also each track's detections
from before its confirmation, ``track.backfill``, tracks joined and extended, and gaps filled
only in tracks covering ``track.interpolate_min_coverage`` of their span), and tracker
throughput.

    python bench/track_bench.py [--parts select report] [--seeds 0 1 2] [--repeats 10]

* select: the packaged tracker configs and ``CANDIDATES`` (combinations of published ideas), on random
  walkers simulated by track_sim.py (every scenario, seeds 100 + s; nothing from TUD-Campus) in
  two score styles (``--select-families``: a modern detector's, and public detections' cut at
  0.5), chosen by leave-one-seed-out cross-validation on the mean of MOTA, IDF1 and HOTA (online
  and offline, both styles). This is how the default tracker was chosen (the ninth session
  narrowed the choice on TUD-Campus: bench/README.md); the table says what each fold chose.
  ``--candidates`` runs only some, ``--jobs`` in several processes.
* report: TUD-Campus's public detections, and sequences simulated from its ground truth
  (track_sim.py scenarios: misses, false positives, low scores, camera shake, mixed; seeds s),
  every tracker per scenario and combined (the sequences concatenated: one score over all).
  Frames/s: the tracker alone on TUD-Campus's detections (images decoded beforehand, no
  camera-motion compensation: it has no images), median of ``--repeats`` runs.

The peers run in their own environment, bench/.venv-peers (made on first use: sort-track
0.0.8 without its pins of old scipy, supervision 0.25.1, BoxMOT 25.0 with torch pinned as the
project pins it): never project dependencies. Prints markdown tables. Never part of the tests.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from detector import load_config
from detector.commands.track import DEFAULT_TRACKER
from detector.config_sections import TrackConfig, parse_config
from detector.registry import TRACKERS
from detector.tracking.metrics import evaluate_mot
from detector.tracking.mot_io import read_mot, read_seqinfo
from detector.tracking.pipeline import detections_from_file, track_sequence
from detector.tracking.postprocess import interpolate_gaps
from detector.tracking.sources import FrameSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from track_sim import SCENARIOS, SIM_VERSION, random_walkers, simulate, trajectories_from_gt  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("DETECTOR_SHARED", HERE.parents[1] / "shared"))
PEERS_VENV = HERE / ".venv-peers"
OFFLINE_GAP = TrackConfig().interpolate_max_gap  # frames: ByteTrack's 20, as `detector track`, for every tracker
#: Our candidates: label -> (packaged tracker config, overrides). The next two combine the
#: published ideas of the first three; the next two keep lost tracks as long as BoostTrack's and
#: OccluBoost's published defaults do (BoxMOT 25.0's max_age: 60 and 146 frames); the next two
#: join tracks offline across gaps as long as that memory (``track.link_max_gap``) at two
#: overlaps; the next three add to the default (the previous line) BoostTrack's detection-
#: confidence boosts (Stanojević and Todorović, 2024), weak detections offered to lost tracks,
#: and both; the next three extend the default's tracks offline at both ends with the
#: detections that continue them (``track.extend_max_miss``: 0, 2 or 5 frames without one
#: allowed); the next two extend only tracks whose mean score reaches one of the default's own
#: thresholds (``track.extend_min_track_score``); the next two fill gaps only in tracks whose
#: mean score reaches one of them (``track.interpolate_min_track_score``); the next eight fill
#: gaps only in tracks covering 30 % or 50 % of their span (``track.interpolate_min_coverage``),
#: take the score thresholds that supervision's ByteTrack and Ultralytics' trackers ship with, or
#: both; the last two take those thresholds only for detections that can score under 0.5 (a
#: detector's whole range, ``track.full_range``), keeping the default's for files cut at 0.5; the
#: last four are the default as packaged (with Hybrid-SORT's height-modulated IoU, Yang et al.,
#: 2024, and BoostTrack's similarity boosts at their published weights) and without one, the
#: other or both. No number here was tuned; the selection chooses among the listed values.
OC_IDEAS = ["track.tracker.observation_update=true", "track.tracker.direction_weight=0.2",
            "track.tracker.observation_recovery=true"]  # fmt: skip
#: BoostTrack's published DLO coefficient and its DUO boost; stage 2 offered to lost tracks too.
BOOSTS = ["track.tracker.boost_likely=0.65", "track.tracker.boost_unlikely=true"]
RECOVERY = ["track.tracker.low_score_recovery=true"]
#: The default without Hybrid-SORT's association cost (stages 1 and 3), and without BoostTrack's
#: similarity boosts (its published weights in default.yaml).
IOU = ["track.tracker.cost=iou"]
NO_SIMILARITY_BOOSTS = ["track.tracker.boost_iou=0", "track.tracker.boost_mahalanobis=0",
                        "track.tracker.boost_shape=0"]  # fmt: skip
#: The score thresholds supervision's ByteTrack and Ultralytics' trackers ship with, for every
#: detection (no other thresholds for a detector's whole score range: ``track.full_range``).
THRESHOLDS = {
    " with supervision's ByteTrack thresholds (0.25 high, 0.35 new track)": [
        "track.tracker.high_threshold=0.25",
        "track.tracker.new_track_threshold=0.35",
        "track.full_range=null",
    ],
    " with Ultralytics' tracker thresholds (0.25 high, 0.25 new track)": [
        "track.tracker.high_threshold=0.25",
        "track.tracker.new_track_threshold=0.25",
        "track.full_range=null",
    ],
}
CANDIDATES = {
    "ByteTracker (bytetrack.yaml)": ("_base_/trackers/bytetrack", []),
    "OCSortTracker (ocsort.yaml)": ("_base_/trackers/ocsort", []),
    "BotSortTracker (botsort.yaml)": ("_base_/trackers/botsort", []),
    "ByteTracker + OC-SORT's ideas": ("_base_/trackers/bytetrack", OC_IDEAS),
    "BotSortTracker + OC-SORT's ideas": ("_base_/trackers/botsort", OC_IDEAS),
    "BotSortTracker, max_age 60 (BoostTrack's)": ("_base_/trackers/botsort", ["track.tracker.max_age=60"]),
    "BotSortTracker, max_age 146 (OccluBoost's)": ("_base_/trackers/botsort", ["track.tracker.max_age=146"]),
    "BotSortTracker, max_age 60, tracks joined offline (60 frames, IoU 0.5)": (
        "_base_/trackers/botsort",
        ["track.tracker.max_age=60", "track.link_max_gap=60"],
    ),
    "BotSortTracker, max_age 60, tracks joined offline (60 frames, IoU 0.3)": (
        "_base_/trackers/botsort",
        ["track.tracker.max_age=60", "track.link_max_gap=60", "track.link_min_iou=0.3"],
    ),
    "default.yaml + weak detections re-find lost tracks": (DEFAULT_TRACKER, RECOVERY),
    "default.yaml + BoostTrack's confidence boosts": (DEFAULT_TRACKER, BOOSTS),
    "default.yaml + both": (DEFAULT_TRACKER, [*RECOVERY, *BOOSTS]),
    **{
        f"default.yaml + tracks extended offline (up to {miss} frames without a detection)": (
            DEFAULT_TRACKER,
            [f"track.extend_max_miss={miss}"],
        )
        for miss in (0, 2, 5)
    },
    **{
        f"default.yaml + tracks with a mean score under {score} ({name}) not extended": (
            DEFAULT_TRACKER,
            [f"track.extend_min_track_score={score}"],
        )
        for score, name in ((0.6, "its high_threshold"), (0.7, "its new_track_threshold"))
    },
    **{
        f"default.yaml + gaps filled only in tracks with a mean score of {score} ({name})": (
            DEFAULT_TRACKER,
            [f"track.interpolate_min_track_score={score}"],
        )
        for score, name in ((0.6, "its high_threshold"), (0.7, "its new_track_threshold"))
    },
    **{
        f"default.yaml{name}{f' + gaps filled only in tracks covering {cover:.0%} of their span' if cover else ''}": (
            DEFAULT_TRACKER,
            [*thresholds, *([f"track.interpolate_min_coverage={cover}"] if cover else [])],
        )
        for name, thresholds in (("", []), *THRESHOLDS.items())
        for cover in (0.0, 0.3, 0.5)
        if name or cover
    },
    **{
        f"default.yaml{name} for detections that score under 0.5": (
            DEFAULT_TRACKER,
            [
                "track.full_range.below=0.5",
                *(t.replace(".tracker.", ".full_range.tracker.") for t in thresholds if "full_range" not in t),
            ],
        )
        for name, thresholds in THRESHOLDS.items()
    },
    "default.yaml (as packaged)": (DEFAULT_TRACKER, []),
    "default.yaml with IoU instead of Hybrid-SORT's height-modulated IoU": (DEFAULT_TRACKER, IOU),
    "default.yaml without BoostTrack's similarity boosts (IoU 0.5, Mahalanobis 0.25, shape 0.25)": (
        DEFAULT_TRACKER,
        NO_SIMILARITY_BOOSTS,
    ),
    "default.yaml with neither (the fifteenth session's default)": (DEFAULT_TRACKER, [*IOU, *NO_SIMILARITY_BOOSTS]),
}
BOXMOT = ("ByteTrack", "OcSort", "BotSort", "OccluBoost", "BoostTrack", "SFSORT", "DeepOcSort", "HybridSort")
PEERS = ["SORT", "ByteTrack-supervision", *(f"BoxMOT-{name}" for name in BOXMOT)]


def peers_python() -> Path:
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        pins = PEERS_VENV / "pins.txt"
        pins.write_text("torch==2.14.1\ntorchvision==0.29.1\n")
        pip = [str(python), "-m", "pip", "install", "-q", "-c", str(pins)]
        subprocess.run([*pip, "torch==2.14.1", "torchvision==0.29.1", "boxmot==25.0.0", "supervision==0.25.1",
                        "filterpy"], check=True)  # fmt: skip
        subprocess.run([*pip, "--no-deps", "sort-track==0.0.8"], check=True)
    return python


def track_settings(config: str, overrides: list[str]) -> TrackConfig:
    """The ``track`` section of ``config`` with ``overrides``, parsed and checked."""
    return parse_config(load_config(config, overrides)).track


def run_ours(sequence: Path, config: str, overrides: list[str], out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Result rows of our tracker built from ``config`` on ``sequence``: online (as emitted) and
    offline, as ``detector track`` writes them: with the detections from before each track's
    confirmation added (``track.backfill``), tracks joined and extended as the config says
    (``track.link_max_gap``, ``track.extend_max_miss``), gaps of up to ``OFFLINE_GAP`` frames
    interpolated (in tracks covering ``track.interpolate_min_coverage`` of their span)."""
    track = track_settings(config, overrides)
    source = FrameSource(sequence)
    detect = detections_from_file(sequence / "det" / "det.txt")
    tracker = TRACKERS.build(track.tracker_settings(detect.lowest_score), "track.tracker", frame_rate=source.frame_rate)
    settings = {**track.sequence_settings(), "interpolate": True, "interpolate_max_gap": OFFLINE_GAP, "backfill": True}
    run = track_sequence(source, detect, tracker, out,
                         write_video=False, progress=False, **settings)  # fmt: skip
    return run.online_rows, run.rows


def run_peers(sequence: Path, out: Path, repeats: int = 1) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Online result rows and median seconds of every peer on ``sequence``."""
    info = read_seqinfo(sequence / "seqinfo.ini")
    out.mkdir(parents=True, exist_ok=True)
    command = [str(peers_python()), str(HERE / "track_peers.py"), str(sequence), str(info["frameRate"]),
               str(info["seqLength"]), str(out), str(repeats), *PEERS]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"track_peers.py failed on {sequence}:\n{done.stderr[-3000:]}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {}
    for name in PEERS:
        text = (out / f"{name}.txt").read_text().strip()
        rows[name] = read_mot(out / f"{name}.txt", "results")[:, :7] if text else np.zeros((0, 7))
    return rows, seconds


def online_offline(runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[dict, dict]:
    """Scores of ``runs`` (gt, online rows, offline rows) online and offline."""
    return score([(gt, rows) for gt, rows, _ in runs]), score([(gt, rows[:, :7]) for gt, _, rows in runs])


def concatenate(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(gt, results) of several sequences as one: frames and ids shifted so none collide."""
    gts, results, frame0, id0 = [], [], 0, 0
    for gt, res in pairs:
        g, r = gt.copy(), res.copy()
        g[:, 0] += frame0
        r[:, 0] += frame0
        g[:, 1] += id0
        r[:, 1] += id0
        gts.append(g)
        results.append(r)
        frame0 += int(max(gt[:, 0].max(), res[:, 0].max() if len(res) else 0)) + 1
        id0 += int(max(gt[:, 1].max(), res[:, 1].max() if len(res) else 0)) + 1
    return np.concatenate(gts), np.concatenate(results)


def score(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    gt, res = concatenate(pairs)
    return evaluate_mot(gt, res)


def mean3(m: dict[str, float]) -> float:
    return (m["mota"] + m["idf1"] + m.get("hota", m["idf1"])) / 3


def simulated(root: Path, family: str, seeds: list[int]) -> dict[str, list[Path]]:
    """Simulated sequences per scenario (made once, reused): ``family`` ``tud`` (TUD-Campus's
    ground-truth trajectories), ``walkers`` (random walkers of seed 100 + s) or ``public`` (the
    same walkers with public-detection-style scores). A sequence made by another version of
    track_sim.py or with other settings is made again."""
    out = {}
    for scenario, corruption in SCENARIOS.items():
        if family == "public":
            corruption = dataclasses.replace(corruption, scores="public")
        out[scenario] = []
        for seed in seeds:
            name = f"{family}_{scenario}_s{seed}"
            stamp = f"track_sim {SIM_VERSION} {corruption}\n"
            made = root / name / "made_by.txt"
            if not made.exists() or made.read_text() != stamp:
                if family == "tud":
                    tracks = trajectories_from_gt(read_mot(SHARED / "data/mot/TUD-Campus/gt/gt.txt", "gt"))
                else:
                    tracks = random_walkers(100 + seed)
                simulate(tracks, corruption, seed, root, name)
                made.write_text(stamp)
            out[scenario].append(root / name)
    return out


def gt_of(sequence: Path) -> np.ndarray:
    return read_mot(sequence / "gt" / "gt.txt", "gt")


def _run_candidates(sequence: Path, candidates: dict, out: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {label: run_ours(sequence, config, overrides, out) for label, (config, overrides) in candidates.items()}


def select(args: argparse.Namespace) -> None:
    seeds, families = args.select_seeds, args.select_families
    candidates = {k: v for k, v in CANDIDATES.items() if not args.candidates or any(c in k for c in args.candidates)}
    # label -> seed -> family -> [(gt, online rows, offline rows)]
    runs: dict[str, dict[int, dict[str, list]]] = {
        label: {s: {f: [] for f in families} for s in seeds} for label in candidates
    }
    jobs = [(family, seed, sequence) for family in families
            for paths in simulated(args.out / "sims", family, seeds).values()
            for seed, sequence in zip(seeds, paths, strict=True)]  # fmt: skip
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_run_candidates, sequence, candidates, args.out / "tmp" / sequence.name)
                   for _, _, sequence in jobs]  # fmt: skip
        for (family, seed, sequence), future in zip(jobs, futures, strict=True):
            for label, rows in future.result().items():
                runs[label][seed][family].append((gt_of(sequence), *rows))
    print("Selection on simulated random walkers (all scenarios; families: " + ", ".join(families) + "): mean of "
          "MOTA, IDF1 and HOTA, online / offline")  # fmt: skip
    print()
    print("| candidate | " + " | ".join(f"seed {100 + s}" for s in seeds) + " | " + " | ".join(families) + " |")
    print("|---|" + "---:|" * (len(seeds) + len(families)))
    value: dict[str, dict[int, float]] = {}
    for label in candidates:
        cells = []
        value[label] = {}
        for seed in seeds:
            scores = [online_offline(runs[label][seed][f]) for f in families]
            on, off = statistics.mean(mean3(s[0]) for s in scores), statistics.mean(mean3(s[1]) for s in scores)
            value[label][seed] = (on + off) / 2
            cells.append(f"{on:.3f} / {off:.3f}")
        for family in families:
            on, off = online_offline([p for s in seeds for p in runs[label][s][family]])
            cells.append(f"{mean3(on):.3f} / {mean3(off):.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    for held in seeds:
        rest = [s for s in seeds if s != held]
        chosen = max(candidates, key=lambda label: statistics.mean(value[label][s] for s in rest))
        best = max(candidates, key=lambda label: value[label][held])
        print(f"- fold without seed {100 + held}: chose {chosen} ({value[chosen][held]:.3f} on the held-out seed; "
              f"the best there: {best}, {value[best][held]:.3f})")  # fmt: skip


def report(args: argparse.Namespace) -> None:
    tud = SHARED / "data" / "mot" / "TUD-Campus"
    sims = simulated(args.out / "sims", "tud", args.seeds)
    groups = {"TUD-Campus": [tud], **{f"sim {k}": v for k, v in sims.items()}}
    default = f"ours, default ({DEFAULT_TRACKER.rsplit('/', 1)[-1]}.yaml)"
    # The default, the packaged configs as they are, and the candidates built on the default.
    ours = {default: (DEFAULT_TRACKER, []),
            **{k: v for k, v in CANDIDATES.items() if not v[1] or v[0] == DEFAULT_TRACKER}}  # fmt: skip
    results: dict[str, dict[str, list]] = {}  # tracker -> group -> [(gt, rows)]
    for group, sequences in groups.items():
        for sequence in sequences:
            gt = gt_of(sequence)
            for label, (config, overrides) in ours.items():
                rows = run_ours(sequence, config, overrides, args.out / "tmp")
                results.setdefault(label, {}).setdefault(group, []).append((gt, *rows))
            peer_rows, _ = run_peers(sequence, args.out / "peers" / sequence.name)
            for name, rows in peer_rows.items():
                offline = interpolate_gaps(rows, max_gap=OFFLINE_GAP)
                results.setdefault(name, {}).setdefault(group, []).append((gt, rows, offline))
    speeds = {label: our_speed(tud, config, overrides, args.repeats) for label, (config, overrides) in ours.items()}
    _, seconds = run_peers(tud, args.out / "peers" / "speed", args.repeats)
    frames = int(read_seqinfo(tud / "seqinfo.ini")["seqLength"])
    speeds.update({name: frames / max(s, 1e-9) for name, s in seconds.items()})

    def table(title: str, group_names: list[str]) -> None:
        print(title)
        print()
        print("| tracker | MOTA | IDF1 | HOTA | IDSW | FP | FN | offline MOTA | IDF1 | HOTA | frames/s |")
        print("|---|" + "---:|" * 10)
        for label, by_group in results.items():
            pairs = [p for g in group_names for p in by_group[g]]
            on, off = online_offline(pairs)
            print(f"| {label} | {on['mota']:.3f} | {on['idf1']:.3f} | {on.get('hota', float('nan')):.3f} | "
                  f"{on['num_switches']} | {on['num_false_positives']} | {on['num_misses']} | {off['mota']:.3f} | "
                  f"{off['idf1']:.3f} | {off.get('hota', float('nan')):.3f} | {speeds[label]:.0f} |")  # fmt: skip
        print()

    seeds = ", ".join(map(str, args.seeds))
    table("TUD-Campus, public detections (online; offline = as `detector track` writes it for ours, gaps up to 20 "
          "frames interpolated for the peers)", ["TUD-Campus"])  # fmt: skip
    sims = [g for g in groups if g.startswith("sim")]
    table(f"Simulated from TUD-Campus's ground truth, all scenarios and seeds {seeds}, concatenated", sims)
    for group in sims:
        table(f"{group} (seeds {seeds})", [group])


def our_speed(sequence: Path, config: str, overrides: list[str], repeats: int) -> float:
    """Median frames/s of the tracker's update over ``sequence``'s detections (in memory)."""
    info = read_seqinfo(sequence / "seqinfo.ini")
    detect = detections_from_file(sequence / "det" / "det.txt")
    num_frames = int(info["seqLength"])
    frames = [detect(frame, None) for frame in range(1, num_frames + 1)]
    settings = track_settings(config, overrides).tracker_settings(detect.lowest_score)
    tracker = TRACKERS.build(settings, "track.tracker", frame_rate=float(info["frameRate"]))
    times = []
    for _ in range(repeats):
        tracker.reset()
        start = time.perf_counter()
        for boxes, scores, labels in frames:
            tracker.update(boxes, scores, labels)
        times.append(time.perf_counter() - start)
    return num_frames / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["select", "report"], choices=["select", "report"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="report: simulation seeds")
    parser.add_argument(
        "--select-seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5], help="select: random-walker seeds (100 + s)"
    )
    parser.add_argument(
        "--select-families",
        nargs="+",
        default=["walkers", "public"],
        choices=["walkers", "public"],
        help="select: score styles of the walkers (track_sim.py: a modern detector's, or public detections')",
    )
    parser.add_argument(
        "--candidates", nargs="+", default=[], help="select: only the candidates whose label contains one of these"
    )
    parser.add_argument("--jobs", type=int, default=1, help="select: processes")
    parser.add_argument("--repeats", type=int, default=10, help="timing runs (median)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "track_bench")
    args = parser.parse_args()
    if "select" in args.parts:
        select(args)
    if "report" in args.parts:
        report(args)


if __name__ == "__main__":
    main()
