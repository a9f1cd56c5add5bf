"""Checks shared by the tests of the loaders of user-given weight files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deltaplane.errors import InputError, MissingDependencyError


def assert_rejects_missing_and_corrupt(load: Callable[[Path], object], tmp_path: Path) -> None:
    """A path that does not exist is a MissingDependencyError, a file that is not a checkpoint an InputError."""
    with pytest.raises(MissingDependencyError, match="not found"):
        load(tmp_path / "nowhere.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(InputError, match="cannot read"):
        load(corrupt)
