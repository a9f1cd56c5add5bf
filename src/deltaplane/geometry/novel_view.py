"""Pseudo multi-view geometry from the tracked face mesh (pure torch, no learning; docs/novel-views.md).

A frame's mesh vertices, lifted to world points with the rendered face's own distance, are seen again from a novel
camera: the frame's camera rotated about the world origin (the centre of the head box, docs/conventions.md) by a
random yaw and pitch. Each vertex gives one ray from the novel camera, its expected distance along that ray, and a
visibility flag from a coarse z-buffer of the vertices. Everything follows the inputs' device and dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from deltaplane.geometry.cameras import DEFAULT_PIVOT, Cameras, project, unproject
from deltaplane.geometry.precision import full_precision


@dataclass(frozen=True)
class NovelViewConfig:
    """The novel cameras and the visibility test of the pseudo multi-view terms (`LossWeights.novel_depth`,
    `LossWeights.novel_color`)."""

    max_yaw: float = 30.0
    """Largest yaw offset from the frame's camera, in degrees (the evaluation's orbit reaches ±30°)."""
    max_pitch: float = 20.0
    """Largest pitch offset, in degrees (the evaluation's orbit reaches ±20°)."""
    cell: float = 1 / 64
    """Side of a z-buffer cell in image widths (8 px at 512²: about the mesh's vertex spacing on a face)."""
    margin: float = 0.01
    """A vertex is visible when its distance is at most (1 + margin) × the nearest distance around its cell; 0.01
    is about 0.03 world units at the orbit radius, a third of the nose's relief."""


def lift_face_points(face_points: Float[Tensor, "batch points 3"], valid: Bool[Tensor, "batch points"],
                     distance: Float[Tensor, "batch 1"], cameras: Cameras) -> Float[Tensor, "batch points 3"]:
    """World points of the mesh vertices: pixel (x, y) of `cameras` unprojected to camera z = D·(1 + r − r̄), where
    r is the relative depth, r̄ its mean over the valid vertices and D = `distance` the face's mean camera depth
    (geometry.face_depth: only the mesh's shape is trusted, the scale is the rendered face's)."""
    relative, weights = face_points[..., 2], valid.to(face_points.dtype)
    mean = (relative * weights).sum(-1, keepdim=True) / weights.sum(-1, keepdim=True).clamp_min(1)
    return unproject(face_points[..., :2], distance * (1 + relative - mean), cameras.cam2world, cameras.intrinsics)


@full_precision
def rigid_mesh_in_view(face_points: Float[Tensor, "batch points 3"], valid: Bool[Tensor, "batch points"],
                       cameras: Cameras, view_cam2world: Float[Tensor, "batch 4 4"]) -> Float[Tensor, "batch points 2"]:
    """Where a rigid head would show each frame's tracked mesh from `view_cam2world`, in pixels of `cameras`'
    intrinsics: the mesh lifted along the frame's own rays (`lift_face_points`) with its mean depth at the orbit
    pivot's, the point every orbit camera looks at (at the depth of the face template's mouth corners,
    docs/conventions.md), then projected. A lifting depth off by d moves the whole projection sideways by about
    d·sin(yaw) at a turned view; the differences between points hardly depend on it."""
    pivot = face_points.new_tensor(DEFAULT_PIVOT)
    offset = pivot - cameras.cam2world[:, :3, 3]
    depth = torch.einsum("bk,bk->b", offset, cameras.cam2world[:, :3, 2])[:, None]  # the pivot's camera z
    return project(lift_face_points(face_points, valid, depth, cameras), view_cam2world, cameras.intrinsics)


def orbit_rotation(yaw: Float[Tensor, "*batch"], pitch: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch 3 3"]:
    """R_y(yaw)·R_x(pitch): takes the frontal orbit position (0, 0, r) to `cameras.orbit_position(yaw, pitch, r)`,
    i.e. yaw > 0 toward world +x and pitch > 0 below the face, as the orbit cameras."""
    cos_y, sin_y, cos_p, sin_p = torch.cos(yaw), torch.sin(yaw), torch.cos(pitch), torch.sin(pitch)
    zero = torch.zeros_like(yaw)
    return torch.stack((torch.stack((cos_y, sin_y * sin_p, sin_y * cos_p), -1),
                        torch.stack((zero, cos_p, -sin_p), -1),
                        torch.stack((-sin_y, cos_y * sin_p, cos_y * cos_p), -1)), dim=-2)


@full_precision
def rotate_about_origin(cam2world: Float[Tensor, "*batch 4 4"], yaw: Float[Tensor, "*batch"],
                        pitch: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch 4 4"]:
    """R @ cam2world with R = `orbit_rotation`: the camera moves on its sphere around the world origin and turns
    with it (for a frontal orbit camera: the orbit camera of (yaw, pitch) up to the small turn that keeps the
    pivot, which is not the origin, in view)."""
    rotation = torch.eye(4, dtype=cam2world.dtype, device=cam2world.device).repeat(*yaw.shape, 1, 1)
    rotation[..., :3, :3] = orbit_rotation(yaw, pitch)
    return rotation @ cam2world


def random_offsets(batch: int, config: NovelViewConfig, generator: torch.Generator | None = None
                   ) -> tuple[Float[Tensor, " batch"], Float[Tensor, " batch"]]:
    """(yaw, pitch) in radians, uniform in ±`max_yaw` × ±`max_pitch`, drawn on the CPU (where `generator` lives)."""
    limits = torch.tensor([math.radians(config.max_yaw), math.radians(config.max_pitch)])
    angles = (torch.rand(batch, 2, generator=generator) * 2 - 1) * limits
    return angles[:, 0], angles[:, 1]


def point_rays(points: Float[Tensor, "batch points 3"], cam2world: Float[Tensor, "batch 4 4"]
               ) -> tuple[Float[Tensor, "batch points 3"], Float[Tensor, "batch points 3"],
                          Float[Tensor, "batch points"]]:
    """Rays from each camera centre to its points: origins, unit directions, and the distances to the points."""
    origins = cam2world[:, None, :3, 3].expand_as(points)
    offsets = points - origins
    distances = offsets.norm(dim=-1)
    return origins, offsets / distances[..., None].clamp_min(1e-8), distances


@full_precision
def visible_points(points: Float[Tensor, "batch points 3"], cameras: Cameras, cell: float = NovelViewConfig.cell,
                   margin: float = NovelViewConfig.margin) -> Bool[Tensor, "batch points"]:
    """Which points `cameras` see, with the points themselves as the only occluders: each point's distance is
    splatted as a minimum into cells of `cell` image widths and spread over the 3×3 neighbouring cells (the points
    are a sparse sample of a surface: a gap between them must not let a hidden point through); a point in the
    image, in front of the camera, is visible when its distance ≤ (1 + margin) × that minimum at its cell."""
    batch, count, _ = points.shape
    pixels = project(points, cameras.cam2world, cameras.intrinsics)  # [B, P, 2]
    rotation, centre = cameras.cam2world[:, :3, :3], cameras.cam2world[:, None, :3, 3]
    in_front = ((points - centre) @ rotation)[..., 2] > 0  # camera z
    distances = (points - centre).norm(dim=-1)
    side = cell * cameras.width
    columns, rows = math.ceil(cameras.width / side), math.ceil(cameras.height / side)
    cells = (pixels / side).floor()
    inside = (in_front & torch.isfinite(pixels).all(-1) & (cells[..., 0] >= 0) & (cells[..., 0] < columns)
              & (cells[..., 1] >= 0) & (cells[..., 1] < rows))
    index = torch.where(inside, cells[..., 1] * columns + cells[..., 0], torch.zeros_like(cells[..., 0])).long()
    splatted = torch.where(inside, distances, torch.full_like(distances, torch.inf))
    nearest = torch.full((batch, rows * columns), torch.inf, dtype=distances.dtype, device=distances.device)
    nearest = nearest.scatter_reduce(1, index, splatted, reduce="amin")
    nearest = -F.max_pool2d(-nearest.reshape(batch, 1, rows, columns), 3, stride=1, padding=1)  # 3×3 minimum
    return inside & (distances <= (1 + margin) * nearest.reshape(batch, -1).gather(1, index))
