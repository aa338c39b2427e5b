"""MOTChallenge text files: detections, ground truth, tracker results and ``seqinfo.ini``.

A MOT row is ``frame, id, x, y, w, h, score, x, y, z``: frames are 1-based, boxes are top-left
``x, y`` plus width and height in image pixels, ``id`` is -1 in detection files, and the 7th
column is the detector score (det), the "consider" flag (gt: 1 counts, 0 is ignored) or the
tracker's confidence (results). Columns 8-10 are world coordinates in MOT15 and class and
visibility in MOT16+ ground truth; they are carried along untouched.
"""

from __future__ import annotations

import configparser
import os
import warnings
from pathlib import Path
from typing import NoReturn

import numpy as np

from detector.errors import MotFormatError
from detector.utils.fileio import atomic_write

NUM_COLUMNS = 10
COLUMN_NAMES = ("frame", "id", "x", "y", "w", "h", "score", "x3d", "y3d", "z3d")
_MIN_COLUMNS = 6
_FIELDS_HINT = "6 to 10 comma-separated numbers (frame,id,x,y,w,h[,score,x,y,z])"


def read_mot(path: str | os.PathLike[str], what: str = "detections") -> np.ndarray:
    """Read a MOTChallenge text file into float64 ``[N, 10]`` rows in file order.

    Columns 7-10 missing from a line are filled with -1; blank lines are skipped; fields are
    separated by commas (or by whitespace on lines without a comma). ``what`` names the kind of
    file in error messages. Raises FileNotFoundError, or MotFormatError naming the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such MOT {what} file")
    # utf-8-sig drops a BOM; undecodable bytes become U+FFFD and then fail as "not a number".
    lines = path.read_bytes().decode("utf-8-sig", errors="replace").split("\n")
    numbers: list[int] = []  # 1-based line number of each kept row
    texts: list[str] = []  # each kept row as exactly 10 comma-separated fields
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if "," not in line:
            line = ",".join(line.split())  # a whitespace-separated line, or a blank one
            if not line:
                continue
        count = line.count(",") + 1
        if not _MIN_COLUMNS <= count <= NUM_COLUMNS:
            raise MotFormatError(f"{path}:{lineno}: {count} fields in a {what} line; expected {_FIELDS_HINT}")
        numbers.append(lineno)
        texts.append(line + ",-1" * (NUM_COLUMNS - count))
    if not texts:
        return np.zeros((0, NUM_COLUMNS), dtype=np.float64)
    joined = ",".join(texts)
    # One C-level parse of the whole file (np.loadtxt and float() per field are 2x slower).
    values = _parse(joined) if "\x00" not in joined else None  # the C parser stops at a NUL
    if values is None or values.size != len(texts) * NUM_COLUMNS:
        _raise_first_non_number(path, numbers, texts)
    rows = values.reshape(-1, NUM_COLUMNS)
    _validate(rows, path, numbers, texts)
    return rows


def _parse(text: str) -> np.ndarray | None:
    """The numbers of comma-separated ``text``, or None when a field is not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # NumPy 1.x warns, 2.x raises
        try:
            return np.fromstring(text, sep=",")
        except ValueError:
            return None


def _is_number(text: str) -> bool:
    try:
        float(text)  # rejects NUL bytes and empty fields
    except ValueError:
        return False
    parsed = _parse(text)  # and the C parser must agree (it rejects "1_0", which float() takes)
    return parsed is not None and parsed.size == 1


def _raise_first_non_number(path: Path, numbers: list[int], texts: list[str]) -> NoReturn:
    for lineno, text in zip(numbers, texts, strict=True):
        parsed = _parse(text) if "\x00" not in text else None
        if parsed is not None and parsed.size == NUM_COLUMNS:
            continue
        for name, field in zip(COLUMN_NAMES, text.split(","), strict=True):
            if not _is_number(field):
                shown = repr(field.strip()[:24])  # a long garbage field would not fit on one line
                raise MotFormatError(f"{path}:{lineno}: {name} is {shown}; expected a number")
    raise MotFormatError(f"{path}: could not be read as numbers; expected {_FIELDS_HINT} per line")


def _validate(rows: np.ndarray, path: Path, numbers: list[int], texts: list[str]) -> None:
    """Raise MotFormatError for the first row (in file order) that breaks a rule."""
    frame, ident, w, h = rows[:, 0], rows[:, 1], rows[:, 4], rows[:, 5]
    with np.errstate(invalid="ignore"):
        checks = [
            (~np.isfinite(rows).all(axis=1), None, "a finite number"),
            ((frame < 1) | (frame != np.round(frame)), 0, "a positive integer (frames are 1-based)"),
            (ident != np.round(ident), 1, "an integer (-1 in detection files)"),
            (w <= 0, 4, "a positive width in pixels"),
            (h <= 0, 5, "a positive height in pixels"),
        ]
    failures = [(int(np.argmax(bad)), i) for i, (bad, _, _) in enumerate(checks) if bad.any()]
    if not failures:
        return
    row, check = min(failures)  # the earliest row; on a tie, the first rule in the list
    _, col, expected = checks[check]
    if col is None:  # the first non-finite column of that row
        col = int(np.argmin(np.isfinite(rows[row])))
    text = texts[row].split(",")[col].strip()
    raise MotFormatError(f"{path}:{numbers[row]}: {COLUMN_NAMES[col]} is {text!r}; expected {expected}")


