"""Super-resolution ×4 (128 → 512) of the volume-rendered feature image, shaped like EG3D's two-block SR, or ×2
(256 → 512, `SuperResolutionConfig.upsamplings` = 1: its second block alone).

EG3D's SuperresolutionHybrid8XDC is a StyleGAN2 modulated-conv net driven by a w code. Here the identity is learned
directly and there is no w, so this is the same topology with plain convolutions: two blocks (256², then 512²),
each upsampling its input ×2 (bilinear), applying two 3×3 conv + LeakyReLU(0.2), and adding a 1×1 ToRGB output to an
RGB skip that starts from the raw RGB and is upsampled ×2 (bilinear, EG3D uses the equivalent [1,3,3,1] filter)
at every block. The ToRGB convs start at zero, so at init the output is exactly the raw RGB upsampled ×2 twice.
`SuperResolutionConfig.input_blocks` puts residual convolutions at the input resolution in front of the blocks (an
option, not EG3D's): with one upsampling the last block's two convolutions see 5 output pixels, 2.5 rendered ones.
The output is in the range of its input RGB ([-1, 1] once the model has applied EG3D's ×2 − 1) and is not clamped.
Plain convs and interpolations only, so channels-last inputs stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from deltaplane.fields.resample import bilinear_upsample2x


@dataclass(frozen=True)
class SuperResolutionConfig:
    """Sizes of the super-resolution net (defaults: EG3D's channel widths)."""

    input_resolution: int = 128
    """Neural rendering resolution of a whole frame. The net is convolutional: any input gives 2**`upsamplings` ×
    its size (a training window renders fewer rays at the same density, `training.windows`)."""
    upsamplings: int = 2
    """×2 blocks: 2 (EG3D, 128² → 512²) or 1 (only the block at the output resolution: a 256² rendering for a 512²
    output, twice the rendered resolution per side for four times the rays)."""
    feature_channels: int = 32
    """Channels of the feature image (the first 3 are the raw RGB)."""
    block0_channels: int = 256
    """Width of the first block (at 2× the input resolution; unused with one upsampling)."""
    block1_channels: int = 128
    """Width of the last block (at the output resolution)."""
    negative_slope: float = 0.2
    """LeakyReLU slope."""
    input_blocks: int = 0
    """Residual blocks (3×3 conv → LReLU → 3×3 conv, added to their input) at the input resolution, after a 3×3
    conv + LReLU from the feature image to `input_channels`, in front of the ×2 blocks: context from which the last
    block can place detail (its own two convolutions see 5 output pixels). 0: none (EG3D's topology)."""
    input_channels: int = 64
    """Width of the input-resolution stack (with `input_blocks` > 0)."""

    def __post_init__(self) -> None:
        if self.upsamplings not in (1, 2):
            raise ValueError(f"SuperResolutionConfig.upsamplings must be 1 or 2, got {self.upsamplings}")
        if self.input_blocks < 0 or self.input_channels < 1:
            raise ValueError("SuperResolutionConfig.input_blocks must be ≥ 0 and input_channels ≥ 1, got "
                             f"{self.input_blocks} and {self.input_channels}")

    @property
    def stack_channels(self) -> int:
        """Channels the first ×2 block reads: the feature image's, or the input stack's."""
        return self.input_channels if self.input_blocks else self.feature_channels

    @property
    def scale(self) -> int:
        """Output resolution over input resolution."""
        return 2 ** self.upsamplings


TINY_SUPERRES = SuperResolutionConfig(block0_channels=16, block1_channels=8)
"""A small preset for CPU tests and quick runs."""


class SuperResolutionBlock(nn.Module):
    """×2 bilinear upsample → conv3×3 → LReLU → conv3×3 → LReLU, plus a zero-initialised ToRGB added to the
    upsampled RGB skip."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.conv0 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.torgb = nn.Conv2d(out_channels, 3, kernel_size=1)
        for conv in (self.conv0, self.conv1):
            nn.init.kaiming_normal_(conv.weight, a=negative_slope, nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.torgb.weight)
        nn.init.zeros_(self.torgb.bias)

    def forward(self, features: Float[Tensor, "batch in_channels height width"],
                rgb: Float[Tensor, "batch 3 height width"]
                ) -> tuple[Float[Tensor, "batch out_channels height2 width2"], Float[Tensor, "batch 3 height2 width2"]]:
        hidden = F.leaky_relu(self.conv0(bilinear_upsample2x(features)), self.negative_slope)
        hidden = F.leaky_relu(self.conv1(hidden), self.negative_slope)
        return hidden, bilinear_upsample2x(rgb) + self.torgb(hidden)


class InputStack(nn.Module):
    """Feature image → `input_channels` at the same resolution: a 3×3 conv + LReLU, then `input_blocks` residual
    blocks whose second conv starts at zero (each block starts as the identity, as the ToRGB convs start silent)."""

    def __init__(self, config: SuperResolutionConfig) -> None:
        super().__init__()
        self.negative_slope = config.negative_slope
        self.stem = nn.Conv2d(config.feature_channels, config.input_channels, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(
            nn.ModuleList((nn.Conv2d(config.input_channels, config.input_channels, kernel_size=3, padding=1),
                           nn.Conv2d(config.input_channels, config.input_channels, kernel_size=3, padding=1)))
            for _ in range(config.input_blocks))
        for conv in (self.stem, *(block[0] for block in self.blocks)):
            nn.init.kaiming_normal_(conv.weight, a=config.negative_slope, nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)
        for block in self.blocks:
            nn.init.zeros_(block[1].weight)
            nn.init.zeros_(block[1].bias)

    def forward(self, features: Float[Tensor, "batch feature_channels height width"]
                ) -> Float[Tensor, "batch input_channels height width"]:
        hidden = F.leaky_relu(self.stem(features), self.negative_slope)
        for conv0, conv1 in self.blocks:
            hidden = hidden + conv1(F.leaky_relu(conv0(hidden), self.negative_slope))
        return hidden


class SuperResolution(nn.Module):
    """Feature image [B, 32, 128, 128] + raw RGB [B, 3, 128, 128] → RGB [B, 3, 512, 512] (or 256² → 512² with one
    upsampling). `block1` always makes the output, so both shapes keep EG3D's parameter names."""

    def __init__(self, config: SuperResolutionConfig = SuperResolutionConfig()) -> None:
        super().__init__()
        self.config = config
        self.stack = InputStack(config) if config.input_blocks else None
        self.block0 = (SuperResolutionBlock(config.stack_channels, config.block0_channels, config.negative_slope)
                       if config.upsamplings == 2 else None)
        last_input = config.block0_channels if self.block0 is not None else config.stack_channels
        self.block1 = SuperResolutionBlock(last_input, config.block1_channels, config.negative_slope)

    def forward(self, rgb: Float[Tensor, "batch 3 height width"], features: Float[Tensor, "batch channels height width"]
                ) -> Float[Tensor, "batch 3 out_height out_width"]:
        """`rgb` is the raw RGB (in EG3D, the first 3 channels of `features`); both in the model's [-1, 1] scale."""
        hidden = features if self.stack is None else self.stack(features)
        if self.block0 is not None:
            hidden, rgb = self.block0(hidden, rgb)
        _, rgb = self.block1(hidden, rgb)
        return rgb
