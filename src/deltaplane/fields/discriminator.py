"""PatchGAN discriminator (pix2pix's N-layer "PatchGAN"): image crops → a map of real/fake scores, one per
overlapping patch of its receptive field.

Every convolution is spectrally normalised (SNGAN) and there is no batch or instance norm: each layer is then about
1-Lipschitz, so the score moves at most in proportion to the pixels, which bounds the gradient the renderer gets
from it whatever the discriminator has learned, and the score of a crop does not depend on the others in its batch.
It is trained from scratch (`training.adversarial`); nothing pretrained is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class PatchDiscriminatorConfig:
    """Sizes of the patch discriminator (defaults: pix2pix's 70×70 PatchGAN, narrower at the top)."""

    channels: int = 64
    """Width of the first layer; each downsampling layer doubles it, up to `max_channels`."""
    max_channels: int = 256
    """Widest layer."""
    downsamplings: int = 3
    """Stride-2 4×4 convolutions before the two stride-1 ones: 3 gives each score a 70-px receptive field, 2 a 34-px
    one, 1 a 16-px one. Crops must be at least 3·2^downsamplings pixels wide."""
    negative_slope: float = 0.2
    """LeakyReLU slope."""

    @property
    def min_crop(self) -> int:
        """Narrowest input that still leaves one score (4×4 stride-1 convolutions with padding 1 shrink by 1)."""
        return 3 * 2**self.downsamplings


class PatchDiscriminator(nn.Module):
    """RGB crops [N, 3, S, S] in [-1, 1] → scores [N, 1, s, s] (unbounded logits; higher = more real)."""

    def __init__(self, config: PatchDiscriminatorConfig = PatchDiscriminatorConfig()) -> None:
        super().__init__()
        self.config = config
        widths = [3] + [min(config.channels * 2**i, config.max_channels) for i in range(config.downsamplings + 1)]
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            stride = 2 if index < config.downsamplings else 1
            layers += [spectral_norm(nn.Conv2d(width_in, width_out, kernel_size=4, stride=stride, padding=1)),
                       nn.LeakyReLU(config.negative_slope)]
        layers.append(spectral_norm(nn.Conv2d(widths[-1], 1, kernel_size=4, stride=1, padding=1)))
        self.layers = nn.Sequential(*layers)

    def forward(self, crops: Float[Tensor, "N 3 S S"]) -> Float[Tensor, "N 1 s s"]:
        return self.layers(crops)

    def features(self, crops: Float[Tensor, "N 3 S S"]) -> list[Float[Tensor, "N c h w"]]:
        """The activations after each LeakyReLU (the hidden layers'), then the scores: what pix2pixHD's feature
        matching compares between rendered and true crops."""
        outputs, hidden = [], crops
        for layer in self.layers:
            hidden = layer(hidden)
            if isinstance(layer, nn.LeakyReLU):
                outputs.append(hidden)
        return [*outputs, hidden]
