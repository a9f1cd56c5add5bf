"""Faces in unpaired renders: `faces/missing` counts the frames the tracker has no face in, `faces/detected` the
share of frames in which the detector alone finds the tracked face (the tracker follows a face from one detection
on, so the first can read 0 where the second reads 0.5: obama_20s's yaw −30° renders, BENCHMARKS.md run 31)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltaplane.evaluation.face import IdentityEmbedder
from deltaplane.evaluation.scoring import EvaluationConfig, VideoTrack, face_counts, load_experts, observe_video
from deltaplane.synthetic import load_portrait


def _track(found: list[bool], detected: list[bool] | None) -> VideoTrack:
    count = len(found)
    landmarks = np.zeros((count, 68, 2), np.float32)
    landmarks[~np.array(found)] = np.nan
    return VideoTrack(landmarks, np.full((count, 128), np.nan, np.float32), None, None, None,
                      detected=None if detected is None else np.array(detected))


def test_face_counts_tell_tracked_frames_from_detected_ones() -> None:
    counts = face_counts(_track([True] * 4, [False, True, False, True]))
    assert counts == {"faces/missing": 0, "faces/detected": 0.5}
    assert face_counts(_track([True, False], None)) == {"faces/missing": 1}  # paired scoring runs no detector


def test_observe_video_runs_the_detector_on_every_frame() -> None:
    face = load_portrait()
    grey = np.full_like(face, 128)
    frames = [face, face, grey, face]
    config = EvaluationConfig(identity_every=100)
    track = observe_video(iter(frames), len(frames), config, load_experts(config, torch.device("cpu")),
                          IdentityEmbedder())
    assert track.found.tolist() == [True, True, False, True]
    assert track.detected is not None and track.detected.tolist() == [True, True, False, True]
    assert track.mesh is not None and np.isnan(track.mesh[2]).all() and np.isfinite(track.mesh[[0, 1, 3]]).all()
    # the same picture, the same mesh to within the tracker's crop (it follows the last frame's box)
    assert np.linalg.norm(track.mesh[0] - track.mesh[1], axis=-1).mean() < 1.0
    assert face_counts(track) == {"faces/missing": 1, "faces/detected": pytest.approx(0.75)}
