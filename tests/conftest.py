import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `make test` runs two pytest-xdist workers, one per core of the reference machine: each worker,
# and the tools it starts, computes on one thread, as two threads each would oversubscribe them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"


def shared_dir() -> Path:
    """The read-only shared material: $DETECTOR_SHARED, else ../shared beside the checkout."""
    path = Path(os.environ.get("DETECTOR_SHARED", REPO.parent / "shared"))
    if not (path / "fixtures").is_dir():
        raise FileNotFoundError(f"shared material not found at {path}; set DETECTOR_SHARED to its folder")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return shared_dir() / "fixtures"


@pytest.fixture(scope="session")
def configs_dir() -> Path:
    return REPO / "configs"


def write_sequence(tmp_path: Path, scores: dict[int, float], length: int) -> tuple[Path, Path]:
    """A MOT sequence folder without images of ``length`` frames and a det file: per frame in
    ``scores``, one 40 x 100 px person 2 px/frame to the right of x = 100 at that score."""
    det_file = tmp_path / "det.txt"
    det_file.write_text("".join(f"{f},-1,{100 + 2 * f},100,40,100,{score}\n" for f, score in scores.items()))
    seq = tmp_path / "SEQ"
    seq.mkdir()
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname=SEQ\nimDir=img1\nframeRate=30\nseqLength={length}\nimWidth=640\nimHeight=480\nimExt=.jpg\n"
    )
    return seq, det_file
