"""Building blocks of the deltaplane predictor (spec §5.2–5.4), assembled in `fields/deltaplane.py`.

Planes travel as [B, 3, C, H, W] (plane k = (x,y), (x,z), (z,y), docs/conventions.md). "Per plane" layers hold
separate weights for each of the three planes but run as one batched op: grouped convolutions (groups=3) for the
conv blocks, a [3, out, in] weight for the linear layers.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from deltaplane.fields.resample import downsample2x, upsample2x

NUM_PLANES = 3
LEAKY_SLOPE = 0.01
"""Negative slope of the conv blocks' LeakyReLU (torch's default, as in the official blocks)."""
GROUP_NORM_GROUPS = 32
"""Groups per plane of the GroupNorms (reduced to gcd(32, channels) for narrow tiny presets)."""

BlockNorm = Literal["batch", "group"]
BlockOutput = Literal["norm_act", "zero_linear", "zero_norm_act"]


def roll_out(planes: Float[Tensor, "batch 3 channels size size"]) -> Float[Tensor, "batch 3 rolled size size"]:
    """Mimic3D "3D-aware" roll-out: each plane gets the axis-pooled features of the other two (rolled = 3·channels).

    With A(P)[i, j] = mean_h P[h, i] and B(P)[i, j] = mean_w P[j, w]:
    out0 = [P0, A(P1), B(P2)], out1 = [B(P0), P1, A(P2)], out2 = [A(P0), B(P1), P2], concatenated on channels.
    This is the official index layout (spec §5.2), kept as is: it was written for EG3D's plane order, so under our
    (x,y), (x,z), (z,y) axes only some of the pooled axes line up geometrically; the convolutions learn around it.
    """
    size = planes.shape[-1]
    if planes.shape[-2] != size:
        raise ValueError(f"roll_out needs square planes, got {tuple(planes.shape[-2:])}")
    column_mean = planes.mean(dim=-2)  # [B, 3, C, W]: mean over rows h
    row_mean = planes.mean(dim=-1)  # [B, 3, C, H]: mean over columns w
    pooled_a = column_mean.unsqueeze(-1).expand(*column_mean.shape, size)  # [B, 3, C, H, W]: A[i, j] = col_mean[i]
    pooled_b = row_mean.unsqueeze(-2).expand(*row_mean.shape[:-1], size, size)  # [B, 3, C, H, W]: B[i, j] = row_mean[j]
    own, a, b = planes.unbind(1), pooled_a.unbind(1), pooled_b.unbind(1)
    return torch.stack((torch.cat((own[0], a[1], b[2]), dim=1),
                        torch.cat((b[0], own[1], a[2]), dim=1),
                        torch.cat((a[0], b[1], own[2]), dim=1)), dim=1)


def _plane_norm(kind: BlockNorm, channels: int) -> nn.Module:
    """A norm over the stacked planes [B, 3·C, H, W] whose statistics and affine never mix planes."""
    if kind == "batch":
        return nn.BatchNorm2d(NUM_PLANES * channels)
    groups = math.gcd(GROUP_NORM_GROUPS, channels)
    return nn.GroupNorm(NUM_PLANES * groups, NUM_PLANES * channels)


class SplitBlock(nn.Module):
    """Per-plane conv block ("split convolution", separate weights per plane) on rolled-out planes.

    Conv3×3 → norm → LeakyReLU(0.01) → Conv3×3 → [output] → resample ×2 with the [1,3,3,1] filter. `output`:
    * "norm_act": norm → LeakyReLU (every hidden block, as in the official SynthesisBlock_noaffine);
    * "zero_linear": nothing; the second conv (with bias) starts at 0, so the block outputs exactly 0 at init;
    * "zero_norm_act": norm → LeakyReLU with the norm's scale γ starting at 0 (and β = 0): exactly 0 at init.
    The convolutions feeding a norm have no bias (the norm's β replaces it; a bias there gets no gradient).
    """

    def __init__(self, in_channels: int, out_channels: int, resample: Literal["down", "up"], norm: BlockNorm,
                 output: BlockOutput = "norm_act") -> None:
        super().__init__()
        self.resample = resample
        linear_output = output == "zero_linear"
        self.conv0 = nn.Conv2d(NUM_PLANES * in_channels, NUM_PLANES * out_channels, 3, padding=1,
                               groups=NUM_PLANES, bias=False)
        self.hidden = nn.Sequential(_plane_norm(norm, out_channels), nn.LeakyReLU(LEAKY_SLOPE))
        self.conv1 = nn.Conv2d(NUM_PLANES * out_channels, NUM_PLANES * out_channels, 3, padding=1,
                               groups=NUM_PLANES, bias=linear_output)
        self.output = (nn.Identity() if linear_output
                       else nn.Sequential(_plane_norm(norm, out_channels), nn.LeakyReLU(LEAKY_SLOPE)))
        if linear_output:
            nn.init.zeros_(self.conv1.weight)
            nn.init.zeros_(self.conv1.bias)
        elif output == "zero_norm_act":
            nn.init.zeros_(self.output[0].weight)

    def forward(self, planes: Float[Tensor, "batch 3 in_channels height width"]
                ) -> Float[Tensor, "batch 3 out_channels new_height new_width"]:
        batch, num_planes, channels, height, width = planes.shape
        x = planes.reshape(batch, num_planes * channels, height, width)  # [B, 3·Cin, H, W]: plane k at k·Cin…
        x = self.output(self.conv1(self.hidden(self.conv0(x))))  # [B, 3·Cout, H, W]
        x = downsample2x(x) if self.resample == "down" else upsample2x(x)
        return x.reshape(batch, num_planes, -1, *x.shape[-2:])  # [B, 3, Cout, H', W']


class PlaneLinear(nn.Module):
    """Per-plane linear layer on [B, 3, N, in] tokens: weight [3, out, in], initialised like nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(NUM_PLANES, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(NUM_PLANES, 1, out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Float[Tensor, "batch 3 tokens in_features"]) -> Float[Tensor, "batch 3 tokens out_features"]:
        out = torch.einsum("bpni,poi->bpno", x, self.weight)
        return out if self.bias is None else out + self.bias


class PlaneLayerNorm(nn.Module):
    """Per-plane LayerNorm over the last axis of [B, 3, N, dim] tokens (eps 1e-5, affine [3, dim])."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(NUM_PLANES, 1, dim))
        self.bias = nn.Parameter(torch.zeros(NUM_PLANES, 1, dim))

    def forward(self, x: Float[Tensor, "batch 3 tokens dim"]) -> Float[Tensor, "batch 3 tokens dim"]:
        return F.layer_norm(x, x.shape[-1:], eps=1e-5) * self.weight + self.bias


def triplane_positional_encoding(resolution: int, dim: int) -> Float[Tensor, "3 tokens dim"]:
    """Fixed 3D sinusoidal encoding sliced through the volume centre, one [res², dim] map per plane (spec §5.3).

    The volume encoding (as `positional-encodings` PositionalEncoding3D): per axis 2·⌈dim/6⌉ channels of interleaved
    sin/cos at integer positions with frequencies 10000^(−2k/axis_channels); channel blocks x | y | z, truncated to
    `dim` (86 | 86 | 84 for dim 256). Plane 0 is the volume averaged over z ∈ {res/2 − 1, res/2} laid out [x, y],
    plane 1 averaged over x laid out [y, z], plane 2 averaged over y laid out [x, z] (row-major tokens, first
    index = row), as the official slicing does.
    """
    axis_channels = 2 * math.ceil(dim / 6)
    inv_freq = 10000.0 ** (-torch.arange(0, axis_channels, 2, dtype=torch.float64) / axis_channels)
    phase = torch.arange(resolution, dtype=torch.float64)[:, None] * inv_freq  # [R, A/2]
    axis = torch.stack((phase.sin(), phase.cos()), dim=-1).flatten(-2)  # [R, A]: sin, cos interleaved
    shape = (resolution, resolution, axis_channels)
    centre = axis[resolution // 2 - 1: resolution // 2 + 1].mean(0).expand(shape)  # [R, R, A]: constant
    along_rows = axis[:, None].expand(shape)  # [R, R, A]: varies with the row index
    along_cols = axis[None, :].expand(shape)  # [R, R, A]: varies with the column index
    xy = torch.cat((along_rows, along_cols, centre), dim=-1)  # x rows, y columns, z at the centre
    yz = torch.cat((centre, along_rows, along_cols), dim=-1)  # y rows, z columns, x at the centre
    xz = torch.cat((along_rows, centre, along_cols), dim=-1)  # x rows, z columns, y at the centre
    planes = torch.stack((xy, yz, xz))[..., :dim]  # [3, R, R, dim]
    return planes.reshape(NUM_PLANES, resolution * resolution, dim).float()  # [3, R², dim]
