"""Head pose from the mediapipe 3D face mesh, as the orbit camera (yaw, pitch, roll) that sees the aligned frame.

The mesh's x, y are image pixels and z is depth on the same scale, so its points live in a (weak-perspective) OpenCV
camera frame. The face's own frame is read off the mesh directly, without any 3D template:
* x (the subject's left, world +x): the mean of (left − right) over 22 mirror-symmetric landmark pairs;
* y (world up): the nose-base (2, 94) to nasion (168, 6) line, orthogonalised against x and then tilted forward by
  `PROFILE_TILT` about x; chin and lips are not used because they move with speech;
* z = x × y (out of the face, toward a frontal camera).
Those axes, written in camera coordinates, form the world-to-camera rotation; the orbit camera with that rotation
gives the angles (docs/conventions.md: a head turning toward its own right gives camera yaw > 0). Angles are
measured on the original frame and the roll is then corrected by the in-plane rotation that the alignment applied.
Because face mesh sees only a crop around the face, its rotation is the face's appearance along the ray to it,
which is what the aligned (re-centred) frame shows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from jaxtyping import Float
from numpy import ndarray
from scipy.ndimage import gaussian_filter1d

from deltaplane.geometry.cameras import (DEFAULT_PIVOT, DEFAULT_RADIUS, Cameras, cam2world_to_angles,
                                         orbit_cameras)
from deltaplane.preprocess.align import affine_rotation

SYMMETRIC_PAIRS = (
    (263, 33), (362, 133),  # outer and inner eye corners
    (300, 70), (334, 105),  # brows
    (332, 103), (297, 67),  # forehead
    (454, 234), (323, 93), (356, 127), (389, 162),  # sides of the face and temples
    (345, 116), (352, 123), (330, 101), (266, 36), (425, 205), (411, 187),  # cheekbones and cheeks
    (294, 64), (279, 49), (331, 102),  # nostril wings
    (291, 61),  # mouth corners
    (288, 58), (397, 172),  # jaw
)
"""mediapipe face-mesh pairs (subject's left, subject's right); checked mirror-symmetric to ~1 % of the eye width."""
UPPER_MIDLINE = (168, 6)
"""Nasion and upper nose bridge."""
LOWER_MIDLINE = (2, 94)
"""Nose base (subnasale)."""
PROFILE_TILT = math.radians(9.0)
"""How far the nose-base-to-nasion line leans back from the vertical (the nose base sits in front of the nasion).
Calibrated so that the mean pitch over the six talking-head test clips, filmed near eye level, is ≈ 0 (per-clip
means then spread over about ±7°)."""


def face_rotation(mesh: Float[ndarray, "*batch 478 3"]) -> Float[ndarray, "*batch 3 3"]:
    """World-to-camera rotation of the face: its columns are the face's x (left), y (up) and z (forward) axes in
    OpenCV camera coordinates."""
    mesh = mesh.astype(np.float64)
    left, right = zip(*SYMMETRIC_PAIRS)
    x_axis = (mesh[..., left, :] - mesh[..., right, :]).mean(-2)
    x_axis /= np.linalg.norm(x_axis, axis=-1, keepdims=True)
    up = mesh[..., UPPER_MIDLINE, :].mean(-2) - mesh[..., LOWER_MIDLINE, :].mean(-2)
    y_axis = up - (up * x_axis).sum(-1, keepdims=True) * x_axis
    y_axis /= np.linalg.norm(y_axis, axis=-1, keepdims=True)
    z_axis = np.cross(x_axis, y_axis)
    cos, sin = math.cos(PROFILE_TILT), math.sin(PROFILE_TILT)  # turn the profile line upright about x
    return np.stack([x_axis, cos * y_axis + sin * z_axis, cos * z_axis - sin * y_axis], axis=-1)


def camera_angles(rotation: Float[ndarray, "*batch 3 3"]) -> Float[ndarray, "*batch 3"]:
    """(yaw, pitch, roll) in radians of the orbit camera whose world-to-camera rotation is `rotation`: the camera
    on the sphere of radius 2.7 whose line of sight toward the pivot has this direction, rolled to match."""
    cam2world_rotation = torch.from_numpy(np.swapaxes(rotation, -1, -2).astype(np.float64))
    forward = cam2world_rotation[..., :, 2]
    pivot = torch.tensor(DEFAULT_PIVOT, dtype=torch.float64)
    # position = pivot − t·forward with |position| = radius: the positive root of t² − 2t(pivot·f) + |pivot|² − r² = 0
    along = (forward * pivot).sum(-1)
    distance = along + torch.sqrt(along**2 - pivot.dot(pivot) + DEFAULT_RADIUS**2)
    cam2world = torch.zeros(*cam2world_rotation.shape[:-2], 4, 4, dtype=torch.float64)
    cam2world[..., :3, :3] = cam2world_rotation
    cam2world[..., :3, 3] = pivot - distance[..., None] * forward
    cam2world[..., 3, 3] = 1.0
    return cam2world_to_angles(cam2world).numpy()


def head_angles(mesh: Float[ndarray, "*batch 478 3"]) -> Float[ndarray, "*batch 3"]:
    """Camera (yaw, pitch, roll) in radians relative to the face, in the frame the mesh was measured in."""
    return camera_angles(face_rotation(mesh))


def aligned_angles(angles: Float[ndarray, "*batch 3"], affines: Float[ndarray, "*batch 2 3"]
                   ) -> Float[ndarray, "*batch 3"]:
    """Angles for the aligned frames: turning the image content clockwise by θ (what an affine with rotation θ does)
    is a camera roll of −θ, since a positive roll turns the scene counter-clockwise on screen."""
    rotation = np.vectorize(affine_rotation, signature="(2,3)->()")(affines)
    aligned = angles.astype(np.float64).copy()
    aligned[..., 2] = np.angle(np.exp(1j * (aligned[..., 2] - rotation)))  # wrapped to (−π, π]
    return aligned


def smooth_angles(angles: Float[ndarray, "frames 3"], sigma: float = 1.0) -> Float[ndarray, "frames 3"]:
    """Temporal Gaussian smoothing of per-frame angles (σ in frames, as Talk3D smooths its angles); angles are
    unwrapped first so a roll near ±π does not average to 0."""
    if sigma <= 0 or len(angles) < 2:
        return angles.copy()
    unwrapped = np.unwrap(angles.astype(np.float64), axis=0)
    smoothed = gaussian_filter1d(unwrapped, sigma, axis=0, mode="nearest")
    return np.angle(np.exp(1j * smoothed)).astype(angles.dtype)


def aligned_cameras(angles: Float[ndarray, "frames 3"], size: int) -> Cameras:
    """Orbit cameras (default radius, pivot and focal 3.6) for size × size aligned frames."""
    values = torch.from_numpy(np.asarray(angles, np.float32))
    return orbit_cameras(values[:, 0], values[:, 1], size, size, roll=values[:, 2])
