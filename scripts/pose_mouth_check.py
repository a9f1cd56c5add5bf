"""How much of a dataset's tracked mouth opening its cameras predict, and how steady its alignment is.

A camera that moves with the mouth lets the static scene store the mouth per camera (docs/lip-motion.md). For each
dataset this prints: the correlation of the mouth opening with camera yaw, pitch and roll; the R² of a linear fit
of the opening from the six camera parameters (angles and position), raw and after removing a σ = 5-frame trend;
the correlation of the opening with a pitch read from the upper face alone (forehead 10/151 → nasion 168/6 of the
mediapipe mesh: real nodding, not an alignment artefact); and the frame-to-frame jitter of the alignment's
similarity (std after removing a σ = 3-frame trend: scale in %, rotation in degrees, shift in pixels); and the range
of the head's yaw, pitch and roll over all frames (minimum, 5th and 95th percentiles, maximum; degrees): how far the
video turns, against the views rendered off axis (docs/novel-views.md).

    python scripts/pose_mouth_check.py DATASET [DATASET ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from deltaplane.data.schema import TRACKS
from deltaplane.evaluation.face import mouth_opening
from deltaplane.geometry.cameras import cam2world_to_angles
from deltaplane.preprocess.align import affine_rotation, affine_scale


def detrended(values: np.ndarray, sigma: float) -> np.ndarray:
    return values - gaussian_filter1d(values, sigma, axis=0)


def r_squared(features: np.ndarray, target: np.ndarray) -> float:
    design = np.c_[features, np.ones(len(features))]
    weights, *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(1 - (target - design @ weights).var() / target.var())


def check(dataset: Path) -> dict[str, float]:
    with np.load(dataset / TRACKS) as tracks:
        opening = np.array([mouth_opening(points) for points in tracks["landmarks_aligned"]])
        cam2world, affine, mesh = tracks["cam2world"], tracks["affine"], tracks["mesh_original"].astype(np.float64)
    angles = cam2world_to_angles(torch.from_numpy(cam2world).float()).numpy()  # yaw, pitch, roll
    camera = np.concatenate([angles, cam2world[:, :3, 3]], axis=1)  # yaw, pitch, roll, position
    up = mesh[:, [10, 151]].mean(1) - mesh[:, [168, 6]].mean(1)
    upper_pitch = np.arctan2(up[:, 2], -up[:, 1])
    scale = np.array([affine_scale(matrix) for matrix in affine])
    rotation = np.array([affine_rotation(matrix) for matrix in affine])
    row = {f"corr_{name}": float(np.corrcoef(camera[:, i], opening)[0, 1])
           for i, name in enumerate(("yaw", "pitch", "roll"))}
    row.update(r2_camera=r_squared(camera, opening),
               r2_camera_detrended=r_squared(detrended(camera, 5), detrended(opening, 5)),
               corr_upper_face_pitch=float(np.corrcoef(upper_pitch, opening)[0, 1]),
               jitter_scale_percent=float(100 * detrended(scale, 3).std() / scale.mean()),
               jitter_rotation_degrees=float(np.degrees(detrended(rotation, 3).std())),
               jitter_shift_pixels=float(detrended(affine[:, :, 2], 3).std()))
    for i, name in enumerate(("yaw", "pitch", "roll")):
        degrees = np.degrees(angles[:, i])
        row.update({f"{name}_{label}_degrees": float(value) for label, value in
                    zip(("min", "p5", "p95", "max"), (degrees.min(), *np.percentile(degrees, [5, 95]), degrees.max()))})
    return row


def main() -> None:
    print(json.dumps({Path(path).name: check(Path(path)) for path in sys.argv[1:]}, indent=1))


if __name__ == "__main__":
    main()
