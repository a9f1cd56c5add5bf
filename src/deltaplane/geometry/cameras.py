"""Cameras: OpenCV-frame cam2world matrices, pixel intrinsics, orbit poses with true angles, camera paths.

Conventions (docs/conventions.md): world y up, face toward +z; camera +x right, +y down, +z forward; the camera
sits on a sphere of radius 2.7 around the world origin and looks at the pivot [0, 0.05, 0.2]; yaw/pitch/roll are
radians. Everything here is a pure function of tensors and follows the inputs' device and dtype, never autocast's
(`geometry.precision`: matmuls of camera math stay fp32 under the trainer's bf16 autocast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from deltaplane.geometry.precision import full_precision

DEFAULT_RADIUS = 2.7
"""Distance of the camera from the world origin (EG3D avg_camera_radius)."""
DEFAULT_PIVOT = (0.0, 0.05, 0.2)
"""Look-at point of orbit cameras (VIVE3D/Talk3D pivot)."""
DEFAULT_FOCAL = 3.6
"""Focal length in image widths (FOV = 2·atan(0.5/3.6) ≈ 15.8°)."""
WORLD_UP = (0.0, 1.0, 0.0)


@dataclass(frozen=True)
class Cameras:
    """A batch of pinhole cameras in the OpenCV convention."""

    cam2world: Float[Tensor, "batch 4 4"]
    """Camera-to-world transforms (camera frame: +x right, +y down, +z forward)."""
    intrinsics: Float[Tensor, "batch 3 3"]
    """Pixel intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] for an image of `height` × `width` pixels."""
    height: int
    width: int

    def __len__(self) -> int:
        return self.cam2world.shape[0]

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(self.cam2world.to(device), self.intrinsics.to(device), self.height, self.width)

    def resized(self, height: int, width: int) -> Cameras:
        """The same cameras for an image of another resolution (intrinsics scaled, pixel centres kept consistent)."""
        rows = self.intrinsics.unbind(-2)  # scalars, not a tensor built on the host: no copy to the device
        intrinsics = torch.stack((rows[0] * (width / self.width), rows[1] * (height / self.height), rows[2]), -2)
        return Cameras(self.cam2world, intrinsics, height, width)

    def window(self, corners: Int[Tensor, "batch 2"], height: int, width: int) -> Cameras:
        """The same cameras seen through a height × width window of their images whose top-left pixel is at
        `corners` (x, y), one per camera: the principal point moves by the corner, so each window pixel's ray is the
        full image's ray through the same pixel."""
        shift = torch.zeros_like(self.intrinsics)
        shift[:, :2, 2] = corners.to(self.intrinsics.dtype)
        return Cameras(self.cam2world, self.intrinsics - shift, height, width)

    def __getitem__(self, index: slice | Tensor | int) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(self.cam2world[index], self.intrinsics[index], self.height, self.width)


def intrinsics_from_focal(focal: float, height: int, width: int, batch: int = 1,
                          dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                          ) -> Float[Tensor, "batch 3 3"]:
    """Pixel intrinsics for a focal length given in image widths, principal point at the image centre."""
    matrix = torch.tensor([[focal * width, 0.0, width / 2.0], [0.0, focal * width, height / 2.0], [0.0, 0.0, 1.0]],
                          dtype=dtype, device=device)
    return matrix.expand(batch, 3, 3).clone()


def orbit_position(yaw: Float[Tensor, "*batch"], pitch: Float[Tensor, "*batch"],
                   radius: float = DEFAULT_RADIUS) -> Float[Tensor, "*batch 3"]:
    """Camera centre on the sphere: r·(cos p·sin y, −sin p, cos p·cos y). Pitch > 0 is below the face."""
    return radius * torch.stack((torch.cos(pitch) * torch.sin(yaw), -torch.sin(pitch),
                                 torch.cos(pitch) * torch.cos(yaw)), dim=-1)


