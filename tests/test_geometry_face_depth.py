"""The face-mesh depth prior: vertex alignment and depth units, the outline cut, camera depth of a rendered depth
map, the shift-invariant loss, and that the prior reshapes a tiny model's rendered face."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from deltaplane import losses
from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.geometry.cameras import Cameras, intrinsics_from_focal, orbit_cameras
from deltaplane.geometry.face_depth import aligned_face_points, camera_depth, interior_vertices
from deltaplane.geometry.rays import pixel_rays
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import get_preset


def test_aligned_points_follow_the_similarity_and_scale_depth_by_it() -> None:
    rng = np.random.default_rng(0)
    mesh = rng.uniform(0, 400, size=(2, 478, 3)).astype(np.float32)
    angle, scale = 0.3, 1.7
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = np.stack([np.concatenate([linear, [[5.0], [-3.0]]], axis=1)] * 2).astype(np.float32)
    focal = np.array([1000.0, 2000.0], np.float32)
    points = aligned_face_points(mesh, affine, focal)
    assert points.shape == (2, 468, 3)
    np.testing.assert_allclose(points[0, 7, :2], linear @ mesh[0, 7, :2] + [5.0, -3.0], rtol=1e-5)
    # z pixels → aligned pixels (× scale) → fraction of the distance (÷ focal in aligned pixels)
    np.testing.assert_allclose(points[:, 3, 2], mesh[:, 3, 2] * scale / focal, rtol=1e-5)


def test_interior_vertices_drop_the_outline_only() -> None:
    grid = np.stack(np.meshgrid(np.arange(11.0), np.arange(11.0)), -1).reshape(1, -1, 2)  # 0…10 square
    keep = interior_vertices(grid, margin=0.15)[0].reshape(11, 11)
    assert not keep[0].any() and not keep[-1].any() and not keep[:, 0].any() and not keep[:, -1].any()
    assert not keep[1].any()  # 1 px from the edge < 0.15 × 10
    assert keep[2:-2, 2:-2].all()


def test_camera_depth_of_a_fronto_parallel_plane_is_constant() -> None:
    size, z_plane = 64, 2.5
    cameras = Cameras(torch.eye(4)[None], intrinsics_from_focal(1.2, size, size), size, size)
    _, directions = pixel_rays(cameras)  # unit rays; a plane z = Z is at ray distance Z / d_z
    ray_depth = (z_plane / directions[..., 2]).reshape(1, 1, size, size)
    pixels = torch.tensor([[[32.0, 32.0], [0.5, 0.5], [63.5, 10.5], [17.25, 40.75]]])
    torch.testing.assert_close(camera_depth(ray_depth, pixels, cameras.intrinsics, size),
                               torch.full((1, 4), z_plane), atol=2e-3, rtol=0)
    # a depth map at a lower resolution covers the same view
    low = torch.nn.functional.interpolate(ray_depth, size=(16, 16), mode="area")
    torch.testing.assert_close(camera_depth(low, pixels[:, :1], cameras.intrinsics, size), torch.full((1, 1), z_plane),
                               atol=5e-3, rtol=0)  # area-averaging a curved depth map costs ~2e-3


def test_relative_depth_l1_ignores_shifts_and_invalid_points() -> None:
    target = torch.tensor([[0.0, 0.1, -0.05, 0.2]])
    valid = torch.tensor([[True, True, True, False]])
    shifted = target + 3.0
    shifted[0, 3] = -100.0  # invalid: ignored
    assert losses.relative_depth_l1(shifted, target, valid).item() < 1e-6
    flat = torch.full_like(target, 2.5)
    expected = (target[0, :3] - target[0, :3].mean()).abs().mean()
    torch.testing.assert_close(losses.relative_depth_l1(flat, target, valid), expected)
    assert losses.relative_depth_l1(flat, target, torch.zeros_like(valid)).item() == 0.0


def test_offset_depth_l1_measures_from_the_given_centres() -> None:
    """Another set's centres (the face mesh's, for the head proxy's points): a shift of these points alone counts."""
    target = torch.tensor([[1.0, 1.2, 9.0], [2.0, 2.0, 2.0]])
    valid = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(losses.row_mean(target, valid), torch.tensor([[1.1], [0.0]]))
    centres = (torch.tensor([[0.5], [0.0]]), torch.tensor([[1.0], [0.0]]))
    assert losses.offset_depth_l1(target - 0.5, target, valid, centres).item() < 1e-6
    torch.testing.assert_close(losses.offset_depth_l1(target + 0.25, target, valid, centres), torch.tensor(0.75))


def test_face_depth_prior_reshapes_the_rendered_face(synthetic_dataset) -> None:
    torch.manual_seed(0)
    config, _ = get_preset("tiny")
    model = TriplaneTalker(dataclasses.replace(config, audio=dataclasses.replace(config.audio, feature_dim=80)))
    _, clip = load_clip(synthetic_dataset, "train", size=config.output_resolution)
    batch = make_batch(clip, torch.tensor([0, 5]), config.render_resolution)
    assert batch.face_point_valid.sum(-1).min() > 100
    assert batch.face_points[..., 2].std() > 0.005  # the mesh has relief
    optimizer = torch.optim.Adam([model.identity_planes, *model.field.parameters()], lr=1e-2)
    errors = []
    for _ in range(40):
        output = model.render(model.identity_planes[None].expand(2, -1, -1, -1, -1), batch.cameras,
                              generator=torch.Generator().manual_seed(0))
        error = model.face_depth_error(output, batch)
        optimizer.zero_grad()
        error.backward()
        optimizer.step()
        errors.append(error.item())
    assert errors[-1] < 0.5 * errors[0], errors


def test_background_hinge_pushes_background_back() -> None:
    torch.manual_seed(0)
    config, _ = get_preset("tiny")
    model = TriplaneTalker(dataclasses.replace(config, audio=dataclasses.replace(config.audio, feature_dim=80)))
    cameras = orbit_cameras(torch.zeros(1), torch.zeros(1), 128, 128)
    mask = torch.ones(1, 1, 32, 32, dtype=torch.bool)
    optimizer = torch.optim.Adam([model.identity_planes, *model.field.parameters()], lr=1e-2)
    first = last = None
    for _ in range(30):
        depth = model.render(model.identity_planes[None], cameras, generator=torch.Generator().manual_seed(0)).depth
        loss = losses.masked_mean(torch.relu(model.config.background_depth - depth), mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first, last = first or depth.mean().item(), depth.mean().item()
    assert last > first + 0.1
