"""Collapse guard: notice that training fell apart, and go back to before it at a lower learning rate.

A volume-rendered scene can die within a few steps and never come back: in plate mode on the GPU
(`lips+norm+mplanes8+aug2+adv0.1+plate+novdepth5+novcolor4`, obama_20s) the deltaplane pushed the raw density of
every sample to about −240 thirty steps after its warm-up ended; the softplus of such a field has no gradient left,
the head vanished (accumulation 0, the opacity loss at its ceiling) and the remaining 2,300 steps trained nothing.
The guard watches the training batches' PSNR and rendered opacity, keeps two in-memory snapshots of the model,
optimiser and discriminator, and on a collapse (or a non-finite loss) restores the older one and halves the learning
rates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from deltaplane.errors import DeltaplaneError


class TrainingDiverged(DeltaplaneError):
    """Training collapsed again after every rollback the guard allows."""


@dataclass(frozen=True)
class CollapseGuardConfig:
    """When training counts as collapsed, and how far back it goes."""

    drop_db: float = 6.0
    """Collapse: the training batches' PSNR, averaged over the last `window` steps, is this far below its median over
    the steps before them (batch-to-batch spread is ~2 dB; a dead field drops 6–9 dB at once)."""
    opacity_ratio: float = 0.1
    """Collapse: the rendered opacity (accumulation) of the batches, averaged over `window` steps, below this share of
    its earlier median (a dead field renders nothing; the frame's share of person or scene barely changes)."""
    window: int = 20
    history: int = 200
    """Steps of PSNR that the median looks back over."""
    snapshot_every: int = 200
    """Steps between in-memory snapshots. A rollback returns to the older of the last two, taken at least this many
    steps before the collapse was noticed, so never to a state that was already falling apart."""
    backoff: float = 0.5
    """Every learning rate is multiplied by this at each rollback."""
    max_rollbacks: int = 3
    """After this many rollbacks another collapse stops training with `TrainingDiverged`."""


@dataclass(frozen=True)
class Snapshot:
    step: int
    tensors: dict[str, Tensor]
    """Model, optimiser and discriminator state by name, copied to host memory."""


class CollapseGuard:
    def __init__(self, config: CollapseGuardConfig) -> None:
        self.config = config
        self.psnr: deque[float] = deque(maxlen=config.history + config.window)
        self.opacity: deque[float] = deque(maxlen=config.history + config.window)
        self.snapshots: deque[Snapshot] = deque(maxlen=2)
        self.rollbacks = 0

    @property
    def lr_scale(self) -> float:
        """Factor on every learning rate: `backoff` per rollback so far."""
        return self.config.backoff ** self.rollbacks

    def collapsed(self, psnr: float, opacity: float) -> str | None:
        """Record this step's training PSNR and mean rendered opacity; the reason when training has collapsed: the
        recent mean PSNR `drop_db` below the earlier median, or the recent mean opacity below `opacity_ratio` of it."""
        self.psnr.append(psnr)
        self.opacity.append(opacity)
        config = self.config
        if len(self.psnr) < 2 * config.window:  # early on the PSNR climbs, so a short baseline cannot misfire
            return None
        psnrs, opacities = np.asarray(self.psnr), np.asarray(self.opacity)
        recent_psnr, earlier_psnr = psnrs[-config.window:].mean(), np.median(psnrs[:-config.window])
        if recent_psnr < earlier_psnr - config.drop_db:
            return f"training PSNR {earlier_psnr:.1f} → {recent_psnr:.1f} dB"
        recent_opacity, earlier_opacity = opacities[-config.window:].mean(), np.median(opacities[:-config.window])
        if recent_opacity < config.opacity_ratio * earlier_opacity:
            return f"mean rendered opacity {earlier_opacity:.3f} → {recent_opacity:.2g}: the field emptied"
        return None

    def due(self, step: int) -> bool:
        """Whether to take a snapshot at `step`."""
        return not self.snapshots or step - self.snapshots[-1].step >= self.config.snapshot_every

    def snapshot(self, step: int, tensors: dict[str, Tensor]) -> None:
        # in host memory: with the fast preset's mouth planes, model and Adam moments are ~0.9 GB a snapshot
        self.snapshots.append(Snapshot(step, {name: value.detach().to("cpu", copy=True)
                                              for name, value in tensors.items()}))

    def rollback(self, step: int, reason: str) -> Snapshot:
        """The snapshot to return to (its tensors are clones, safe to load); raises `TrainingDiverged` when the
        rollbacks are used up or nothing was saved yet."""
        if self.rollbacks >= self.config.max_rollbacks or not self.snapshots:
            raise TrainingDiverged(f"training collapsed at step {step} ({reason}) after {self.rollbacks} rollback(s) "
                                   f"with the learning rates down to {self.lr_scale:g}×; lower the learning rates "
                                   "or resume from an earlier checkpoint")
        self.rollbacks += 1
        self.psnr.clear()
        target = self.snapshots[0]
        self.snapshots.clear()
        self.snapshots.append(target)  # a second collapse goes back to the same place, slower still
        return Snapshot(target.step, {name: value.clone() for name, value in target.tensors.items()})
