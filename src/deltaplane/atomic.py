"""Atomic file writes: a reader never sees a half-written artefact, and a crash leaves the old file intact; and the
check, before any work starts, that the planned outputs can be written at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deltaplane.errors import InputError

PathArg = str | os.PathLike | None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path` (same file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save arrays to a compressed .npz, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (os.path never raises, unlike Path.exists on EACCES)."""
    return next(candidate for candidate in (path, *path.parents) if os.path.exists(candidate))


def check_outputs(files: Mapping[str, PathArg] | None = None, dirs: Mapping[str, PathArg] | None = None,
                  inputs: Mapping[str, PathArg] | None = None) -> None:
    """Refuse planned outputs that could not be written, before any work starts (minutes of rendering or training
    must not end in a traceback). `files` and `dirs` map an option name ("-o", "--depth") to the file or directory
    it names (None = not asked for); `inputs` map option names to paths that no output may overwrite, and no two
    outputs may be the same path. Creates nothing."""
    taken = {Path(path).resolve(): f"the {flag} input" for flag, path in (inputs or {}).items() if path is not None}
    planned = [(flag, Path(path), False) for flag, path in (files or {}).items() if path is not None]
    planned += [(flag, Path(path), True) for flag, path in (dirs or {}).items() if path is not None]
    for flag, path, is_dir in planned:
        resolved = path.resolve()
        if resolved in taken:
            raise InputError(f"{flag} {path} is also {taken[resolved]}; choose another output path")
        taken[resolved] = f"the {flag} output"
        if os.path.exists(path) and os.path.isdir(path) != is_dir:
            found, wanted = ("a file", "directory") if is_dir else ("a directory", "file")
            raise InputError(f"{flag} {path} is {found}; give a {wanted} path")
        anchor = _nearest_existing(resolved if is_dir else resolved.parent)
        if not os.path.isdir(anchor):
            raise InputError(f"cannot write {flag} {path}: {anchor} is a file, not a directory")
        if not os.access(anchor, os.W_OK | os.X_OK):
            raise InputError(f"cannot write {flag} {path}: {anchor} is not writable")