def look_at(position: Float[Tensor, "*batch 3"], target: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 4 4"]:
    """OpenCV cam2world for a camera at `position` looking at `target` with world +y up (no roll)."""
    forward = torch.nn.functional.normalize(target - position, dim=-1)
    up = torch.tensor(WORLD_UP, dtype=position.dtype, device=position.device).expand_as(forward)
    right = torch.nn.functional.normalize(torch.cross(forward, up, dim=-1), dim=-1)  # = −(up × forward)
    down = torch.cross(forward, right, dim=-1)  # OpenCV +y: x × y = z  ⇒  y = z × x
    matrix = torch.zeros(*position.shape[:-1], 4, 4, dtype=position.dtype, device=position.device)
    matrix[..., :3, 0] = right
    matrix[..., :3, 1] = down
    matrix[..., :3, 2] = forward
    matrix[..., :3, 3] = position
    matrix[..., 3, 3] = 1.0
    return matrix


def roll_matrix(roll: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch 3 3"]:
    """Rotation about the camera's +z axis. A positive roll turns the camera's +x axis toward its +y (down) axis,
    so the scene appears rotated counter-clockwise on screen."""
    cos, sin = torch.cos(roll), torch.sin(roll)
    zero, one = torch.zeros_like(roll), torch.ones_like(roll)
    return torch.stack((torch.stack((cos, -sin, zero), -1), torch.stack((sin, cos, zero), -1),
                        torch.stack((zero, zero, one), -1)), dim=-2)


@full_precision
def orbit_cam2world(yaw: Float[Tensor, "*batch"], pitch: Float[Tensor, "*batch"],
                    roll: Float[Tensor, "*batch"] | None = None, radius: float = DEFAULT_RADIUS,
                    pivot: tuple[float, float, float] = DEFAULT_PIVOT) -> Float[Tensor, "*batch 4 4"]:
    """cam2world of an orbit camera with true yaw/pitch/roll in radians (see the module docstring)."""
    position = orbit_position(yaw, pitch, radius)
    target = torch.tensor(pivot, dtype=position.dtype, device=position.device).expand_as(position)
    matrix = look_at(position, target)
    if roll is not None:
        matrix = matrix.clone()
        matrix[..., :3, :3] = matrix[..., :3, :3] @ roll_matrix(roll)
    return matrix


@full_precision
def cam2world_to_angles(cam2world: Float[Tensor, "*batch 4 4"],
                        pivot: tuple[float, float, float] = DEFAULT_PIVOT) -> Float[Tensor, "*batch 3"]:
    """Inverse of `orbit_cam2world` for cameras on an orbit: (yaw, pitch, roll) in radians."""
    position = cam2world[..., :3, 3]
    distance = position.norm(dim=-1)
    yaw = torch.atan2(position[..., 0], position[..., 2])
    pitch = torch.asin((-position[..., 1] / distance).clamp(-1.0, 1.0))
    target = torch.tensor(pivot, dtype=position.dtype, device=position.device).expand_as(position)
    no_roll = look_at(position, target)[..., :3, :3]
    relative = no_roll.transpose(-1, -2) @ cam2world[..., :3, :3]  # = roll_matrix(roll)
    roll = torch.atan2(relative[..., 1, 0], relative[..., 0, 0])
    return torch.stack((yaw, pitch, roll), dim=-1)


def rows_times(rows: Float[Tensor, "*batch count k"], matrix: Float[Tensor, "*batch k m"]
               ) -> Float[Tensor, "*batch count m"]:
    """`rows @ matrix` for a small inner size k (3 × 3 rotations and intrinsics applied to every pixel or sample),
    written as k broadcast products: under torch.compile they fuse into the elementwise kernels around them, where
    the matmul is a cuBLAS GEMM of inner size 3 of its own (tens of µs each at 512²; docs/performance.md, "The
    plate's cost"). `rows @ matrix` is its reference (tests/test_geometry_rays.py)."""
    matrix = matrix.unsqueeze(-3)  # [*, 1, k, m]: one matrix for all rows
    result = rows[..., 0, None] * matrix[..., 0, :]
    for index in range(1, rows.shape[-1]):
        result = result + rows[..., index, None] * matrix[..., index, :]
    return result


@full_precision
def transform_points(matrix: Float[Tensor, "*batch 4 4"], points: Float[Tensor, "*batch points 3"]
                     ) -> Float[Tensor, "*batch points 3"]:
    """R·p + t of a 4 × 4 `matrix` (cam2world, a torso frame) for row-vector points, in the points' dtype."""
    matrix = matrix.to(points.dtype)
    return rows_times(points, matrix[..., :3, :3].transpose(-1, -2)) + matrix[..., None, :3, 3]


@full_precision
def torso_frame(angles: Float[Tensor, "batch 3"], follow: tuple[float, float]) -> Float[Tensor, "batch 4 4"]:
    """World (the head's frame) → the frame of a torso that turns by the fractions `follow` of the head's tracked
    (yaw, pitch) and with all of its roll (`angles`: yaw, pitch, roll in radians, those of the frames' orbit
    cameras). The orbit camera stands for the head's motion: a point that holds still before the real camera
    sits at M(a)·p in the head's frame, M(a) = orbit_cam2world(a)·orbit_cam2world(0)⁻¹, so a torso that follows a
    share k of the head's turn sits at M((1 − k)·a)·p, and the torso's point for world x is M((1 − k)·a)⁻¹·x.
    `follow` (1, 1) gives the identity: a torso that turns with the head."""
    rest = angles[:, :2] * angles.new_tensor([1 - follow[0], 1 - follow[1]])
    zero = torch.zeros_like(rest[:, 0])
    motion = orbit_cam2world(rest[:, 0], rest[:, 1]) @ torch.linalg.inv(orbit_cam2world(zero, zero))
    return torch.linalg.inv(motion)


def orbit_cameras(yaw: Float[Tensor, " batch"], pitch: Float[Tensor, " batch"], height: int, width: int,
                  roll: Float[Tensor, " batch"] | None = None, focal: float = DEFAULT_FOCAL) -> Cameras:
    """A batch of orbit cameras with the default radius, pivot and focal."""
    cam2world = orbit_cam2world(yaw, pitch, roll)
    intrinsics = intrinsics_from_focal(focal, height, width, batch=yaw.shape[0], dtype=yaw.dtype, device=yaw.device)
    return Cameras(cam2world, intrinsics, height, width)


@full_precision
def project(points: Float[Tensor, "*batch points 3"], cam2world: Float[Tensor, "*batch 4 4"],
            intrinsics: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch points 2"]:
    """Project world points to pixel coordinates (x, y) with the pixel-centre convention of docs/conventions.md."""
    rotation, translation = cam2world[..., :3, :3], cam2world[..., :3, 3]
    camera_points = (points - translation[..., None, :]) @ rotation  # world2cam = Rᵀ(p − t), row vectors
    pixels = camera_points @ intrinsics.transpose(-1, -2)
    return pixels[..., :2] / pixels[..., 2:3]


@full_precision
def triangulate(pixels: Float[Tensor, "views points 2"], cam2world: Float[Tensor, "views 4 4"],
                intrinsics: Float[Tensor, "views 3 3"], prior_weight: float = 1e-6) -> Float[Tensor, "points 3"]:
    """The world points seen at `pixels` by every view: linear least squares (DLT) per point, each view's two rows
    divided by the point's depth there so that the error is in pixels. Views that barely differ leave a point's
    depth along the line of sight unconstrained; a weight of `prior_weight` (per pixel² of error) holds it at the
    pivot's distance from the mean view instead."""
    rotation, centre = cam2world[:, :3, :3], cam2world[:, :3, 3]
    world2cam = torch.cat((rotation.transpose(1, 2), -(rotation.transpose(1, 2) @ centre[..., None])), dim=2)
    matrices = intrinsics @ world2cam  # [V, 3, 4]: pixel·depth = M (x, y, z, 1)
    rows = torch.stack((pixels[..., :1] * matrices[:, None, 2] - matrices[:, None, 0],
                        pixels[..., 1:] * matrices[:, None, 2] - matrices[:, None, 1]), dim=1)  # [V, 2, P, 4]
    rows = rows.permute(2, 0, 1, 3).reshape(pixels.shape[1], -1, 4)  # [P, 2V, 4]
    pivot = centre.new_tensor(DEFAULT_PIVOT)
    distance = (centre - pivot).norm(dim=-1).mean()
    mean_view = int((centre - centre.mean(0)).norm(dim=-1).argmin())
    prior = unproject(pixels[mean_view][None], distance.expand(1, pixels.shape[1]), cam2world[mean_view][None],
                      intrinsics[mean_view][None])[0]  # [P, 3]
    points = prior
    for _ in range(2):  # depths from the last estimate (the prior's first)
        depth = (torch.cat((points, torch.ones_like(points[:, :1])), dim=1) @ matrices[:, 2].T).T  # [V, P]
        weights = (1.0 / depth).T.repeat_interleave(2, dim=1)[..., None]  # [P, 2V, 1]
        system, target = rows[..., :3] * weights, -rows[..., 3:] * weights
        normal = system.transpose(1, 2) @ system + prior_weight * torch.eye(3, dtype=rows.dtype, device=rows.device)
        points = torch.linalg.solve(normal, system.transpose(1, 2) @ target + prior_weight * prior[..., None])[..., 0]
    return points


def unproject(pixels: Float[Tensor, "*batch points 2"], depth: Float[Tensor, "*batch points"],
              cam2world: Float[Tensor, "*batch 4 4"], intrinsics: Float[Tensor, "*batch 3 3"]
              ) -> Float[Tensor, "*batch points 3"]:
    """Inverse of `project`: the world points at camera-space z = `depth` under the pixels (x, y)."""
    focal = intrinsics[..., None, :2, :2].diagonal(dim1=-2, dim2=-1)  # [..., 1, 2]
    normalised = (pixels - intrinsics[..., None, :2, 2]) / focal  # (x/z, y/z)
    camera_points = torch.cat((normalised, torch.ones_like(normalised[..., :1])), dim=-1) * depth[..., None]
    return transform_points(cam2world, camera_points)


def talk3d_pitch_to_radians(pitch: Tensor) -> Tensor:
    """The official Talk3D/EG3D 'pitch' p puts the camera at y = −2.7·(2/π)·p; return the true elevation angle."""
    return torch.asin((2.0 * pitch / math.pi).clamp(-1.0, 1.0))


def radians_to_talk3d_pitch(pitch: Tensor) -> Tensor:
    """Inverse of `talk3d_pitch_to_radians`."""
    return torch.sin(pitch) * math.pi / 2.0


def talk3d_orbit_angles(num_frames: int, max_yaw: float = math.radians(30.0), max_pitch: float = math.radians(20.0),
                        period: int = 120) -> Float[Tensor, "frames 2"]:
    """The Talk3D 'rotation' camera: yaw = 30°·sin(2πi/period), pitch = 20°·cos(2πi/period) (an ellipse)."""
    phase = 2.0 * math.pi * torch.arange(num_frames, dtype=torch.float64) / period
    return torch.stack((max_yaw * torch.sin(phase), max_pitch * torch.cos(phase)), dim=-1).float()


def spiral_angles(num_frames: int, max_yaw: float = math.radians(30.0), max_pitch: float = math.radians(20.0),
                  turns: float = 2.0) -> Float[Tensor, "frames 2"]:
    """A spiral around the frontal view: the ellipse of `talk3d_orbit_angles` whose radius grows from 0 to 1 over
    the first half of the clip and shrinks back to 0 over the second half, making `turns` revolutions."""
    t = torch.linspace(0.0, 1.0, max(num_frames, 1), dtype=torch.float64)[:num_frames]
    amplitude = 1.0 - (2.0 * t - 1.0).abs()
    phase = 2.0 * math.pi * turns * t
    return torch.stack((max_yaw * amplitude * torch.sin(phase), max_pitch * amplitude * torch.cos(phase)), -1).float()
