"""From raw per-frame face tracks to the dataset's geometry: gap filling, smoothing, alignment, pose, cameras."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deltaplane.preprocess.align import invert_affine, rigid_alignment, smooth_track, transform_points
from deltaplane.preprocess.head_pose import aligned_angles, aligned_cameras, head_angles, smooth_angles
from deltaplane.preprocess.landmarks import eye_openness, fill_missing, landmark_feature

FEATURE_SIGMA = 2.0
"""Temporal smoothing of the landmarks behind the 6-D landmark feature (frames; Talk3D)."""
ANGLE_SIGMA = 1.0
"""Temporal smoothing of the head angles (frames; Talk3D)."""


@dataclass(frozen=True)
class FrameGeometry:
    arrays: dict[str, np.ndarray]
    """The arrays of tracks.npz (see deltaplane.data.schema.TRACK_ARRAYS)."""


def frame_geometry(raw: dict[str, np.ndarray], width: int, height: int, size: int, fps: float,
                   max_missing_fraction: float, align_smoothing: float) -> FrameGeometry:
    """Raw tracks (NaN rows where no face was found) → every per-frame array of the dataset; `align_smoothing` is
    the σ (frames) of the temporal Gaussian on the landmarks that place each aligned frame
    (`PreprocessConfig.align_smoothing`)."""
    detected = ~np.isnan(raw["landmarks68"].reshape(len(raw["landmarks68"]), -1)).any(1)
    landmarks, _ = fill_missing(raw["landmarks68"], fps, max_missing_fraction)
    mesh, _ = fill_missing(raw["mesh"], fps, max_missing_fraction)
    affine = rigid_alignment(smooth_track(landmarks, align_smoothing), size).astype(np.float32)
    inverse = np.stack([invert_affine(matrix) for matrix in affine]).astype(np.float32)
    aligned_points = np.stack([transform_points(points, matrix) for points, matrix in zip(landmarks, affine)])
    angles = aligned_angles(smooth_angles(head_angles(mesh), ANGLE_SIGMA), affine).astype(np.float32)
    cameras = aligned_cameras(angles, size)
    arrays = {
        "landmarks_original": landmarks.astype(np.float32),
        "landmarks_aligned": aligned_points.astype(np.float32),
        "mesh_original": mesh.astype(np.float32),
        "affine": affine,
        "inverse_affine": inverse,
        "angles": angles,
        "cam2world": cameras.cam2world.numpy().astype(np.float32),
        "intrinsics": cameras.intrinsics.numpy().astype(np.float32),
        "eye_openness": np.array([eye_openness(points) for points in landmarks], np.float32),
        "landmark_feature": np.stack([landmark_feature(points, width, height)
                                      for points in smooth_track(landmarks, FEATURE_SIGMA)]),
        "face_detected": detected,
    }
    return FrameGeometry(arrays)
