"""Head pose: exact on a synthetic symmetric mesh; mirror and in-plane-rotation behaviour on a real clip."""

from __future__ import annotations

import math
from itertools import islice

import av
import cv2
import numpy as np
import pytest
import torch

from deltaplane.geometry.cameras import cam2world_to_angles, orbit_cam2world
from deltaplane.preprocess.align import alignment_affine
from deltaplane.preprocess.head_pose import (
    LOWER_MIDLINE,
    PROFILE_TILT,
    SYMMETRIC_PAIRS,
    UPPER_MIDLINE,
    aligned_angles,
    aligned_cameras,
    head_angles,
    smooth_angles,
)
from deltaplane.preprocess.landmarks import FaceTracker


def synthetic_face() -> np.ndarray:
    """478 world points (y up, face toward +z): mirror-symmetric pairs, the profile line leaning back by the tilt."""
    rng = np.random.default_rng(0)
    world = rng.normal(0.0, 0.1, (478, 3))
    for left, right in SYMMETRIC_PAIRS:
        world[left, 0] = abs(world[left, 0]) + 0.01
        world[right] = world[left] * [-1.0, 1.0, 1.0]
    nose_base = np.array([0.0, -0.05, 0.25])
    profile = np.array([0.0, math.cos(PROFILE_TILT), -math.sin(PROFILE_TILT)])
    world[list(LOWER_MIDLINE)] = nose_base
    world[list(UPPER_MIDLINE)] = nose_base + 0.15 * profile
    return world


def render_mesh(world: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """What face mesh reports for an orbit camera: camera-frame points, scaled to pixels, depth on the same scale."""
    angles = torch.tensor([yaw, pitch, roll], dtype=torch.float64)
    cam2world = orbit_cam2world(angles[0], angles[1], angles[2]).numpy()
    camera_points = (world - cam2world[:3, 3]) @ cam2world[:3, :3]
    return camera_points * 900.0 + [320.0, 240.0, 0.0]


@pytest.mark.parametrize("yaw, pitch, roll", [(0.0, 0.0, 0.0), (0.5, -0.2, 0.1), (-0.7, 0.35, -0.3), (1.2, 0.1, 0.0)])
def test_angles_of_a_synthetic_mesh_are_recovered(yaw, pitch, roll):
    estimate = head_angles(render_mesh(synthetic_face(), yaw, pitch, roll))
    np.testing.assert_allclose(estimate, [yaw, pitch, roll], atol=math.radians(1.0))


def test_positive_yaw_sees_the_subjects_left_cheek():
    mesh = render_mesh(synthetic_face(), 0.4, 0.0, 0.0)
    left, right = zip(*SYMMETRIC_PAIRS)
    assert (mesh[list(left), 2] < mesh[list(right), 2]).all()  # the subject's left side is nearer the camera


def test_alignment_rotation_moves_into_the_roll():
    angles = np.array([[0.1, 0.2, 0.3]])
    # An affine that turns the content clockwise by 0.3 (what aligning a face seen with roll 0.3 does) cancels it.
    affine = np.array([[[math.cos(0.3), -math.sin(0.3), 0.0], [math.sin(0.3), math.cos(0.3), 0.0]]])
    np.testing.assert_allclose(aligned_angles(angles, affine), [[0.1, 0.2, 0.0]], atol=1e-12)


def test_smooth_angles_handles_the_wrap_and_keeps_shape():
    angles = np.zeros((20, 3))
    angles[:, 2] = np.where(np.arange(20) % 2 == 0, math.pi - 0.01, -math.pi + 0.01)
    smoothed = smooth_angles(angles, sigma=1.0)
    assert smoothed.shape == angles.shape
    assert (np.abs(smoothed[:, 2]) > math.pi - 0.02).all()  # stays near ±π, not 0


def test_cameras_reproduce_the_angles():
    angles = np.array([[0.3, -0.1, 0.05], [-0.2, 0.2, -0.1]], np.float32)
    cameras = aligned_cameras(angles, 512)
    assert cameras.cam2world.shape == (2, 4, 4) and cameras.intrinsics.shape == (2, 3, 3)
    assert cameras.intrinsics[0, 0, 0].item() == pytest.approx(3.6 * 512)
    np.testing.assert_allclose(cam2world_to_angles(cameras.cam2world).numpy(), angles, atol=1e-5)


def decode(path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in islice(container.decode(video=0), count)]


def track_all(frames: list[np.ndarray]) -> list:
    with FaceTracker() as tracker:
        observations = [tracker.track(frame) for frame in frames]
    assert all(observation is not None for observation in observations)
    return observations


@pytest.fixture(scope="module")
def katie(shared_data) -> list[np.ndarray]:
    return decode(shared_data / "clips" / "katie_8s.mp4", 100)  # turns both ways, about ±20°


def test_mirrored_frames_give_the_opposite_yaw(katie):
    yaw = head_angles(np.stack([o.mesh for o in track_all(katie)]))[:, 0]
    mirrored = head_angles(np.stack([o.mesh for o in track_all([f[:, ::-1].copy() for f in katie])]))[:, 0]
    assert np.degrees(np.abs(yaw).max()) > 10.0
    assert np.degrees(abs(np.abs(yaw).mean() - np.abs(mirrored).mean())) < 2.0
    assert np.degrees(np.abs(yaw + mirrored).mean()) < 2.0  # per frame: opposite sign, same size
    assert np.corrcoef(yaw, -mirrored)[0, 1] > 0.95


def test_rotating_the_image_changes_the_roll_by_that_angle(katie):
    frames = katie[:20]
    height, width = frames[0].shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 10.0, 1.0)  # +10° = counter-clockwise on screen
    rotated = [cv2.warpAffine(frame, turn, (width, height), flags=cv2.INTER_CUBIC) for frame in frames]
    original_obs, rotated_obs = track_all(frames), track_all(rotated)
    original = head_angles(np.stack([o.mesh for o in original_obs]))
    turned = head_angles(np.stack([o.mesh for o in rotated_obs]))
    # A counter-clockwise turn on screen is a positive camera roll; yaw and pitch stay.
    assert np.degrees(np.median(turned[:, 2] - original[:, 2])) == pytest.approx(10.0, abs=1.5)
    assert np.degrees(np.abs(np.median(turned[:, :2] - original[:, :2], axis=0))).max() < 2.0
    # After alignment the in-plane turn is gone again.
    affines = [np.stack([alignment_affine(o.landmarks68, 512) for o in obs]) for obs in (original_obs, rotated_obs)]
    aligned_original, aligned_turned = aligned_angles(original, affines[0]), aligned_angles(turned, affines[1])
    assert np.degrees(np.abs(np.median(aligned_turned[:, 2] - aligned_original[:, 2]))) < 1.5
