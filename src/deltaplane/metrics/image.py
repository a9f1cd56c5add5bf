"""Image metrics on tensors in [-1, 1] (layout [B, 3, H, W]); stateless and differentiable where it makes sense."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from deltaplane.geometry.precision import full_precision


def psnr(prediction: Float[Tensor, "B C H W"], target: Float[Tensor, "B C H W"],
         mask: Float[Tensor, "B 1 H W"] | None = None) -> Float[Tensor, " B"]:
    """Per-image PSNR in dB for images in [-1, 1] (peak-to-peak 2, i.e. the usual PSNR of [0, 1] images).

    With a mask, the mean squared error runs over the masked pixels only. Identical images give +inf.
    """
    error = (prediction.float() - target.float()).square()
    if mask is None:
        mse = error.flatten(1).mean(1)
    else:
        weights = mask.float().expand_as(error)
        mse = (error * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1e-8)
    return 10.0 * torch.log10(4.0 / mse)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2.0
    kernel = torch.exp(-coords.square() / (2.0 * sigma**2))
    return kernel / kernel.sum()


@full_precision  # var = E[x²] − μ² cancels to noise in bf16: under autocast SSIM read 0.37 low (run 49)
def ssim(prediction: Float[Tensor, "B C H W"], target: Float[Tensor, "B C H W"], window: int = 11,
         sigma: float = 1.5) -> Float[Tensor, " B"]:
    """Per-image SSIM (Wang et al. 2004: 11×11 Gaussian window σ 1.5, K1 0.01, K2 0.03) on [0, 1]-scaled images,
    averaged over channels and valid (unpadded) positions, as skimage's `structural_similarity(gaussian_weights=True)`.
    """
    x = (prediction.float() + 1.0) / 2.0
    y = (target.float() + 1.0) / 2.0
    channels = x.shape[1]
    kernel_1d = _gaussian_window(window, sigma, x.device)
    kernel = (kernel_1d[:, None] * kernel_1d[None, :]).expand(channels, 1, window, window)

    def blur(image: Tensor) -> Tensor:
        return F.conv2d(image, kernel, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)
