"""Simulated pedestrian sequences for the tracking benchmark: MOTChallenge folders (seqinfo.ini,
det/det.txt, gt/gt.txt and, with camera shake, img1/ frames) whose detections come from known
trajectories with controlled corruption. Not a benchmark itself; used by track_bench.py.

Trajectories come from a real sequence's ground truth (``trajectories_from_gt``) or from
random walkers (``random_walkers``: people entering from the sides, walking at their own speed
and depth, some pausing or turning, seen from a camera height drawn per sequence). Then, per
frame, ``simulate``:

* occlusion: each person's visibility is the part of their box not covered by nearer people
  (nearer = feet lower in the image); below ``hidden`` (0.25) they are not detected, below 0.6
  their score is drawn low (0.15-0.55), as a detector's would be;
* misses: a visible person is missed with probability ``miss``;
* low scores: a detected person's score is drawn low with probability ``low_score``;
* boxes of what is seen (version 3, ``visible_boxes``): detectors box what they see, so a partly
  hidden person's box spans the visible part (the uncovered cells of the visibility grid) plus
  a fraction of the hidden extent drawn uniformly in [0, 1] per detection (how much of a hidden
  body a detector guesses varies); boxes shrink and grow in height as people pass behind others;
* box noise: corners jittered by ``jitter`` of the box size (Gaussian std); then every detection
  is clipped to the image (version 3), as a detector's are;
* false positives: ``false_positives`` per frame on average (Poisson), person-shaped boxes at
  random places with Beta(2, 4) scores (mostly low, one in ten above 0.6), and ``clutter``
  static objects (a pole, a sign) detected in 80 % of the frames at 0.3-0.8;
* stray boxes on people (the false positives a detector's NMS leaves, which move with the
  people and so can grow into tracks): with probability ``strays`` per detected person and
  frame, one more box at 0.3-0.8, either on the upper half of that person or, when another
  detected person overlaps them, around both;
* camera shake: the whole image moves by a random walk with ``shake`` px steps and occasional
  jolts of 4 x that; gt and detections move with it, and frames are rendered (a smooth random
  texture with each person as a coloured box) so camera-motion compensation has images.

Scores come in two styles (``Corruption.scores``). ``modern``, as above: a detector run at a low
threshold, as ByteTrack-style trackers expect, true boxes 0.6-1.0 and weak ones down to 0.15.
``public``, like the public detections of the MOTChallenge sequences (TUD-Campus, MOT15), which
come already cut at 0.5: a visible person's score is near 1 (1 - an exponential of mean 0.015,
so the median is 0.99), a weak one (half hidden, or drawn low) is 0.5-0.95, most often high
(0.5 + 0.45 Beta(2, 1)), and is detected only half the time, and every false positive, stray box
and clutter detection is 0.5-1.0, most often near the cut (0.5 + 0.5 Beta(1, 2)). So precision
rises with the score, as a detector's does (version 1 drew both uniformly: precision was flat,
about 0.4, from 0.5 to 0.9).

The ground truth is every person at least partly in the frame and at least 10 % visible, with
the full box (as MOTChallenge's).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FRAME_RATE = 640, 480, 25
#: Changes whenever a sequence made with the same settings would change (track_bench.py remakes them).
SIM_VERSION = 3


@dataclasses.dataclass(frozen=True)
class Corruption:
    """How detections depart from the truth (see the module docstring)."""

    miss: float = 0.1
    low_score: float = 0.1
    jitter: float = 0.03
    false_positives: float = 0.5
    clutter: int = 1
    shake: float = 0.0
    hidden: float = 0.25
    strays: float = 0.05
    scores: str = "modern"
    visible_boxes: bool = True


#: Named scenarios: each stresses one thing, ``mixed`` all of them moderately.
SCENARIOS = {
    "clean": Corruption(miss=0.05, low_score=0.05, false_positives=0.2, clutter=0),
    "misses": Corruption(miss=0.3),
    "false_positives": Corruption(false_positives=2.0, clutter=2, strays=0.15),
    "low_scores": Corruption(low_score=0.4),
    "shake": Corruption(shake=3.0),
    "mixed": Corruption(miss=0.2, low_score=0.25, false_positives=1.0, clutter=1, shake=2.0, strays=0.1),
}


def trajectories_from_gt(gt: np.ndarray) -> dict[int, np.ndarray]:
    """Per id, ``[T, 5]`` frame, x, y, w, h rows (MOT boxes) of a read_mot gt array."""
    return {int(i): gt[gt[:, 1] == i][:, [0, 2, 3, 4, 5]] for i in np.unique(gt[:, 1])}


def random_walkers(seed: int, frames: int = 150, people: int = 14) -> dict[int, np.ndarray]:
    """``people`` walkers over ``frames`` frames of a 640 x 480 view: each enters at a random frame
    from the left or right at a depth (feet line, y 220-470) with a matching height, walks at
    0.5-3.5 px/frame with a little vertical drift, and may stop for a while or turn back.

    The camera's height is drawn per sequence (version 3): a person's height in the image is
    ``view * (feet - horizon)``, 300 px at the bottom of the frame, with ``view`` (person height
    over camera height) uniform in [0.4, 0.88]. At 0.88 the camera is just above head height
    (heads nearly level, people 80-300 px, version 2's only view), so nearer people hide whole
    vertical strips of farther ones; at 0.4 it is mounted at 2.5 person heights, heads spread
    down the frame, and nearer people hide the lower part of farther ones (200-300 px)."""
    rng = np.random.default_rng(seed)
    view = rng.uniform(0.4, 0.88)
    horizon = 470 - 300 / view

    def height_at(feet: float) -> float:
        return view * (feet - horizon)

    tracks = {}
    for person in range(1, people + 1):
        start = int(rng.integers(1, max(2, frames - 30)))
        feet = rng.uniform(220, 470)
        height = height_at(feet)
        width = height * rng.uniform(0.35, 0.45)
        direction = rng.choice([-1.0, 1.0])
        x = -width + 5 if direction > 0 else WIDTH - 5
        if rng.random() < 0.3:  # already in the scene
            x = rng.uniform(0, WIDTH - width)
        speed = rng.uniform(0.5, 3.5) * height / 200
        drift = rng.normal(0, 0.15)
        pause = (int(rng.integers(start, frames)), int(rng.integers(5, 30))) if rng.random() < 0.3 else None
        turn = int(rng.integers(start, frames)) if rng.random() < 0.2 else None
        rows = []
        for frame in range(start, frames + 1):
            if pause and pause[0] <= frame < pause[0] + pause[1]:
                step = 0.0
            else:
                step = direction * speed * (1 + rng.normal(0, 0.05))
            if turn == frame:
                direction = -direction
            x += step
            feet = float(np.clip(feet + drift, 200, 478))
            height = height_at(feet)
            width = height * 0.4
            if x > WIDTH or x + width < 0:
                if frame > start + 5:
                    break
                continue
            rows.append([frame, x, feet - height, width, height])
        if len(rows) > 5:
            tracks[person] = np.array(rows)
    return tracks


def _visibility(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Part of each ``[N, 4]`` MOT box not covered by boxes whose bottom edge is lower (nearer),
    on a 4 px grid, and the ``[N, 4]`` MOT box of its uncovered cells (the whole box when none is
    covered or all are)."""
    out = np.ones(len(boxes))
    seen = boxes.astype(float)  # a copy
    bottoms = boxes[:, 1] + boxes[:, 3]
    for i, (x, y, w, h) in enumerate(boxes):
        xs = np.arange(x, x + w, 4.0)[:, None]
        ys = np.arange(y, y + h, 4.0)[None, :]
        covered = np.zeros((len(xs), ys.shape[1]), bool)
        for j in np.flatnonzero(bottoms > bottoms[i]):
            bx, by, bw, bh = boxes[j]
            covered |= (xs >= bx) & (xs < bx + bw) & (ys >= by) & (ys < by + bh)
        if not covered.size:
            continue
        out[i] = 1.0 - covered.mean()
        if covered.any() and not covered.all():
            cols, rows = np.nonzero(~covered)
            x1, y1 = xs[cols.min(), 0], ys[0, rows.min()]
            x2, y2 = min(xs[cols.max(), 0] + 4.0, x + w), min(ys[0, rows.max()] + 4.0, y + h)
            seen[i] = [x1, y1, x2 - x1, y2 - y1]
    return out, seen


def simulate(tracks: dict[int, np.ndarray], corruption: Corruption, seed: int, out: Path, name: str) -> Path:
    """Write the sequence ``out/name`` (MOTChallenge layout) from ``tracks`` with ``corruption``."""
    if corruption.scores not in ("modern", "public"):
        raise ValueError(f"Corruption.scores: {corruption.scores!r}; expected 'modern' or 'public'")
    public = corruption.scores == "public"
    rng = np.random.default_rng(seed)
    seq = out / name
    (seq / "det").mkdir(parents=True, exist_ok=True)
    (seq / "gt").mkdir(exist_ok=True)
    num_frames = int(max(t[:, 0].max() for t in tracks.values()))
    colours = {i: rng.integers(30, 226, 3).tolist() for i in tracks}
    clutter = [(rng.uniform(0, WIDTH - 30), rng.uniform(150, 300), rng.uniform(20, 40), rng.uniform(60, 160))
               for _ in range(corruption.clutter)]  # fmt: skip
    offset = np.zeros(2)
    texture = None
    if corruption.shake > 0:
        (seq / "img1").mkdir(exist_ok=True)
        margin = 200
        noise = rng.integers(0, 256, (HEIGHT + 2 * margin, WIDTH + 2 * margin, 3)).astype(np.uint8)
        texture = cv2.GaussianBlur(noise, (0, 0), 3.0)
    det_rows, gt_rows = [], []
    for frame in range(1, num_frames + 1):
        if corruption.shake > 0:
            jolt = 4.0 if rng.random() < 0.05 else 1.0
            offset = np.clip(offset + rng.normal(0, corruption.shake * jolt, 2) - 0.05 * offset, -150, 150)
        ids, boxes = [], []
        for i, rows in tracks.items():
            hit = rows[rows[:, 0] == frame]
            if len(hit):
                ids.append(i)
                boxes.append(hit[0, 1:5] + [offset[0], offset[1], 0, 0])
        boxes = np.array(boxes).reshape(-1, 4)
        inside = (boxes[:, 0] < WIDTH) & (boxes[:, 0] + boxes[:, 2] > 0) & (boxes[:, 1] < HEIGHT) & (
            boxes[:, 1] + boxes[:, 3] > 0)  # fmt: skip
        visibility, seen = _visibility(boxes)
        detected = []
        for i, b, v, ok, part in zip(ids, boxes, visibility, inside, seen, strict=True):
            if not ok or v < 0.1:
                continue
            gt_rows.append([frame, i, *b, 1, 1, v])
            if v < corruption.hidden or rng.random() < corruption.miss:
                continue
            low = v < 0.6 or rng.random() < corruption.low_score
            if public and low and rng.random() < 0.5:
                continue
            score = _true_score(rng, low, public)
            box = b
            if corruption.visible_boxes and v < 1.0:
                box = part + rng.uniform() * (b - part)
            noisy = _clip(box + rng.normal(0, corruption.jitter, 4) * [box[2], box[3], box[2], box[3]])
            if min(noisy[2:]) < 2:  # a sliver at the border: no detector reports it
                continue
            det_rows.append([frame, -1, *noisy, score])
            detected.append(b)
        for k, b in enumerate(detected):
            if rng.random() >= corruption.strays:
                continue
            others = [o for j, o in enumerate(detected) if j != k and o[0] < b[0] + b[2] and b[0] < o[0] + o[2]]
            if others and rng.random() < 0.5:
                o = others[int(rng.integers(len(others)))]
                x1, y1 = min(b[0], o[0]), min(b[1], o[1])
                stray = [x1, y1, max(b[0] + b[2], o[0] + o[2]) - x1, max(b[1] + b[3], o[1] + o[3]) - y1]
            else:
                stray = [b[0], b[1], b[2], b[3] * rng.uniform(0.4, 0.6)]
            stray = _clip(np.array(stray))
            if min(stray[2:]) >= 2:
                det_rows.append([frame, -1, *stray, _false_score(rng, public)])
        for _ in range(rng.poisson(corruption.false_positives)):
            h = rng.uniform(60, 280)
            fp = np.array([rng.uniform(0, WIDTH - 40), rng.uniform(150, HEIGHT - h), h * 0.4, h])
            det_rows.append([frame, -1, *_clip(fp), _false_score(rng, public, background=True)])
        for x, y, w, h in clutter:
            if rng.random() < 0.8:
                box = _clip(np.array([x + offset[0], y + offset[1], w, h]))
                if min(box[2:]) >= 2:
                    det_rows.append([frame, -1, *box, _false_score(rng, public)])
        if texture is not None:
            m = 200
            left, top = int(round(m - offset[0])), int(round(m - offset[1]))
            image = texture[top : top + HEIGHT, left : left + WIDTH].copy()
            order = np.argsort(boxes[:, 1] + boxes[:, 3])  # far first
            for k in order:
                x, y, w, h = np.round(boxes[k]).astype(int)
                cv2.rectangle(image, (x, y), (x + w, y + h), colours[ids[k]], -1)
            cv2.imwrite(str(seq / "img1" / f"{frame:06d}.jpg"), image)
    _write(seq / "det" / "det.txt", det_rows, "{:.0f},{:.0f},{:.2f},{:.2f},{:.2f},{:.2f},{:.4f},-1,-1,-1")
    _write(seq / "gt" / "gt.txt", gt_rows, "{:.0f},{:.0f},{:.2f},{:.2f},{:.2f},{:.2f},{:.0f},{:.0f},{:.3f}")
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={FRAME_RATE}\nseqLength={num_frames}\n"
        f"imWidth={WIDTH}\nimHeight={HEIGHT}\nimExt=.jpg\n"
    )
    return seq


