"""Pixel-centre ray generation for the pinhole `Cameras` of `deltaplane.geometry.cameras`.

Conventions (docs/conventions.md): pixel (row i, col j) has its centre at (j + 0.5, i + 0.5); the camera frame is
OpenCV (+x right, +y down, +z forward), so the camera-space direction of a pixel (u, v) is
((u − cx)/fx, (v − cy)/fy, 1) and the ray through the principal point is +z. Rays are flattened row-major:
ray index = i·width + j. The function is pure (a function of the camera tensors and the resolution only), so a
caller may cache its output per camera batch.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from deltaplane.geometry.cameras import Cameras, rows_times
from deltaplane.geometry.precision import full_precision


@full_precision
def pixel_rays(cameras: Cameras, height: int | None = None, width: int | None = None
               ) -> tuple[Float[Tensor, "batch rays 3"], Float[Tensor, "batch rays 3"]]:
    """World-space rays through every pixel centre, row-major.

    Args:
        cameras: B cameras; their intrinsics refer to an image of `cameras.height` × `cameras.width` pixels.
        height, width: render resolution; when it differs from the cameras' own, the intrinsics are rescaled
            (`Cameras.resized`), so the same field of view is covered at the new resolution.

    Returns:
        origins [B, height·width, 3] (the camera centres) and unit directions [B, height·width, 3], in the dtype and
        on the device of `cameras.cam2world`, under autocast too (`geometry.precision`).
    """
    height = cameras.height if height is None else height
    width = cameras.width if width is None else width
    if (height, width) != (cameras.height, cameras.width):
        cameras = cameras.resized(height, width)
    cam2world, intrinsics = cameras.cam2world, cameras.intrinsics.to(cameras.cam2world.dtype)
    rows = torch.arange(height, dtype=cam2world.dtype, device=cam2world.device) + 0.5
    cols = torch.arange(width, dtype=cam2world.dtype, device=cam2world.device) + 0.5
    pixel_v, pixel_u = torch.meshgrid(rows, cols, indexing="ij")  # [H, W] each
    pixel_u, pixel_v = pixel_u.reshape(1, -1), pixel_v.reshape(1, -1)  # [1, H·W], row-major
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]  # [B, 1]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]  # [B, 1]
    x_cam, y_cam = (pixel_u - cx) / fx, (pixel_v - cy) / fy  # [B, H·W]
    directions_cam = torch.stack((x_cam, y_cam, torch.ones_like(x_cam)), dim=-1)  # [B, H·W, 3]
    directions = rows_times(directions_cam, cam2world[:, :3, :3].transpose(-1, -2))  # row vectors: R·d
    directions = torch.nn.functional.normalize(directions, dim=-1)
    origins = cam2world[:, None, :3, 3].expand_as(directions).contiguous()  # [B, H·W, 3]
    return origins, directions
