"""`triangulate`: rigid points seen by many cameras, back in world coordinates."""

from __future__ import annotations

import torch

from deltaplane.geometry.cameras import DEFAULT_PIVOT, orbit_cameras, project, triangulate


def _views(count: int, spread: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    yaw, pitch, roll = (torch.randn(3, count, generator=generator, dtype=torch.float64) * spread).unbind()
    return orbit_cameras(yaw, pitch, 512, 512, roll=roll)


def _shape(seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(13, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.3 + torch.tensor(DEFAULT_PIVOT,
                                                                                                   dtype=torch.float64)


def test_exact_views_give_the_points_back() -> None:
    cameras, shape = _views(40, 0.1), _shape()
    pixels = project(shape.expand(40, -1, -1), cameras.cam2world, cameras.intrinsics)
    torch.testing.assert_close(triangulate(pixels, cameras.cam2world, cameras.intrinsics), shape, rtol=0, atol=1e-9)


def test_noisy_views_reproject_within_the_noise() -> None:
    cameras, shape = _views(200, 0.1), _shape()
    pixels = project(shape.expand(200, -1, -1), cameras.cam2world, cameras.intrinsics)
    noisy = pixels + torch.randn(pixels.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    found = triangulate(noisy, cameras.cam2world, cameras.intrinsics)
    error = (project(found.expand(200, -1, -1), cameras.cam2world, cameras.intrinsics) - pixels).norm(dim=-1)
    assert error.square().mean().sqrt() < 0.3  # 1-px noise over 200 views
    assert (found - shape).norm(dim=-1).max() < 0.01


def test_one_repeated_view_keeps_the_pixels_at_the_pivots_distance() -> None:
    cameras = _views(10, 0.0)
    pixels = project(_shape().expand(10, -1, -1), cameras.cam2world, cameras.intrinsics)
    found = triangulate(pixels, cameras.cam2world, cameras.intrinsics)
    torch.testing.assert_close(project(found, cameras.cam2world[0], cameras.intrinsics[0]), pixels[0], rtol=0,
                               atol=1e-6)
    centre = cameras.cam2world[0, :3, 3]
    depth = (found - centre) @ cameras.cam2world[0, :3, 2]  # along the line of sight
    pivot_distance = (torch.tensor(DEFAULT_PIVOT, dtype=torch.float64) - centre).norm()
    torch.testing.assert_close(depth, pivot_distance.expand(13), rtol=0, atol=1e-4)