def _clip(box: np.ndarray) -> np.ndarray:
    """A MOT box (x, y, w, h) clipped to the image."""
    x1, y1 = np.clip(box[:2], 0, [WIDTH, HEIGHT])
    x2, y2 = np.clip(box[:2] + box[2:], 0, [WIDTH, HEIGHT])
    return np.array([x1, y1, x2 - x1, y2 - y1])


def _true_score(rng: np.random.Generator, low: bool, public: bool) -> float:
    """A true detection's score in the given style (see the module docstring)."""
    if public:
        return 0.5 + 0.45 * rng.beta(2, 1) if low else max(0.5, 1.0 - rng.exponential(0.015))
    return rng.uniform(0.15, 0.55) if low else rng.uniform(0.6, 1.0)


def _false_score(rng: np.random.Generator, public: bool, background: bool = False) -> float:
    """A false detection's score in the given style (see the module docstring): ``background``
    for a random box, else a stray or clutter box."""
    if public:
        return 0.5 + 0.5 * rng.beta(1, 2)
    return rng.beta(2, 4) if background else rng.uniform(0.3, 0.8)


def _write(path: Path, rows: list, template: str) -> None:
    path.write_text("".join(template.format(*row) + "\n" for row in sorted(rows, key=lambda r: (r[0], r[1]))))
