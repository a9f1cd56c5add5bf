"""Alignment onto the fixed template: Procrustes, pixel-centre-exact warping, paste-back round trip."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch

from deltaplane.errors import InputError
from deltaplane.geometry.cameras import intrinsics_from_focal, orbit_cam2world, project
from deltaplane.preprocess.align import (
    ALIGN_INDICES,
    TEMPLATE_3D,
    affine_rotation,
    affine_scale,
    alignment_affine,
    invert_affine,
    paste_back,
    similarity_from_points,
    smooth_track,
    template_2d,
    transform_points,
    warp_to_template,
)


def similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[cos, -sin, shift[0]], [sin, cos, shift[1]]])


def first_frame(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_template_is_a_frontal_face_inside_the_frame():
    points = template_2d(512)
    nose, chin, left_eye, right_eye, left_mouth, right_mouth = points
    assert left_eye[0] > 256 > right_eye[0]  # world +x (subject's left) appears on the image right
    assert left_eye[0] - 256 == pytest.approx(256 - right_eye[0], abs=1e-3)
    assert left_eye[1] < nose[1] < left_mouth[1] < chin[1]
    assert 100 < left_eye[0] - right_eye[0] < 160
    assert points.min() > 0 and points.max() < 512
    np.testing.assert_allclose(template_2d(256), (template_2d(512)) / 2, atol=1e-3)  # same framing at any size


def test_similarity_recovers_a_known_transform_without_reflection():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 400, (6, 2))
    truth = similarity(0.3, 1.7, (12.0, -40.0))
    estimate = similarity_from_points(source, transform_points(source, truth))
    np.testing.assert_allclose(estimate, truth, atol=1e-9)
    mirrored = similarity_from_points(source, source * [-1, 1])  # best fit is a rotation, never a reflection
    assert np.linalg.det(mirrored[:, :2]) > 0
    with pytest.raises(InputError):
        similarity_from_points(np.ones((6, 2)), source)


def test_alignment_maps_a_frontal_projection_exactly_onto_the_template():
    """A frontal face of the template's shape seen at another size, position and in-plane angle aligns exactly."""
    cam2world = orbit_cam2world(torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64),
                                torch.tensor(0.2, dtype=torch.float64))
    intrinsics = intrinsics_from_focal(3.6, 720, 1280, dtype=torch.float64)[0]
    projected = project(torch.from_numpy(TEMPLATE_3D).double(), cam2world, intrinsics).numpy()
    landmarks68 = np.zeros((68, 2))
    landmarks68[list(ALIGN_INDICES)] = projected + [300.0, -50.0]
    affine = alignment_affine(landmarks68, 512)
    np.testing.assert_allclose(transform_points(landmarks68[list(ALIGN_INDICES)], affine), template_2d(512),
                               atol=1e-3)
    # The camera roll turned the scene counter-clockwise; the alignment turns it back clockwise (θ > 0).
    assert affine_rotation(affine) == pytest.approx(0.2, abs=1e-6)
    assert affine_scale(affine) == pytest.approx(512 / 1280, rel=1e-6)


def test_inverse_and_point_transform_round_trip():
    affine = similarity(-1.1, 0.4, (3.0, 7.0))
    points = np.random.default_rng(1).uniform(-100, 100, (20, 2))
    np.testing.assert_allclose(transform_points(transform_points(points, affine), invert_affine(affine)), points,
                               atol=1e-9)
    assert affine_rotation(affine) == pytest.approx(-1.1)


@pytest.mark.parametrize("scale", [2.0, 0.25])  # the second goes through the anti-aliasing pre-shrink
def test_warp_follows_the_pixel_centre_convention(scale):
    size = 64
    source_size = int(size / scale)
    yy, xx = np.mgrid[0:source_size, 0:source_size] + 0.5
    spot = np.array([0.37, 0.61]) * source_size  # a smooth blob centred at a non-integer position
    blob = np.exp(-((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2) / (2 * (3.0 / scale) ** 2))
    image = np.repeat((blob * 255).astype(np.uint8)[..., None], 3, axis=2)
    affine = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    warped = warp_to_template(image, affine, size)[..., 0].astype(np.float64)
    out_y, out_x = np.mgrid[0:size, 0:size] + 0.5
    centroid = np.array([(warped * out_x).sum(), (warped * out_y).sum()]) / warped.sum()
    np.testing.assert_allclose(centroid, transform_points(spot[None], affine)[0], atol=0.1)


def test_warp_then_paste_back_restores_the_frame(shared_data):
    frame = first_frame(shared_data / "clips" / "katie_8s.mp4")
    affine = similarity(0.15, 1.3, (-120.0, -60.0))
    aligned = warp_to_template(frame, affine, 512)
    restored = paste_back(aligned, affine, frame)
    assert restored.shape == frame.shape and restored.dtype == np.uint8
    # Inside the aligned window (away from its feathered border) the frame comes back up to resampling error.
    inside = np.zeros(frame.shape[:2], bool)
    yy, xx = np.mgrid[0:frame.shape[0], 0:frame.shape[1]] + 0.5
    aligned_xy = transform_points(np.stack([xx, yy], -1).reshape(-1, 2), affine).reshape(*frame.shape[:2], 2)
    inside[((aligned_xy > 40) & (aligned_xy < 472)).all(-1)] = True
    error = np.abs(restored.astype(int) - frame.astype(int))
    assert inside.mean() > 0.3
    assert error[inside].mean() < 2.0
    outside = ~((aligned_xy > -2) & (aligned_xy < 514)).all(-1)
    assert (error[outside] == 0).all()


def test_smooth_track_keeps_constants_and_reduces_jitter():
    rng = np.random.default_rng(2)
    track = np.full((100, 6, 2), 5.0) + rng.normal(0, 1, (100, 6, 2))
    smoothed = smooth_track(track, sigma=2.0)
    assert smoothed.shape == track.shape
    assert np.abs(np.diff(smoothed, axis=0)).mean() < 0.5 * np.abs(np.diff(track, axis=0)).mean()
    np.testing.assert_allclose(smooth_track(np.full((10, 2), 3.0)), 3.0)


def test_rigid_alignment_ignores_the_moving_mouth_and_keeps_the_framing():
    """Frames of a still head whose jaw opens: the 6-point (Talk3D) alignment moves with the chin and mouth, the
    rigid one does not, and on average it frames the face as the 6-point template does."""
    from deltaplane.preprocess.align import RIGID_INDICES, rigid_alignment

    rng = np.random.default_rng(0)
    face = rng.uniform(200, 400, (68, 2))
    face[list(ALIGN_INDICES)] = template_2d(512) * 0.6 + [90.0, 40.0]
    frames = np.repeat(face[None], 20, axis=0)
    opening = 12.0 * np.sin(np.linspace(0, 6, 20))  # pixels the jaw drops
    frames[:, [8, 64, 60], 1] += opening[:, None] * np.array([1.0, 0.4, 0.4])
    talk3d = np.stack([alignment_affine(points, 512) for points in frames])
    rigid = rigid_alignment(frames, 512)
    assert np.ptp(talk3d[:, 1, 2]) > 1.0  # the 6-point crop shifts with the mouth
    np.testing.assert_allclose(rigid, rigid[:1].repeat(20, 0), atol=1e-6)
    mean_talk3d = np.mean([transform_points(frames[0, list(RIGID_INDICES)], a) for a in talk3d], axis=0)
    np.testing.assert_allclose(transform_points(frames[0, list(RIGID_INDICES)], rigid[0]), mean_talk3d, atol=1e-3)
