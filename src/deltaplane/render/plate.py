"""The background plate behind the rendered head and torso: where a camera sees it, and compositing over it.

The plate is the image, in its *anchor* camera A, of a fronto-parallel plane at camera depth `depth` in front of A.
A pixel of camera C shows it where C's ray meets that plane, projected into A (`plane_coordinates`; the formula and
the frames that use `unwarp_coordinates` instead are in docs/conventions.md, "Background plate"). Coordinates (u, v)
are in [0, 1] over A's image, pixel centres at (j + 0.5)/width, so C = A gives back the plate exactly and the same
(u, v) sample the plate at any texture size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from deltaplane.geometry.cameras import Cameras, rows_times
from deltaplane.geometry.precision import full_precision

MIN_FORWARD = 1e-6
"""Smallest forward component of a ray in the anchor's frame (rays parallel to the plane never meet it)."""


@full_precision
def plane_coordinates(origins: Float[Tensor, "batch rays 3"], directions: Float[Tensor, "batch rays 3"],
                      anchor: Cameras, depth: float) -> Float[Tensor, "batch rays 2"]:
    """(u, v) in [0, 1] of the anchor's image where each ray meets the plane at camera depth `depth` in front of
    the anchor (one anchor camera per batch item; docs/conventions.md, "Background plate")."""
    rotation, centre = anchor.cam2world[:, :3, :3], anchor.cam2world[:, None, :3, 3]  # [B, 3, 3], [B, 1, 3]
    origins_anchor = rows_times(origins - centre, rotation)  # Rᵀ(o − c) for row vectors, [B, R, 3]
    directions_anchor = rows_times(directions, rotation)
    forward = directions_anchor[..., 2:].clamp_min(MIN_FORWARD)
    points = origins_anchor + (depth - origins_anchor[..., 2:]) / forward * directions_anchor  # [B, R, 3]
    pixels = rows_times(points, anchor.intrinsics.to(points.dtype).transpose(-1, -2))  # [B, R, 3], z = depth
    return torch.stack((pixels[..., 0] / anchor.width, pixels[..., 1] / anchor.height), dim=-1) / pixels[..., 2:]


def pixel_coordinates(cameras: Cameras) -> Float[Tensor, "batch rays 2"]:
    """(u, v) in [0, 1] of every pixel centre of `cameras`' images, row-major like `geometry.rays.pixel_rays`."""
    dtype, device = cameras.cam2world.dtype, cameras.cam2world.device
    rows = (torch.arange(cameras.height, dtype=dtype, device=device) + 0.5) / cameras.height
    cols = (torch.arange(cameras.width, dtype=dtype, device=device) + 0.5) / cameras.width
    v, u = torch.meshgrid(rows, cols, indexing="ij")  # [H, W] each
    return torch.stack((u, v), dim=-1).reshape(1, -1, 2).expand(len(cameras), -1, -1)


@full_precision
def unwarp_coordinates(coordinates: Float[Tensor, "batch rays 2"], warp: Float[Tensor, "batch 2 3"]
                       ) -> Float[Tensor, "batch rays 2"]:
    """Frame coordinates → plate coordinates, given the 2×3 map `warp` from plate to frame (units of the image
    side, `data.dataset.ClipData.plate_warps`): where a training frame shows each plate point. The 2×2 inverse is
    written out (adjugate / determinant): elementwise, it can run inside the fast path's captured CUDA graph, where
    `torch.linalg.inv`'s error check would synchronise with the host."""
    linear = warp[:, :, :2].to(coordinates.dtype)  # [B, 2, 2]
    a, b, c, d = linear[:, 0, 0], linear[:, 0, 1], linear[:, 1, 0], linear[:, 1, 1]
    adjugate = torch.stack((torch.stack((d, -b), dim=-1), torch.stack((-c, a), dim=-1)), dim=-2)  # [B, 2, 2]
    inverse = adjugate / (a * d - b * c)[:, None, None]
    return rows_times(coordinates - warp[:, None, :, 2].to(coordinates.dtype), inverse.transpose(-1, -2))


def window_warp(warp: Float[Tensor, "batch 2 3"], corners: Float[Tensor, "batch 2"], size: int, frame: int
                ) -> Float[Tensor, "batch 2 3"]:
    """The plate-to-frame map `warp` (units of the frame's side) as seen through a size² window of the frame whose
    top-left pixel is at `corners` (x, y): a window coordinate w is the frame's c + s·w (c = corner / frame,
    s = size / frame), so the frame's A⁻¹(c + s·w − t) is the window's (A / s)⁻¹(w − (t − c) / s)."""
    scale = size / frame
    shift = corners.to(warp.dtype) / frame
    return torch.cat((warp[:, :, :2] / scale, (warp[:, :, 2:] - shift[..., None]) / scale), dim=-1)


def sample_plate(texture: Float[Tensor, "batch 3 tex_height tex_width"], coordinates: Float[Tensor, "batch rays 2"],
                 height: int, width: int) -> Float[Tensor, "batch 3 height width"]:
    """Bilinear samples of the texture at (u, v) (rays row-major over height × width). Outside the plate the
    texture is mirrored: a plausible continuation of the backdrop where a novel view looks past its edge."""
    grid = (coordinates * 2 - 1).reshape(coordinates.shape[0], height, width, 2)  # align_corners=False
    return F.grid_sample(texture.to(grid.dtype).expand(grid.shape[0], -1, -1, -1), grid, mode="bilinear",
                         padding_mode="reflection", align_corners=False)


def over_plate(feature_image: Float[Tensor, "batch channels height width"],
               alpha: Float[Tensor, "batch 1 height width"], plate: Float[Tensor, "batch 3 height width"]
               ) -> Float[Tensor, "batch channels height width"]:
    """The feature image with the plate behind its RGB channels: rgb = head + (1 − α)·plate in the renderer's
    [0, 1] units (the composited features are premultiplied by their opacity α), i.e. in [-1, 1] units
    rgb = feature_rgb + (1 − α)·(plate + 1). The other channels stay as rendered (0 where the ray is empty)."""
    rgb = feature_image[:, :3] + (1 - alpha) * (plate + 1)
    return torch.cat((rgb.to(feature_image.dtype), feature_image[:, 3:]), dim=1)


def blend_plate(rgb: Float[Tensor, "batch 3 height width"], alpha: Float[Tensor, "batch 1 raw raw"],
                plate: Float[Tensor, "batch 3 height width"]) -> Float[Tensor, "batch 3 height width"]:
    """α·rgb + (1 − α)·plate with α bilinearly upsampled to rgb's size: where no ray hit anything the output is
    exactly the plate, whatever the super-resolution drew there."""
    alpha = F.interpolate(alpha.float(), size=rgb.shape[-2:], mode="bilinear", align_corners=False)
    return alpha * rgb.float() + (1 - alpha) * plate.float()
