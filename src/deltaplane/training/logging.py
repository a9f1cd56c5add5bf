"""Scalar and image logging: always a jsonl file, TensorBoard when asked for and installed."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from deltaplane.atomic import atomic_path
from deltaplane.errors import MissingDependencyError


class RunLogger:
    """Appends one JSON object per call to `log.jsonl` (so a resumed run continues the same file).

    A run stopped after its last checkpoint logged steps that its resumption trains again, so the rows (and
    TensorBoard events) past `start_step`, the step training starts from, are dropped first: each step is logged
    once and in order."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, start_step: int = 0) -> None:
        self.path = run_dir / "log.jsonl"
        self._drop_rows_after(start_step)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise MissingDependencyError("--tensorboard needs `pip install tensorboard`") from exc
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)

    def _drop_rows_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if _row_step(line) <= step]
        if len(kept) < len(lines):
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, "time": round(time.time(), 3), **{k: float(v) for k, v in values.items()}}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """`image` is uint8 HxWx3."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _row_step(line: str) -> float:
    """The step of a log row; infinite for a row cut short by a kill, so that it is dropped too."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
