"""Camera math, rays and projections keep fp32 under bf16 autocast (`geometry.precision`): the trainer's CUDA
autocast would otherwise round training rays to bf16 (up to ~2 render pixels sideways at the face) while evaluation
and inference cast fp32 rays. CPU autocast casts matmuls to bf16 just as CUDA's does, so the test runs on CPU too."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from deltaplane.geometry.cameras import (Cameras, cam2world_to_angles, orbit_cam2world, orbit_cameras, project,
                                         torso_frame, transform_points, triangulate)
from deltaplane.geometry.novel_view import rotate_about_origin, visible_points
from deltaplane.geometry.rays import pixel_rays
from deltaplane.render.plate import plane_coordinates, unwarp_coordinates

ANGLES = torch.tensor([[0.31, 0.13, 0.05], [-0.22, -0.07, -0.11]])  # (yaw, pitch, roll) of two cameras


def _cameras(device: torch.device) -> Cameras:
    yaw, pitch, roll = ANGLES.to(device).unbind(-1)
    return orbit_cameras(yaw, pitch, 64, 64, roll=roll)


def _points(device: torch.device) -> torch.Tensor:
    return (torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3).to(device)


def _plane_coordinates(device: torch.device) -> torch.Tensor:
    origins, directions = pixel_rays(_cameras(device))
    anchor = orbit_cameras(torch.zeros(2, device=device), torch.zeros(2, device=device), 32, 32)
    return plane_coordinates(origins, directions, anchor, 3.0)


def _unwarp_coordinates(device: torch.device) -> torch.Tensor:
    coordinates = torch.rand(2, 20, 2, generator=torch.Generator().manual_seed(1)).to(device)
    warp = torch.tensor([[[1.1, 0.05, 0.02], [-0.03, 0.95, -0.01]]] * 2, device=device)
    return unwarp_coordinates(coordinates, warp)


def _triangulate(device: torch.device) -> torch.Tensor:
    cameras = _cameras(device)
    pixels = project(_points(device)[:1].expand(2, -1, -1), cameras.cam2world, cameras.intrinsics)
    return triangulate(pixels, cameras.cam2world, cameras.intrinsics)


CASES: dict[str, Callable[[torch.device], object]] = {
    "pixel_rays": lambda device: pixel_rays(_cameras(device)),
    "orbit_cam2world": lambda device: orbit_cam2world(*ANGLES.to(device).unbind(-1)),
    "cam2world_to_angles": lambda device: cam2world_to_angles(_cameras(device).cam2world),
    "transform_points": lambda device: transform_points(_cameras(device).cam2world, _points(device)),
    "torso_frame": lambda device: torso_frame(ANGLES.to(device), (0.3, 0.5)),
    "project": lambda device: project(_points(device), _cameras(device).cam2world, _cameras(device).intrinsics),
    "rotate_about_origin": lambda device: rotate_about_origin(_cameras(device).cam2world, *ANGLES[:, :2].to(device).T),
    "visible_points": lambda device: visible_points(_points(device), _cameras(device)),
    "plane_coordinates": _plane_coordinates,
    "unwarp_coordinates": _unwarp_coordinates,
    "triangulate": _triangulate,
}


def _as_tuple(value: object) -> tuple:
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("name", CASES)
def test_geometry_ignores_bf16_autocast(name: str, device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    where = torch.device(device)
    expected = CASES[name](where)
    with torch.autocast(device, dtype=torch.bfloat16):
        probe = torch.ones(2, 2, device=where)
        assert (probe @ probe).dtype == torch.bfloat16  # this autocast does cast matmuls
        result = CASES[name](where)
    for got, want in zip(_as_tuple(result), _as_tuple(expected), strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=0, atol=0)
