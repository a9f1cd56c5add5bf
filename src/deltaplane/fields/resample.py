"""×2 resampling of images and planes [B, C, H, W] with shifted slices: elementwise work that fuses under
torch.compile, where the equivalent (transposed) convolutions run as slow direct cuDNN kernels and interpolate's
backward is an index_put accumulation (docs/performance.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def downsample2x(x: Float[Tensor, "batch channels height width"]) -> Float[Tensor, "batch channels half_h half_w"]:
    """upfirdn2d.downsample2d with the [1,3,3,1] filter (gain 1): pad 1, filter, keep every second sample.

    Per axis y[m] = (x[2m−1] + 3·x[2m] + 3·x[2m+1] + x[2m+2]) / 8 with zeros outside, computed with strided slices:
    no filter tensor to build (building one on the host made every training step wait for the device).
    """
    return _downsample2x_axis(_downsample2x_axis(x, -2), -1)


def _downsample2x_axis(x: Tensor, dim: int) -> Tensor:
    """The [1,3,3,1] / 8 filter and ×2 decimation along `dim` (−1 or −2), zero padded by 1 on each side."""
    padded = F.pad(x, (1, 1) if dim == -1 else (0, 0, 1, 1))
    length = (x.shape[dim] - 2) // 2 + 1  # conv2d's output size for kernel 4, stride 2, padding 1
    every_second = (slice(None),) * (padded.dim() + dim) + (slice(None, None, 2),)
    taps = [padded.narrow(dim, start, 2 * length - 1)[every_second] for start in range(4)]
    return (taps[0] + 3 * taps[1] + 3 * taps[2] + taps[3]) / 8


def upsample2x(x: Float[Tensor, "batch channels height width"]) -> Float[Tensor, "batch channels double_h double_w"]:
    """upfirdn2d.upsample2d with the [1,3,3,1] filter (gain 4): zero insertion, pad (2, 1), filter.

    Per axis that is the two-phase sum y[2m] = (x[m−1] + 3·x[m]) / 4, y[2m+1] = (3·x[m] + x[m+1]) / 4 with zeros
    outside.
    """
    return _upsample2x_axis(_upsample2x_axis(x, -2), -1)


def bilinear_upsample2x(x: Float[Tensor, "batch channels height width"]
                        ) -> Float[Tensor, "batch channels double_h double_w"]:
    """×2 bilinear upsampling with align_corners=False (the super-resolution's), i.e. `upsample2x`'s two-phase sum
    with the edge sample repeated outside instead of zeros.

    Eager it is `F.interpolate`: one operation, and the eager training step is bound by how many operations the
    host issues (docs/performance.md). Under torch.compile it is the shifted slices, which fuse; inductor's CPU code
    for interpolate's backward (an index_put accumulation) summed its zero-initialised buffers before the
    accumulation ran, so a compiled training step lost the first super-resolution block's ToRGB gradient
    (`scripts/inductor_upsample_case.py`).
    """
    if torch.compiler.is_compiling():
        return _upsample2x_axis(_upsample2x_axis(x, -2, repeat_edge=True), -1, repeat_edge=True)
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _upsample2x_axis(x: Tensor, dim: int, repeat_edge: bool = False) -> Tensor:
    """The two-phase ×2 upsampling along `dim` (−1 or −2), with zeros (upfirdn) or the edge sample (bilinear)
    outside."""
    length = x.shape[dim]
    if repeat_edge:  # a concatenation: inductor mis-strides replication_pad2d's backward for channels-last inputs
        padded = torch.cat((x.narrow(dim, 0, 1), x, x.narrow(dim, length - 1, 1)), dim)
    else:
        padded = F.pad(x, (1, 1) if dim == -1 else (0, 0, 1, 1))
    before, centre, after = (padded.narrow(dim, start, length) for start in (0, 1, 2))
    even, odd = 0.25 * before + 0.75 * centre, 0.75 * centre + 0.25 * after
    return torch.stack((even, odd), dim=dim).flatten(dim - 1, dim)  # interleave: …, y[2m], y[2m+1], …
