"""Camera math, rays and projections keep fp32 under bf16 autocast (`geometry.precision`): the trainer's CUDA
autocast would otherwise round training rays to bf16 (up to ~2 render pixels sideways at the face) while evaluation
and inference cast fp32 rays. CPU autocast casts matmuls to bf16 just as CUDA's does, so the test runs on CPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from deltaplane.geometry.cameras import (Cameras, cam2world_to_angles, orbit_cam2world, orbit_cameras, project,
                                         torso_frame, transform_points)
from deltaplane.geometry.novel_view import rotate_about_origin, visible_points
from deltaplane.geometry.rays import pixel_rays
from deltaplane.render.plate import plane_coordinates, unwarp_coordinates

YAW, PITCH, ROLL = torch.tensor([0.31, -0.22]), torch.tensor([0.13, -0.07]), torch.tensor([0.05, -0.11])


def _cameras() -> Cameras:
    return orbit_cameras(YAW, PITCH, 64, 64, roll=ROLL)


def _points() -> torch.Tensor:
    return torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3


def _plane_coordinates() -> torch.Tensor:
    origins, directions = pixel_rays(_cameras())
    anchor = orbit_cameras(torch.zeros(2), torch.zeros(2), 32, 32)
    return plane_coordinates(origins, directions, anchor, 3.0)


CASES: dict[str, Callable[[], object]] = {
    "pixel_rays": lambda: pixel_rays(_cameras()),
    "orbit_cam2world": lambda: orbit_cam2world(YAW, PITCH, ROLL),
    "cam2world_to_angles": lambda: cam2world_to_angles(_cameras().cam2world),
    "transform_points": lambda: transform_points(_cameras().cam2world, _points()),
    "torso_frame": lambda: torso_frame(torch.stack((YAW, PITCH, ROLL), dim=-1), (0.3, 0.5)),
    "project": lambda: project(_points(), _cameras().cam2world, _cameras().intrinsics),
    "rotate_about_origin": lambda: rotate_about_origin(_cameras().cam2world, PITCH, YAW),
    "visible_points": lambda: visible_points(_points(), _cameras()),
    "plane_coordinates": _plane_coordinates,
    "unwarp_coordinates": lambda: unwarp_coordinates(torch.rand(2, 20, 2, generator=torch.Generator().manual_seed(1)), torch.tensor([[[1.1, 0.05, 0.02],
                                                                                          [-0.03, 0.95, -0.01]]] * 2)),
}


def _as_tuple(value: object) -> tuple:
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("name", CASES)
def test_geometry_ignores_bf16_autocast(name: str) -> None:
    expected = CASES[name]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16  # this autocast does cast matmuls
        result = CASES[name]()
    for got, want in zip(_as_tuple(result), _as_tuple(expected), strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=0, atol=0)
