"""Fitting the audio → lip vector regressions before the renderer trains (`TrainConfig.lip_prefit_steps`).

In lip mode the renderer is taught with the tracked mouths, and the regressions, which have a target of their own,
only drive it at inference. Inside a run of minutes they get the renderer's step count, about 1,200 steps in a
7-minute call, and on macron_fr_50s that leaves their test-split lip correlation at 0.56 where 3,000 steps more
reach 0.66 (docs/lip-motion.md "The regressions fitted first"). Here they train alone (no rendering: four small
audio encoders a step), with an Adam of their own, and the training then goes on from the fitted weights.

How long to fit depends on the clip: on the 18-s obama_20s the regressions over-fit (on the CPU, 1,000 prefit steps
and the 1,200 of a GPU call leave the fitted frames' correlation at 0.99 and the held-out calibration blocks' at
0.25, against 0.91 and 0.51 without the prefit) and the rendered mouth swings less, on the 50-s macron_fr_50s they
under-fit without it (docs/lip-motion.md "Run 50"). With `patience` the prefit
watches the calibration blocks, which it never learns from, and stops where their error stopped falling, keeping
the weights of the best check; with `min_gain` it undoes itself where that best is hardly better than the untrained
regressions (obama_20s: 7 % lower on an H100, against macron_fr_50s's 28 %; docs/lip-motion.md "Run 51").
"""

from __future__ import annotations

import dataclasses
import math

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm import tqdm

from deltaplane.data.dataset import ClipData, lip_frames
from deltaplane.devices import host_to_device
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.training.evaluation import lip_fit

CHECK_EVERY = 100
"""Prefit steps between two looks at the calibration blocks' error (`prefit_lips`' `patience`)."""


@dataclasses.dataclass(frozen=True)
class PrefitLog:
    """What `prefit_lips` did: each step's loss, the calibration blocks' error at each check (step, error), and the
    step whose weights it kept (the last, or the best check's with `patience`)."""
    losses: list[float]
    held_out: list[tuple[int, float]]
    kept_step: int

    @property
    def best_held_out(self) -> float:
        """The calibration blocks' lowest error over the checks (NaN without checks)."""
        return min((error for _, error in self.held_out), default=math.nan)

    def describe(self) -> str:
        """One line for the user: how long it ran, and what it kept or undid, with the calibration blocks' error."""
        if not self.losses:
            return "lip prefit: skipped (no calibration block in the training frames to check it on)"
        ran = f"lip prefit: {len(self.losses)} steps"
        if not self.held_out:
            return ran
        first, best = self.held_out[0][1], self.best_held_out
        errors = f"held-out lip error {first:.3f} -> {best:.3f}" + (f", {best / first - 1:+.0%}" if first else "")
        if self.kept_step == 0:
            return f"{ran}, undone: {errors} at best, too little to trust; the renderer trains without it"
        return f"{ran}, kept step {self.kept_step}'s regressions ({errors})"


def prefit_lips(model: TriplaneTalker, clip: ClipData, steps: int, lr: float, batch: int, seed: int,
                audio_versions: Float[Tensor, "versions frames window features"] | None = None,
                progress: bool = False, patience: int = 0, min_gain: float = 0.0) -> PrefitLog:
    """Train `model`'s lip regressions alone for up to `steps` steps of `batch` frames each (each regression its own
    frames, from one audio version a step: the clip's or one of `audio_versions`, its speaker-augmented copies),
    as `TriplaneTalker.lip_regression_error` scores them in training. Draws from a generator of its own (`seed`),
    so the renderer's training draws what it would without the prefit. With `patience` > 0 (and calibration blocks
    in the clip), every CHECK_EVERY steps it scores the calibration blocks (the raw regressions' `lip_error` of
    `training.evaluation.lip_fit`: what `TriplaneTalker.lip_regression_error` leaves out), stops once `patience`
    checks in a row found no lower error than the best, and puts back the best check's weights (step 0's, the
    untrained regressions', count as the first check). With `min_gain` (and `patience`), a best that lowered step 0's
    error by less than that share does not count: step 0's weights return, and the prefit is undone; a clip without
    calibration blocks (training frames before the first block's end: 10 s at the defaults) cannot show that gain,
    so there it does not run."""
    held_out = torch.nonzero(model.lips.held_out(clip.indices))[:, 0]
    if patience > 0 and min_gain > 0 and len(held_out) == 0:
        return PrefitLog([], [], 0)
    regressions = model.lip_regressions()
    parameters = [p for encoder, head in regressions for p in (*encoder.parameters(), *head.parameters())]
    device = clip.mouth_shapes.device
    optimizer = torch.optim.Adam(parameters, lr=lr, fused=device.type == "cuda")  # one kernel group a step
    generator = torch.Generator().manual_seed(seed)
    watch = patience > 0 and len(held_out) > 0
    checks: list[tuple[int, float]] = []
    best, best_step, kept = math.inf, 0, None

    def check(step: int) -> bool:
        """Score the calibration blocks at `step`; whether to stop."""
        nonlocal best, best_step, kept
        checks.append((step, lip_fit(model, clip, held_out, calibrated=False)["lip_error"]))
        if checks[-1][1] < best:
            best, best_step, kept = checks[-1][1], step, [p.detach().clone() for p in parameters]
        return step - best_step >= patience * CHECK_EVERY

    if watch:
        check(0)
        untrained = kept
    losses = []
    for step in tqdm(range(1, steps + 1), disable=not progress, desc="lip prefit", unit="step"):
        source = clip
        if audio_versions is not None:
            version = int(torch.randint(audio_versions.shape[0], (1,), generator=generator))
            source = dataclasses.replace(clip, audio_features=audio_versions[version])
        frames = [lip_frames(source, host_to_device(torch.randint(len(clip), (batch,), generator=generator), device))
                  for _ in regressions]
        loss = model.lip_regression_error(frames)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        if watch and step % CHECK_EVERY == 0 and check(step):
            break
    if watch:
        if len(losses) % CHECK_EVERY:  # the steps after the last check
            check(len(losses))
        if best > (1 - min_gain) * checks[0][1]:  # too little held-out gain to trust over the audio's mean mouth
            best_step, kept = 0, untrained
        with torch.no_grad():
            for parameter, value in zip(parameters, kept):
                parameter.copy_(value)
    return PrefitLog(torch.stack(losses).tolist() if losses else [], checks, best_step if watch else len(losses))
