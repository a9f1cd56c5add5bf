"""Loss maths (pure functions); models assemble the named, weighted terms."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def l1(prediction: Float[Tensor, "..."], target: Float[Tensor, "..."]) -> Float[Tensor, ""]:
    return (prediction.float() - target.float()).abs().mean()


def _masked_channel_mean(errors: Float[Tensor, "B C H W"], mask: Bool[Tensor, "B 1 H W"]) -> Float[Tensor, ""]:
    weights = mask.float().expand_as(errors)
    return (errors * weights).sum() / weights.sum().clamp_min(1.0)


def masked_mse(prediction: Float[Tensor, "B C H W"], target: Float[Tensor, "B C H W"],
               mask: Bool[Tensor, "B 1 H W"]) -> Float[Tensor, ""]:
    """Mean squared error over masked pixels and channels (Talk3D's mouth term); 0 when the mask is empty."""
    return _masked_channel_mean((prediction.float() - target.float()).square(), mask)


def opacity_bce(alpha: Float[Tensor, "B 1 H W"], target: Float[Tensor, "B 1 H W"], eps: float = 1e-4
                ) -> Float[Tensor, ""]:
    """Mean binary cross-entropy of opacities in [0, 1] against soft targets (written out: autocast refuses
    `F.binary_cross_entropy`); opacities are clamped to [eps, 1 − eps] so that the log stays finite."""
    alpha, target = alpha.float().clamp(eps, 1 - eps), target.float()
    return -(target * alpha.log() + (1 - target) * (1 - alpha).log()).mean()


def plane_total_variation(planes: Float[Tensor, "B 3 C H W"]) -> Float[Tensor, ""]:
    """Mean absolute difference of neighbouring plane texels: keeps unseen regions smooth."""
    planes = planes.float()
    return ((planes[..., 1:, :] - planes[..., :-1, :]).abs().mean()
            + (planes[..., :, 1:] - planes[..., :, :-1]).abs().mean())


def masked_x_variation(plane: Float[Tensor, "B C H W"], mask: Float[Tensor, "H W"], weights: Float[Tensor, " B"]
                       ) -> Float[Tensor, ""]:
    """Mean absolute difference of texels neighbouring along the plane's columns (W), over channels and the texel
    pairs `mask` holds (weights in [0, 1], multiplied), per frame; the batch mean of those, each frame scaled by
    its weight: the x-periodic patterns a frame's plane draws inside a region."""
    pairs = mask[:, 1:] * mask[:, :-1]
    plane = plane.float()
    variation = ((plane[..., 1:] - plane[..., :-1]).abs().mean(1) * pairs).sum((-2, -1)) / pairs.sum().clamp_min(1e-6)
    return (variation * weights).mean()


def plane_symmetry(planes: Float[Tensor, "B 3 C H W"]) -> Float[Tensor, ""]:
    """Left–right symmetry of the scene (x → −x). Plane (x, y) and (x, z) carry x on their width axis; the (z, y)
    plane has no x and is symmetric by construction. A decoder without positional input then decodes mirrored
    points identically."""
    planes = planes.float()
    xy, xz = planes[:, 0], planes[:, 1]
    return (xy - xy.flip(-1)).abs().mean() + (xz - xz.flip(-1)).abs().mean()


def row_mean(values: Float[Tensor, "B P"], valid: Bool[Tensor, "B P"]) -> Float[Tensor, "B 1"]:
    """Each row's mean over its valid entries (0 for a row without any), in float32."""
    weights = valid.float()
    return (values.float() * weights).sum(-1, keepdim=True) / weights.sum(-1, keepdim=True).clamp_min(1.0)


def offset_depth_l1(predicted: Float[Tensor, "B P"], target: Float[Tensor, "B P"], valid: Bool[Tensor, "B P"],
                    centres: tuple[Float[Tensor, "B 1"], Float[Tensor, "B 1"]]) -> Float[Tensor, ""]:
    """L1 of depths measured from a per-frame centre in each (`centres`: predicted's, target's). Mean over all
    valid points; 0 when there are none."""
    error = ((predicted.float() - centres[0]) - (target.float() - centres[1])).abs()
    weights = valid.float()
    return (error * weights).sum() / weights.sum().clamp_min(1.0)


def relative_depth_l1(predicted: Float[Tensor, "B P"], target: Float[Tensor, "B P"], valid: Bool[Tensor, "B P"]
                      ) -> Float[Tensor, ""]:
    """Shift-invariant L1 of depths: each frame's valid points are compared after removing that frame's mean of
    each (the prior knows the shape, not the distance). Mean over all valid points; 0 when there are none."""
    return offset_depth_l1(predicted, target, valid, (row_mean(predicted, valid), row_mean(target, valid)))


def masked_mean(values: Float[Tensor, "B 1 H W"], mask: Bool[Tensor, "B 1 H W"]) -> Float[Tensor, ""]:
    """Mean of `values` over the masked pixels; 0 when the mask is empty."""
    weights = mask.float()
    return (values.float() * weights).sum() / weights.sum().clamp_min(1.0)


def masked_l1(prediction: Float[Tensor, "B C H W"], target: Float[Tensor, "B C H W"],
              mask: Bool[Tensor, "B 1 H W"], frame_weights: Float[Tensor, " B"] | None = None) -> Float[Tensor, ""]:
    """Mean absolute error over masked pixels and channels; 0 when the mask is empty. `frame_weights` scale each
    frame's errors (a frame of weight 0 adds none, and its masked pixels still count in the mean)."""
    errors = (prediction.float() - target.float()).abs()
    if frame_weights is not None:
        errors = errors * frame_weights.float()[:, None, None, None]
    return _masked_channel_mean(errors, mask)


def laplacian_pyramid(images: Float[Tensor, "B C H W"], levels: int) -> list[Float[Tensor, "B C h w"]]:
    """`levels` band-pass images (band k = G_k − up(G_{k+1}), G_{k+1} = 2×2 average of G_k, up = nearest ×2) and the
    low-pass remainder last; their sum, each upsampled back, is the image (H and W divisible by 2^levels)."""
    bands, level = [], images.float()
    for _ in range(levels):
        smaller = torch.nn.functional.avg_pool2d(level, 2)
        bands.append(level - torch.nn.functional.interpolate(smaller, scale_factor=2, mode="nearest"))
        level = smaller
    return [*bands, level]


def laplacian_l1(prediction: Float[Tensor, "B C H W"], target: Float[Tensor, "B C H W"], levels: int = 3
                 ) -> Float[Tensor, ""]:
    """Sum over the band-pass levels of the mean L1 between the two pyramids' bands (not the low-pass remainder,
    which the plain L1 already covers). Each octave of detail counts as much as the next, whereas the plain L1 of
    the image is dominated by the low frequencies that a blurred render already gets right."""
    return sum((p - t).abs().mean() for p, t in zip(laplacian_pyramid(prediction, levels)[:-1],
                                                    laplacian_pyramid(target, levels)[:-1]))


def hinge_discriminator(real_scores: Float[Tensor, "..."], fake_scores: Float[Tensor, "..."]) -> Float[Tensor, ""]:
    """The discriminator's hinge loss (SNGAN, BigGAN): mean relu(1 − real) + mean relu(1 + fake). Scores already
    beyond the margin cost nothing, so a discriminator that is winning stops pushing its logits apart."""
    return torch.relu(1 - real_scores.float()).mean() + torch.relu(1 + fake_scores.float()).mean()


def hinge_generator(fake_scores: Float[Tensor, "..."]) -> Float[Tensor, ""]:
    """The generator's side of the hinge loss: −mean score of its images (it gains by looking more real)."""
    return -fake_scores.float().mean()
