"""Atomic file writes: a reader never sees a half-written artefact, and a crash leaves the old file intact; the
clean-up of what a killed run left behind; and the check, before any work starts, that the planned outputs can be
written at all."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deltaplane.errors import InputError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so temporaries there are never swept (the safe side)
    fcntl = None

PathArg = str | os.PathLike | None
TEMP_TAG = ".deltaplane-"
"""Marks the names of our temporary files and directories: `.NAME.deltaplane-XXXXXXXX.tmp[SUFFIX]`."""
_TEMP_NAME = re.compile(r"\..+" + re.escape(TEMP_TAG) + r"[a-z0-9_]{8}\.tmp(\.[^.]+)?")  # tempfile's 8 characters


def sweep_stale_temps(directory: str | os.PathLike) -> None:
    """Delete the temporary files and directories that killed deltaplane processes left in `directory` (SIGKILL skips
    every clean-up). Only our own temporary names are considered, and of those only the ones whose lock no process
    holds: the kernel drops a lock when its owner dies, so a temporary of a live writer, also one in another
    process or container, is never touched."""
    if fcntl is None:
        return
    try:
        with os.scandir(directory) as entries:
            candidates = [entry.path for entry in entries if _TEMP_NAME.fullmatch(entry.name)]
    except OSError:
        return
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:  # locked by a live writer (or not ours to delete): leave it
            pass
        finally:
            os.close(fd)


def _locked_temp(path: Path, directory: bool) -> tuple[Path, int | None]:
    """A new temporary file or directory beside `path`, and a descriptor holding its lock until closed (None on a
    system without locks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    prefix, suffix = f".{path.name}{TEMP_TAG}", ".tmp" + ("" if directory else path.suffix)
    if fcntl is None:
        if directory:
            return Path(tempfile.mkdtemp(suffix, prefix, path.parent)), None
        fd, tmp = tempfile.mkstemp(suffix, prefix, path.parent)
        return Path(tmp), fd
    while True:
        if directory:
            tmp = tempfile.mkdtemp(suffix, prefix, path.parent)
            try:
                fd = os.open(tmp, os.O_RDONLY)
            except FileNotFoundError:  # another process's sweep deleted it before we could lock it
                continue
        else:
            fd, tmp = tempfile.mkstemp(suffix, prefix, path.parent)
        with contextlib.suppress(OSError):  # a file system without locks: no sweep can lock it either
            fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.stat(tmp), os.fstat(fd)):
                return Path(tmp), fd
        os.close(fd)  # another process's sweep deleted it between its creation and our lock: make another


def _umask_mode(directory: bool) -> int:
    """The mode open()/mkdir() would give under the current umask (mkstemp and mkdtemp make private 0600/0700
    entries, which the finished output must not keep)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path` (same file system)."""
    path = Path(path)
    tmp_path, lock = _locked_temp(path, directory=False)
    try:
        yield tmp_path
        os.chmod(tmp_path, _umask_mode(directory=False))
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if lock is not None:
            os.close(lock)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` as a whole."""
    path = Path(path)
    tmp, lock = _locked_temp(path, directory=True)
    try:
        yield tmp
        os.chmod(tmp, _umask_mode(directory=True))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if lock is not None:
            os.close(lock)


@contextlib.contextmanager
def created_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Create directory `path` (and missing parents) for the block. If the block fails, remove again the
    directories it created that are left empty, so that a failed command leaves no empty directory behind; a
    directory that existed before and every file stay."""
    path = Path(path)
    created = list(itertools.takewhile(lambda part: not os.path.exists(part), (path, *path.parents)))
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        inside = [Path(root) for root, _, _ in os.walk(path, topdown=False)] if created else []
        for directory in [*inside, *created[1:]]:  # deepest first
            with contextlib.suppress(OSError):  # not empty: it holds finished work
                directory.rmdir()
        raise


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
