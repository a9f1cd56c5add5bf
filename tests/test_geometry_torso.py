"""The torso's frame (`geometry.cameras.torso_frame`): a torso that turns with the head is the head's frame; one
that turns not at all holds still before the camera; shares in between are the same motion at a share of the
angles."""

from __future__ import annotations

import torch

from deltaplane.geometry.cameras import orbit_cam2world, torso_frame, transform_points

ANGLES = torch.tensor([[0.3, -0.2, 0.0], [-0.15, 0.1, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)


def test_transform_points_is_the_homogeneous_product() -> None:
    points = torch.tensor([[0.1, 0.3, 2.6], [-0.2, 0.4, 2.8]], dtype=torch.float64).expand(3, 2, 3)
    matrices = orbit_cam2world(ANGLES[:, 0], ANGLES[:, 1])
    homogeneous = torch.cat((points, torch.ones_like(points[..., :1])), dim=-1) @ matrices.transpose(-1, -2)
    torch.testing.assert_close(transform_points(matrices, points), homogeneous[..., :3])
    assert transform_points(matrices.float(), points).dtype == torch.float64


def test_a_torso_that_turns_with_the_head_is_the_heads_frame() -> None:
    torch.testing.assert_close(torso_frame(ANGLES, (1.0, 1.0)), torch.eye(4, dtype=torch.float64).expand(3, 4, 4))


def test_a_torso_that_does_not_turn_holds_still_before_the_camera() -> None:
    """Points fixed in each frame's camera coordinates land on the same torso points whatever the angles."""
    in_camera = torch.tensor([[0.1, 0.3, 2.6], [-0.2, 0.4, 2.8]], dtype=torch.float64).expand(3, 2, 3)
    world = transform_points(orbit_cam2world(ANGLES[:, 0], ANGLES[:, 1]), in_camera)
    torso = transform_points(torso_frame(ANGLES, (0.0, 0.0)), world)
    torch.testing.assert_close(torso, torso[2:].expand(3, 2, 3))
    assert not torch.allclose(world, world[2:].expand(3, 2, 3))


def test_a_share_of_the_turn_is_the_rest_of_the_angles_and_roll_is_followed() -> None:
    torch.testing.assert_close(torso_frame(ANGLES, (0.25, 0.5)),
                               torso_frame(ANGLES * ANGLES.new_tensor([0.75, 0.5, 1.0]), (0.0, 0.0)))
    rolled = ANGLES.clone()
    rolled[:, 2] = 0.4
    torch.testing.assert_close(torso_frame(rolled, (0.2, 0.7)), torso_frame(ANGLES, (0.2, 0.7)))
