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
