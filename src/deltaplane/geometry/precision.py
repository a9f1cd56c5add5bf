"""Geometry runs at its inputs' precision, never at autocast's (`full_precision`).

Under bf16 autocast (the trainer's default on CUDA) every matmul is cast down to bf16, whose 8-bit mantissa moves a
ray's direction by up to ~2 render pixels sideways at the face and rounds neighbouring pixels' rays alike in runs,
so the field learns from rays that stripe across the image and that the fp32 renders of evaluation and inference
never cast (docs/sharpness.md, "Rays in bf16"). Camera matrices, rays and projections are a few small matmuls a
step, so fp32 costs little. The lip mode's audio → lip regressions use it for the same reason
(`models.triplane_talker.TriplaneTalker.predicted_lips`), and SSIM (`metrics.image.ssim`), whose local variances
are differences of near-equal blurs that bf16 rounds to noise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")


def full_precision(function: Callable[Parameters, Result]) -> Callable[Parameters, Result]:
    """`function` with autocast off on CPU and CUDA: its tensors keep the dtype they come in (fp32 stays fp32)."""

    @functools.wraps(function)
    def wrapped(*args: Parameters.args, **kwargs: Parameters.kwargs) -> Result:
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return function(*args, **kwargs)

    return wrapped
