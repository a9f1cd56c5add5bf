"""Per-frame registration of the renders during training (issue 10): a learned sub-pixel shift for each training
frame, by which the render is moved before it is compared with the frame.

The frames are aligned by a similarity fitted to detected landmarks and smoothed over time (`preprocess.align`),
and the cameras follow smoothed head angles. That leaves the face jittering by about a pixel from frame to frame
(docs/sharpness.md "Registration": the aligned eye–nose region, against the clip's median frame, moves 0.6–1.2 px
from one frame to the next on obama_20s and macron_fr_50s). A field fitted to frames that jitter by a pixel draws
their average, a face blurred by about that much (the truth blurred by σ = 1 px keeps 0.32 of its sharpness). Here
each training frame's render is translated by its own shift (x, y), learned with the renderer, exactly (a phase ramp
in the Fourier domain, no interpolation blur). Rendering never uses the shifts: the field learns the face where the
smooth cameras put it, and the shifts take up the jitter. Their mean over the training frames is held at 0, so they
cannot drift the whole picture against the cameras.

Checkpoints keep the shifts and their Adam moments in training_state.safetensors (`registration.shifts`,
`optim.registration.shifts.*`), so `--resume` continues exactly; rendering never reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from deltaplane import checkpoint
from deltaplane.structs import RenderOutput

SHIFTS = "registration.shifts"
"""Name of the shift table in a checkpoint's training state (its Adam moments: `optim.` + this)."""


@dataclass(frozen=True)
class RegistrationConfig:
    """The per-frame shifts (`max_shift` 0: off, nothing is built)."""

    max_shift: float = 0.0
    """Largest shift along each axis, in pixels of the output image."""
    lr: float = 0.05
    """Learning rate of the shifts, in pixels. Sparse Adam moves a frame's shift only in the steps that draw it, by
    about 1–5× this each time: a pixel within the ~5 draws a 1,000-frame clip gets in 1,300 steps of 4 frames."""
    start: int = 200
    """The renders are shifted from this step on, once the field has drawn a face for the shifts to register."""


def fourier_shift(images: Float[Tensor, "B C H W"], shifts: Float[Tensor, "B 2"]) -> Float[Tensor, "B C H W"]:
    """`images` translated by `shifts` (x, y) pixels (+x right, +y down), computed in float32 as a phase ramp on the
    2-D spectrum: exact for a band-limited image, periodic at the borders (what leaves one side comes in at the
    other; a few pixels of background at these shifts). Integer shifts equal `torch.roll`."""
    height, width = images.shape[-2:]
    with torch.autocast(images.device.type, enabled=False):
        spectrum = torch.fft.rfft2(images.float())
        rows = torch.fft.fftfreq(height, device=images.device)[:, None]  # cycles per pixel
        columns = torch.fft.rfftfreq(width, device=images.device)[None, :]
        cycles = columns * shifts[:, 0, None, None].float() + rows * shifts[:, 1, None, None].float()  # [B, H, W']
        ramp = torch.polar(torch.ones_like(cycles), -2 * math.pi * cycles)
        moved = torch.fft.irfft2(spectrum * ramp[:, None], s=(height, width))
    return moved.to(images.dtype)


def shift_output(output: RenderOutput, shifts: Float[Tensor, "B 2"]) -> RenderOutput:
    """`output`'s images (both resolutions) moved by `shifts` (pixels of the output image)."""
    raw_scale = output.rgb_raw.shape[-1] / output.rgb.shape[-1]
    return replace(output, rgb=fourier_shift(output.rgb, shifts),
                   rgb_raw=fourier_shift(output.rgb_raw, shifts * raw_scale))


class FrameRegistration:
    """The shift table [frames, 2] (pixels of the output image) with its own sparse Adam."""

    def __init__(self, config: RegistrationConfig, num_frames: int, device: torch.device) -> None:
        self.config = config
        self.shifts = torch.nn.Parameter(torch.zeros(num_frames, 2, device=device))
        self.optimizer = torch.optim.SparseAdam([self.shifts], lr=config.lr)

    def active(self, step: int) -> bool:
        return step >= self.config.start

    def lookup(self, positions: Int[Tensor, " B"]) -> Float[Tensor, "B 2"]:
        """The shifts of the training frames at `positions`, whose gradient reaches these rows only (sparse: looked
        up outside a compiled step, whose backward cannot hold a sparse tensor)."""
        return F.embedding(positions, self.shifts, sparse=True)

    def step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """One sparse Adam step of the shifts that got a gradient (through `scaler` when the loss was scaled, before
        its `update`), then the table re-centred on 0 and clamped."""
        if self.shifts.grad is None:
            return
        if scaler is not None:
            scaler.step(self.optimizer)
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.shifts.sub_(self.shifts.mean(0)).clamp_(-self.config.max_shift, self.config.max_shift)

    def scalars(self) -> dict[str, Tensor]:
        """For the log: the shifts' root mean square along x and y (pixels)."""
        rms = self.shifts.detach().square().mean(0).sqrt()
        return {"registration/rms_x": rms[0], "registration/rms_y": rms[1]}

    def state_tensors(self) -> dict[str, Tensor]:
        return {SHIFTS: self.shifts.detach().clone(),
                **checkpoint.optimizer_to_tensors(self.optimizer, {id(self.shifts): SHIFTS})}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of `state_tensors`; a training state without the shifts leaves them at 0."""
        if SHIFTS not in tensors:
            return
        with torch.no_grad():
            self.shifts.copy_(tensors[SHIFTS])
        self.optimizer.state.clear()  # a rollback to a snapshot taken before any step leaves no moments behind
        checkpoint.optimizer_from_tensors(self.optimizer, {id(self.shifts): SHIFTS}, tensors)
        state = self.optimizer.state.get(self.shifts)
        if state and "step" in state:  # sparse Adam counts in a Python int: its bias correction in double precision
            state["step"] = int(state["step"])
