"""Pseudo multi-view supervision from the face mesh (issue 11): lifting, novel cameras, vertex visibility, and the
model's `novel_depth` / `novel_color` terms."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.geometry.cameras import Cameras, orbit_cam2world, orbit_cameras, orbit_position, project
from deltaplane.geometry.novel_view import (
    lift_face_points,
    point_rays,
    rigid_mesh_in_view,
    rotate_about_origin,
    visible_points,
)
from deltaplane.inference import camera_path
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train


def _face(cameras: Cameras, count: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mesh-like vertices: pixels around the image centre, relative depths of a few %, some invalid."""
    generator = torch.Generator().manual_seed(seed)
    pixels = cameras.width * (0.3 + 0.4 * torch.rand(len(cameras), count, 2, generator=generator))
    relative = 0.05 * torch.rand(len(cameras), count, 1, generator=generator)
    valid = torch.rand(len(cameras), count, generator=generator) > 0.2
    return torch.cat((pixels, relative), dim=-1), valid


def test_zero_rotation_rays_hit_the_source_pixels_at_the_lifted_depth() -> None:
    cameras = orbit_cameras(torch.tensor([0.2, -0.3]), torch.tensor([0.1, -0.05]), 128, 128,
                            roll=torch.tensor([0.05, 0.0]))
    face_points, valid = _face(cameras)
    distance = torch.tensor([[2.6], [2.4]])
    points = lift_face_points(face_points, valid, distance, cameras)
    novel = rotate_about_origin(cameras.cam2world, torch.zeros(2), torch.zeros(2))
    torch.testing.assert_close(novel, cameras.cam2world)
    origins, directions, distances = point_rays(points, novel)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(2, 200))
    hit = origins + distances[..., None] * directions
    torch.testing.assert_close(project(hit, novel, cameras.intrinsics), face_points[..., :2], rtol=0, atol=1e-3)
    # camera z of the ray's end = D·(1 + r − mean of r over the valid vertices)
    relative = face_points[..., 2]
    mean = (relative * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True)
    forward = novel[:, None, :3, 2]  # the camera's +z axis in world coordinates
    torch.testing.assert_close(distances * (directions * forward).sum(-1), distance * (1 + relative - mean))


def test_rigid_mesh_in_view_lifts_the_mean_to_the_pivot_and_keeps_the_own_view() -> None:
    cameras = orbit_cameras(torch.tensor([0.1, -0.2]), torch.tensor([0.05, 0.0]), 128, 128)
    face_points, valid = _face(cameras)
    # seen from its own camera the mesh stays where it was tracked, whatever the lifting depth
    own = rigid_mesh_in_view(face_points, valid, cameras, cameras.cam2world)
    torch.testing.assert_close(own, face_points[..., :2], rtol=0, atol=1e-3)
    # a vertex at the image centre with the mean relative depth is lifted onto the pivot, at which every orbit camera
    # looks: it stays at the centre of any turned view, while a vertex nearer the camera moves off it
    centre = torch.tensor([[[64.0, 64.0, 0.02], [64.0, 64.0, 0.02], [64.0, 64.0, -0.03]]]).repeat(2, 1, 1)
    turned = orbit_cam2world(torch.tensor([0.5, -0.5]), torch.tensor([0.0, 0.3]))
    seen = rigid_mesh_in_view(centre, torch.tensor([[True, True, False]]).repeat(2, 1), cameras, turned)
    torch.testing.assert_close(seen[:, 0], torch.full((2, 2), 64.0), rtol=0, atol=1e-3)
    assert ((seen[:, 2] - 64).norm(dim=-1) > 5).all()


def test_orbit_camera_paths_need_no_tracks_and_the_dataset_camera_asks_for_them() -> None:
    torch.testing.assert_close(camera_path("yaw=30,pitch=0", 3),
                               orbit_cam2world(torch.full((3,), math.radians(30)), torch.zeros(3)))
    with pytest.raises(ValueError, match="driving tracks"):
        camera_path("dataset", 3)


