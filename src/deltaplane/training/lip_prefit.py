"""Fitting the audio → lip vector regressions before the renderer trains (`TrainConfig.lip_prefit_steps`).

In lip mode the renderer is taught with the tracked mouths, and the regressions, which have a target of their own,
only drive it at inference. Inside a run of minutes they get the renderer's step count, about 1,200 steps in a
7-minute call, and on macron_fr_50s that leaves their test-split lip correlation at 0.56 where 3,000 steps more
reach 0.66 (docs/lip-motion.md "The regressions fitted first"). Here they train alone (no rendering: four small
audio encoders a step), with an Adam of their own, and the training then goes on from the fitted weights.
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm import tqdm

from deltaplane.data.dataset import ClipData, lip_frames
from deltaplane.devices import host_to_device
from deltaplane.models.triplane_talker import TriplaneTalker


def prefit_lips(model: TriplaneTalker, clip: ClipData, steps: int, lr: float, batch: int, seed: int,
                audio_versions: Float[Tensor, "versions frames window features"] | None = None,
                progress: bool = False) -> list[float]:
    """Train `model`'s lip regressions alone for `steps` steps of `batch` frames each (each regression its own
    frames, from one audio version a step: the clip's or one of `audio_versions`, its speaker-augmented copies),
    as `TriplaneTalker.lip_regression_error` scores them in training. Draws from a generator of its own (`seed`),
    so the renderer's training draws what it would without the prefit. Returns each step's loss."""
    regressions = model.lip_regressions()
    parameters = [p for encoder, head in regressions for p in (*encoder.parameters(), *head.parameters())]
    device = clip.mouth_shapes.device
    optimizer = torch.optim.Adam(parameters, lr=lr, fused=device.type == "cuda")  # one kernel group a step
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in tqdm(range(steps), disable=not progress, desc="lip prefit", unit="step"):
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
    return torch.stack(losses).tolist() if losses else []
