"""Shared fixtures: the real clips in ../shared/data (skipped when absent) and temporary homes for caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real clips and audio; tests that need it skip on a fresh clone."""
    if not (SHARED_DATA / "clips").is_dir():
        pytest.skip(f"real test clips not found at {SHARED_DATA} (only present in the development workplace)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """matplotlib (imported by mediapipe) and torch write caches into $HOME; keep them out of it."""
    home = tmp_path_factory.mktemp("cache-home")
    os.environ.setdefault("MPLCONFIGDIR", str(home / "matplotlib"))
    os.environ.setdefault("TORCH_HOME", str(home / "torch"))