def test_rotation_about_the_origin_moves_the_camera_along_its_orbit() -> None:
    yaw, pitch = torch.tensor([0.5, -0.3, 0.0, 0.2]), torch.tensor([0.0, 0.3, -0.35, 0.1])
    source = orbit_cam2world(torch.tensor([0.1, -0.2, 0.3, 0.0]), torch.tensor([0.05, 0.1, -0.1, 0.0]),
                             roll=torch.tensor([0.03, 0.0, -0.02, 0.0]))
    novel = rotate_about_origin(source, yaw, pitch)
    torch.testing.assert_close(novel[:, :3, 3].norm(dim=-1), source[:, :3, 3].norm(dim=-1))
    torch.testing.assert_close(novel[:, :3, :3].transpose(1, 2) @ novel[:, :3, :3], torch.eye(3).expand(4, 3, 3))
    # From the frontal camera: the orbit camera's position, and its orientation up to the small turn that keeps the
    # pivot (0, 0.05, 0.2) rather than the origin in view.
    frontal = orbit_cam2world(torch.zeros(4), torch.zeros(4))
    novel, orbit = rotate_about_origin(frontal, yaw, pitch), orbit_cam2world(yaw, pitch)
    torch.testing.assert_close(novel[:, :3, 3], orbit_position(yaw, pitch))
    relative = orbit[:, :3, :3].transpose(1, 2) @ novel[:, :3, :3]
    angle = torch.acos(((relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))
    assert (angle < math.radians(4)).all(), angle


def test_the_near_hemisphere_of_a_sphere_is_visible_and_the_far_one_is_not() -> None:
    count = 3000
    index = torch.arange(count, dtype=torch.float32) + 0.5
    height, azimuth = 1 - 2 * index / count, math.pi * (1 + 5 ** 0.5) * index  # Fibonacci sphere
    normals = torch.stack((torch.sqrt(1 - height ** 2) * torch.cos(azimuth), height,
                           torch.sqrt(1 - height ** 2) * torch.sin(azimuth)), dim=-1)
    points = 0.25 * normals[None]
    cameras = orbit_cameras(torch.tensor([0.4]), torch.tensor([-0.2]), 512, 512)
    visible = visible_points(points, cameras)[0]
    towards = torch.nn.functional.normalize(cameras.cam2world[:, None, :3, 3] - points, dim=-1)[0]
    facing = (normals * towards).sum(-1)  # cosine between the normal and the direction to the camera
    assert visible[facing > 0.75].all()
    assert not visible[facing < -0.2].any()
    # the 3×3-cell footprint also drops grazing points (their neighbours are nearer by more than the margin)
    assert visible[facing > 0.5].float().mean() > 0.9 and visible[(facing > 0) & (facing < 0.3)].float().mean() < 0.2



def test_each_row_of_a_batch_has_its_own_z_buffer() -> None:
    """`visible_points` over two batches stacked equals each alone (the novel-view terms stack the novel cameras and
    the frames' own into one call)."""
    generator = torch.Generator().manual_seed(0)
    points = 0.2 * torch.randn(2, 500, 3, generator=generator) + torch.tensor([0.0, 0.05, 0.2])
    first = orbit_cameras(torch.tensor([0.4, -0.3]), torch.tensor([-0.2, 0.1]), 256, 256)
    second = orbit_cameras(torch.tensor([0.0, 0.5]), torch.tensor([0.3, 0.0]), 256, 256)
    stacked = Cameras(torch.cat((first.cam2world, second.cam2world)), torch.cat((first.intrinsics,
                                                                                 second.intrinsics)), 256, 256)
    together = visible_points(points.repeat(2, 1, 1), stacked)
    assert torch.equal(together, torch.cat((visible_points(points, first), visible_points(points, second))))
    assert together.any() and not together.all() and not torch.equal(together[:2], together[2:])

def _model(**loss: float) -> TriplaneTalker:
    torch.manual_seed(0)
    config, _ = get_preset("tiny")
    config = dataclasses.replace(config, audio=dataclasses.replace(config.audio, feature_dim=80),
                                 loss=dataclasses.replace(config.loss, **loss))
    return TriplaneTalker(config)


@pytest.mark.parametrize("background", ["field", "plate"])
def test_terms_are_finite_reach_the_identity_planes_and_vanish_at_weight_zero(synthetic_dataset: Path,
                                                                              background: str) -> None:
    model = _model(novel_depth=1.0, novel_color=1.0)
    model = TriplaneTalker(dataclasses.replace(model.config, background=background, isolate_lower_face=1))
    _, clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution)
    batch = make_batch(clip, torch.tensor([0, 7]), model.config.render_resolution)
    output, delta = model(batch.cameras, batch.conditions, lower_face=batch.lower_face, plate_warp=batch.plate_warp)
    terms = model.loss_terms(output, delta, batch, generator=torch.Generator().manual_seed(0))
    for name in ("novel_depth", "novel_color"):
        assert torch.isfinite(terms[name]) and terms[name] > 0, name
        gradient, = torch.autograd.grad(terms[name], model.identity_planes, retain_graph=True)
        assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0, name
    off = TriplaneTalker(dataclasses.replace(model.config, loss=dataclasses.replace(model.config.loss,
                                                                                    novel_depth=0.0,
                                                                                    novel_color=0.0)))
    state = torch.get_rng_state()
    assert not {"novel_depth", "novel_color"} & off.loss_terms(output, delta, batch).keys()
    assert torch.equal(torch.get_rng_state(), state)  # off draws nothing: the random streams are untouched


def test_colour_term_reads_only_the_colour_vertices(synthetic_dataset: Path) -> None:
    model = _model(novel_depth=1.0, novel_color=1.0)
    _, clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution)
    batch = make_batch(clip, torch.tensor([0, 7]), model.config.render_resolution)
    output, delta = model(batch.cameras, batch.conditions, lower_face=batch.lower_face)
    planes = model.with_identity(delta)
    torch.manual_seed(1)  # the samples' jitter
    terms = model.novel_view_terms(planes, output, batch, torch.Generator().manual_seed(0))
    # the eyes' and mouth opening's vertices left out: the same depth term, no colour term without any vertex
    blind = dataclasses.replace(batch, face_point_colour=torch.zeros_like(batch.face_point_colour))
    torch.manual_seed(1)
    without = model.novel_view_terms(planes, output, blind, torch.Generator().manual_seed(0))
    assert terms["novel_color"] > 0 and without["novel_color"] == 0
    torch.testing.assert_close(without["novel_depth"], terms["novel_depth"])


def test_training_logs_the_terms(synthetic_dataset: Path, tmp_path: Path) -> None:
    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config, loss=dataclasses.replace(model_config.loss, novel_depth=1.0,
                                                                              novel_color=1.0))
    train_config = dataclasses.replace(train_config, steps=2, log_every=1, eval_every=0, sample_every=1000)
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", torch.device("cpu"),
          progress=False)
    rows = [row for row in read_log(tmp_path / "run") if "loss" in row]
    assert len(rows) == 2
    assert all(math.isfinite(row["loss/novel_depth"]) and math.isfinite(row["loss/novel_color"]) for row in rows)
