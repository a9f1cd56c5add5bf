"""The eye and mouth-opening regions of the 68 landmarks: the signed polygon distance, `near_features`, that the
pseudo multi-view colour term's vertices leave out the face mesh's eyelid and inner-lip vertices, and the brows'
heights (`brow_heights`, `brow_feature`) in the landmark token's input."""

from __future__ import annotations

import numpy as np
import torch

from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.geometry.face_regions import (BROW_FEATURE_SCALE, BROW_HEIGHT_MEAN, BROWS, EYES, INNER_MOUTH,
                                              brow_feature, brow_heights, face_width, near_features, polygon_distance)

SQUARE = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
# an L: the square without its upper-right quarter (concave corner at (5, 5))
ELL = np.array([[0.0, 0.0], [5.0, 0.0], [5.0, 5.0], [10.0, 5.0], [10.0, 10.0], [0.0, 10.0]])


def test_polygon_distance_is_signed_by_the_outline() -> None:
    points = np.array([[5.0, 5.0], [1.0, 5.0], [13.0, 5.0], [13.0, 14.0], [10.0, 3.0]])
    np.testing.assert_allclose(polygon_distance(points, SQUARE), [-5.0, -1.0, 3.0, 5.0, 0.0], atol=1e-12)
    # the same for either winding
    np.testing.assert_allclose(polygon_distance(points, SQUARE[::-1]), polygon_distance(points, SQUARE))


def test_polygon_distance_handles_a_concave_polygon_and_batches() -> None:
    notch, arm = np.array([[8.0, 2.0]]), np.array([[8.0, 8.0]])
    np.testing.assert_allclose(polygon_distance(notch, ELL), [3.0])  # outside: in the notch, 3 from both its sides
    np.testing.assert_allclose(polygon_distance(arm, ELL), [-2.0])
    batched = polygon_distance(np.stack([notch, arm]), np.stack([ELL, ELL]))
    assert batched.shape == (2, 1)
    np.testing.assert_allclose(batched[:, 0], [3.0, -2.0])


def _face() -> np.ndarray:
    """68 landmarks of a schematic face 100 px wide: jaw ends at x = 0 and 100, eyes as 6-gons around (30, 40) and
    (70, 40), brows as lines at y = 30 over them, the inner lips as an 8-gon around (50, 80); the other points far
    from these."""
    landmarks = np.full((68, 2), 50.0)
    landmarks[0], landmarks[16] = [0.0, 50.0], [100.0, 50.0]
    ring6 = np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], -1)
    landmarks[list(EYES[0])] = [30.0, 40.0] + ring6 * [8.0, 3.0]
    landmarks[list(EYES[1])] = [70.0, 40.0] + ring6 * [8.0, 3.0]
    ring8 = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], -1)
    landmarks[list(INNER_MOUTH)] = [50.0, 80.0] + ring8 * [10.0, 2.0]
    # brows 10 px over the eyes; the outer eye corners 36 and 45 are (38, 40) and (62, 40), 24 px apart
    landmarks[list(BROWS[0])] = np.stack([np.linspace(22.0, 38.0, 5), np.full(5, 30.0)], -1)
    landmarks[list(BROWS[1])] = np.stack([np.linspace(62.0, 78.0, 5), np.full(5, 30.0)], -1)
    return landmarks


def test_near_features_marks_the_eyes_and_mouth_opening_with_a_margin() -> None:
    landmarks = _face()[None]
    assert face_width(landmarks)[0] == 100.0
    points = np.array([[[30.0, 40.0], [70.0, 44.0], [50.0, 80.0], [50.0, 84.0],   # inside / within 3 px
                        [30.0, 47.0], [50.0, 60.0], [10.0, 70.0], [50.0, 86.0]]])  # 4–6 px out, cheek, nose, chin
    np.testing.assert_array_equal(near_features(points, landmarks)[0],
                                  [True, True, True, True, False, False, False, False])
    assert near_features(points, landmarks, margin=0.05)[0, 4]  # a wider margin reaches 4 px below the eye


def test_colour_vertices_leave_out_the_eyelids_and_inner_lips(synthetic_dataset) -> None:
    _, clip = load_clip(synthetic_dataset, "train", size=128)
    batch = make_batch(clip, torch.arange(len(clip)), 32)
    valid, colour = batch.face_point_valid, batch.face_point_colour
    assert not (colour & ~valid).any()
    # mediapipe's mesh: 159/145 and 386/374 the eyelids' margins, 13/14 the inner lips; 1 the nose tip, 50/280 cheeks
    edges, surface = [159, 145, 386, 374, 13, 14], [1, 50, 280]
    assert valid[:, edges].any() and not colour[:, edges][valid[:, edges]].any()
    assert colour[:, surface][valid[:, surface]].all()
    left_out = (valid & ~colour).sum() / valid.sum()
    assert 0.03 < left_out < 0.3  # the features' rims, not the face


def test_brow_heights_follow_each_brow_whatever_the_face_size() -> None:
    face = _face()
    np.testing.assert_allclose(brow_heights(face), [10 / 24, 10 / 24], rtol=1e-6)
    raised = face.copy()
    raised[list(BROWS[1]), 1] -= 4.0  # the second brow 4 px up (image y points down)
    np.testing.assert_allclose(brow_heights(raised), [10 / 24, 14 / 24], rtol=1e-6)
    larger = raised * 2.5 + [100.0, -30.0]  # the same face bigger and elsewhere
    np.testing.assert_allclose(brow_heights(np.stack([raised, larger])), brow_heights(raised)[None].repeat(2, 0),
                               rtol=1e-9)
    # the feature: centred on a typical face, about the landmark feature's scale
    np.testing.assert_allclose(brow_feature(raised), BROW_FEATURE_SCALE * (brow_heights(raised) - BROW_HEIGHT_MEAN),
                               rtol=1e-9)


def test_clips_carry_the_brows_in_the_landmark_input_when_asked(synthetic_dataset) -> None:
    _, plain = load_clip(synthetic_dataset, "train", size=64)
    _, with_brows = load_clip(synthetic_dataset, "train", size=64, brows=True)
    assert plain.landmarks.shape[1] == 6 and with_brows.landmarks.shape[1] == 8
    torch.testing.assert_close(with_brows.landmarks[:, :6], plain.landmarks)
    tracks = np.load(synthetic_dataset / "tracks.npz")
    expected = brow_feature(tracks["landmarks_aligned"][plain.indices.numpy()])
    np.testing.assert_allclose(with_brows.landmarks[:, 6:].numpy(), expected, rtol=1e-5, atol=1e-6)
