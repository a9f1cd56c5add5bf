"""`view/NAME/mesh_offset` and `mesh_shape`: the face mesh tracked on a view against the split's tracked mesh as a
rigid head would show it from that camera (`geometry.novel_view.rigid_mesh_in_view`, docs/novel-views.md "Where the
turned face lands")."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deltaplane.data.dataset import load_clip
from deltaplane.evaluation.face import MESH_EYE_CORNERS, MESH_VIEW_KEYS, IdentityEmbedder, mesh_view_metrics
from deltaplane.evaluation.scoring import EvaluationConfig, load_experts, observe_video
from deltaplane.geometry.cameras import Cameras
from deltaplane.geometry.face_depth import FACE_VERTICES
from deltaplane.geometry.novel_view import rigid_mesh_in_view, rotate_about_origin


def _mesh(frames: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mesh-like points in a 100-px face with the outer eye corners 50 px apart, and the points tracked."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(100, 200, (frames, FACE_VERTICES, 2))
    points[:, MESH_EYE_CORNERS[0]], points[:, MESH_EYE_CORNERS[1]] = (125, 130), (175, 130)
    valid = rng.random((frames, FACE_VERTICES)) > 0.1
    valid[:, MESH_EYE_CORNERS] = True
    return points, valid


def test_a_shift_is_offset_and_not_shape_and_a_stretch_is_both() -> None:
    expected, valid = _mesh()
    assert mesh_view_metrics(expected.copy(), expected, valid) == ({"mesh/offset": 0.0, "mesh/shape": 0.0}, {})
    # 5 px = 0.1 eye-corner distances; the points the tracking did not give do not count
    shifted = np.where(valid[..., None], expected + (3.0, -4.0), expected + 1000.0)
    found, skipped = mesh_view_metrics(shifted, expected, valid)
    assert not skipped
    assert found["mesh/offset"] == pytest.approx(0.1) and found["mesh/shape"] == pytest.approx(0, abs=1e-9)
    stretched = expected.copy()
    stretched[..., 0] = 150 + 1.2 * (expected[..., 0] - 150)  # the face drawn 20 % wider about its middle
    found, _ = mesh_view_metrics(stretched, expected, valid)
    # points 25 px from the middle on average move 5 px: 0.1 eye-corner distances
    assert found["mesh/shape"] == pytest.approx(0.1, rel=0.1) and found["mesh/offset"] >= found["mesh/shape"]


def test_frames_without_a_face_are_left_out_and_none_is_skipped() -> None:
    expected, valid = _mesh()
    observed = expected + (5.0, 0.0)
    observed[1] = np.nan
    assert mesh_view_metrics(observed, expected, valid)[0]["mesh/offset"] == pytest.approx(0.1)
    found, skipped = mesh_view_metrics(np.full_like(expected, np.nan), expected, valid)
    assert not found and set(skipped) == set(MESH_VIEW_KEYS) and "no face" in skipped["mesh/offset"]


def test_the_tracked_frames_match_their_own_view_and_not_a_turned_one(synthetic_dataset: Path) -> None:
    _, clip = load_clip(synthetic_dataset, "test")
    size = clip.frames.shape[-1]
    config = EvaluationConfig(identity_every=1000)
    frames = (frame.permute(1, 2, 0).numpy() for frame in clip.frames)
    track = observe_video(frames, len(clip), config, load_experts(config, torch.device("cpu")), IdentityEmbedder())
    assert track.mesh is not None and track.mesh.shape == (len(clip), FACE_VERTICES, 2)
    points, valid = clip.face_points[:, :FACE_VERTICES], clip.face_point_valid[:, :FACE_VERTICES]
    cameras = Cameras(clip.cam2world, clip.intrinsics, size, size)

    def metrics(yaw: float) -> dict[str, float]:
        view = rotate_about_origin(clip.cam2world, torch.full((len(clip),), yaw), torch.zeros(len(clip)))
        found, skipped = mesh_view_metrics(track.mesh, rigid_mesh_in_view(points, valid, cameras, view).numpy(),
                                           valid.numpy())
        assert not skipped
        return found

    own, turned = metrics(0.0), metrics(math.radians(30))
    assert own["mesh/offset"] < 0.1 and own["mesh/shape"] < 0.1  # the tracker agrees with the preprocessing's mesh
    assert turned["mesh/offset"] > 2 * own["mesh/offset"] and turned["mesh/shape"] > own["mesh/shape"]
