"""Loss maths (pure functions); models assemble the named, weighted terms."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def l1(prediction: Float[Tensor, "..."], target: Float[Tensor, "..."]) -> Float[Tensor, ""]:
    return (prediction.float() - target.float()).abs().mean()


def masked_mse(prediction: Float[Tensor, "B C H W"], target: Float[Tensor, "B C H W"],
               mask: Bool[Tensor, "B 1 H W"]) -> Float[Tensor, ""]:
    """Mean squared error over masked pixels and channels (Talk3D's mouth term); 0 when the mask is empty."""
    weights = mask.float().expand_as(prediction)
    return ((prediction.float() - target.float()).square() * weights).sum() / weights.sum().clamp_min(1.0)


def plane_total_variation(planes: Float[Tensor, "B 3 C H W"]) -> Float[Tensor, ""]:
    """Mean absolute difference of neighbouring plane texels: keeps unseen regions smooth."""
    planes = planes.float()
    return ((planes[..., 1:, :] - planes[..., :-1, :]).abs().mean()
            + (planes[..., :, 1:] - planes[..., :, :-1]).abs().mean())


def plane_symmetry(planes: Float[Tensor, "B 3 C H W"]) -> Float[Tensor, ""]:
    """Left–right symmetry of the scene (x → −x). Plane (x, y) and (x, z) carry x on their width axis; the (z, y)
    plane has no x and is symmetric by construction. A decoder without positional input then decodes mirrored
    points identically."""
    planes = planes.float()
    xy, xz = planes[:, 0], planes[:, 1]
    return (xy - xy.flip(-1)).abs().mean() + (xz - xz.flip(-1)).abs().mean()