def group_by_frame(records: np.ndarray) -> dict[int, np.ndarray]:
    """Rows ``[N, C]`` (frame in column 0) split per frame: ``{frame: rows}`` in ascending frame
    order, each frame's rows in their original order."""
    records = np.asarray(records)
    if len(records) == 0:
        return {}
    order = np.argsort(records[:, 0], kind="stable")
    ordered = records[order]
    frames, starts = np.unique(ordered[:, 0], return_index=True)
    return {int(f): chunk for f, chunk in zip(frames, np.split(ordered, starts[1:]), strict=True)}


def mot_to_xyxy(records: np.ndarray) -> np.ndarray:
    """Boxes of MOT rows ``[N, >=6]`` (x, y, w, h in columns 2-5) as ``[N, 4]`` x1, y1, x2, y2 pixels."""
    xywh = np.asarray(records, dtype=np.float64)[:, 2:6]
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def xyxy_to_mot_xywh(boxes: np.ndarray) -> np.ndarray:
    """Boxes ``[N, 4]`` x1, y1, x2, y2 pixels as MOT ``[N, 4]`` top-left x, y, width, height."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def write_mot_results(path: str | os.PathLike[str], rows: np.ndarray) -> Path:
    """Write tracker results ``[N, 7]`` (frame, id, x, y, w, h, score; MOT xywh pixels) as
    ``frame,id,x,y,w,h,score,-1,-1,-1`` lines sorted by frame then id, atomically.

    Frame and id must be integers (frame >= 1); coordinates are written with 2 decimals and the
    score with 4. A box whose w or h would be written as 0 or less is refused (ValueError), since
    read_mot would reject the file. Returns the path written.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 7:
        raise ValueError(f"MOT results: got an array of shape {rows.shape}; expected [N, 7] frame,id,x,y,w,h,score")
    bad = ~np.isfinite(rows).all(axis=1)
    bad |= (rows[:, 0] < 1) | (rows[:, 0] != np.round(rows[:, 0])) | (rows[:, 1] != np.round(rows[:, 1]))
    bad |= (np.round(rows[:, 4], 2) <= 0) | (np.round(rows[:, 5], 2) <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"MOT results row {i}: {rows[i].tolist()}; expected finite values, integer frame >= 1 and id, "
            "and w, h of at least 0.01 pixels"
        )
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    lines = [
        f"{int(f)},{int(i)},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{s:.4f},-1,-1,-1\n" for f, i, x, y, w, h, s in rows.tolist()
    ]
    return atomic_write(path, lambda f: f.writelines(lines))


SEQINFO_KEYS = {
    "name": str,
    "imDir": str,
    "frameRate": int,
    "seqLength": int,
    "imWidth": int,
    "imHeight": int,
    "imExt": str,
}


def read_seqinfo(path: str | os.PathLike[str]) -> dict[str, str | int]:
    """The ``[Sequence]`` section of a MOTChallenge ``seqinfo.ini``: name, imDir, frameRate,
    seqLength, imWidth, imHeight (positive ints) and imExt, under those names. Keys are matched
    case-insensitively. Raises FileNotFoundError, or MotFormatError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such seqinfo.ini")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_bytes().decode("utf-8-sig", errors="replace"), source=str(path))
    except configparser.Error as exc:
        reason = " ".join(str(exc).split())  # configparser's messages span lines
        raise MotFormatError(f"{path}: {reason}; expected an INI file with a [Sequence] section") from None
    if not parser.has_section("Sequence"):
        raise MotFormatError(f"{path}: no [Sequence] section; expected a MOTChallenge seqinfo.ini")
    section = parser["Sequence"]
    info: dict[str, str | int] = {}
    for key, kind in SEQINFO_KEYS.items():
        value = section.get(key)  # configparser lowercases keys on both sides
        if value is None or not value.strip():
            raise MotFormatError(f"{path}: [Sequence] {key} is missing; expected {key}=<value>")
        value = value.strip()
        if kind is int:
            if not (value.isascii() and value.isdigit() and int(value) > 0):
                raise MotFormatError(f"{path}: [Sequence] {key} is {value!r}; expected a positive integer")
            info[key] = int(value)
        else:
            info[key] = value
    return info
