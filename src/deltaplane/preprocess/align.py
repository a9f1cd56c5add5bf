"""VIVE3D-style alignment: a similarity transform maps 6 facial landmarks onto one fixed template.

Every frame of every clip is warped onto the same 2D template, the projection of `TEMPLATE_3D` through the canonical
frontal camera (yaw = pitch = 0, focal 3.6, docs/conventions.md). Affines are 2×3 matrices acting on (x, y, 1) in
continuous pixel coordinates (pixel (i, j) has its centre at (j + 0.5, i + 0.5)); OpenCV's integer-centre convention
is converted only at the cv2 boundary.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from jaxtyping import Float, UInt8
from numpy import ndarray
from scipy.ndimage import gaussian_filter1d

from deltaplane.errors import InputError
from deltaplane.geometry.cameras import DEFAULT_FOCAL, intrinsics_from_focal, orbit_cam2world, project

ALIGN_INDICES = (30, 8, 45, 36, 64, 60)
"""The 68-point (iBUG) indices used for alignment: nose tip, chin, outer eye corners, inner mouth corners."""

TEMPLATE_3D = np.array([
    [0.0, 0.01, 0.25],     # 30 nose tip
    [0.0, -0.16, 0.22],    # 8 chin
    [0.085, 0.10, 0.18],   # 45 outer corner of the subject's left eye (world +x)
    [-0.085, 0.10, 0.18],  # 36 outer corner of the subject's right eye
    [0.04, -0.075, 0.20],  # 64 inner mouth corner, subject's left
    [-0.04, -0.075, 0.20],  # 60 inner mouth corner, subject's right
], dtype=np.float32)
"""The 6 alignment landmarks in world units (y up, face toward +z), from a human face with outer eye corners 0.17 apart.
At 512² this puts the outer eye corners 124 px apart, the eyes at row 220 and the chin at row 412: the whole head
with its hair, the neck and the top of the shoulders (checked by eye on six real clips; the face sits 0.02 below the
first guess so that tall hair is not cut)."""

RIGID_INDICES = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
"""68-point indices that speech does not move: the nose (bridge, tip, nostrils, base) and the four eye corners.
The chin and mouth corners of `ALIGN_INDICES` move with every syllable; aligning on them shifts, scales and turns
each frame with its mouth opening, and the camera derived from that alignment then predicts the mouth
(docs/lip-motion.md)."""

MAX_DIRECT_DOWNSCALE = 0.5
"""Below this scale the source is first shrunk with area averaging, so that cubic warping does not alias."""


def template_2d(size: int) -> Float[ndarray, "6 2"]:
    """Pixel positions of `TEMPLATE_3D` seen by the canonical frontal camera in a size × size image."""
    zero = torch.zeros((), dtype=torch.float64)
    cam2world = orbit_cam2world(zero, zero)
    intrinsics = intrinsics_from_focal(DEFAULT_FOCAL, size, size, dtype=torch.float64)[0]
    return project(torch.from_numpy(TEMPLATE_3D).double(), cam2world, intrinsics).numpy().astype(np.float32)


def smooth_track(values: Float[ndarray, "frames *rest"], sigma: float = 2.0) -> Float[ndarray, "frames *rest"]:
    """Temporal Gaussian smoothing along axis 0 (mode 'nearest', as Talk3D smooths its landmarks)."""
    if sigma <= 0 or len(values) < 2:
        return values.copy()
    return gaussian_filter1d(values.astype(np.float64), sigma, axis=0, mode="nearest").astype(values.dtype)


def similarity_from_points(source: Float[ndarray, "points 2"], target: Float[ndarray, "points 2"]
                           ) -> Float[ndarray, "2 3"]:
    """Least-squares similarity (rotation, uniform scale, translation) mapping `source` onto `target`.

    Procrustes as in Talk3D/FFHQ: centre both sets, divide each by its global standard deviation, take the rotation
    from the SVD of the cross-covariance (reflections excluded) and the scale std_target / std_source.
    """
    source, target = source.astype(np.float64), target.astype(np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_std, target_std = (source - source_mean).std(), (target - target_mean).std()
    if source_std < 1e-9:
        raise InputError("cannot align: the landmarks are degenerate (all at one point)")
    u, _, vt = np.linalg.svd(((source - source_mean) / source_std).T @ ((target - target_mean) / target_std))
    flip = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = (u @ flip @ vt).T  # maps centred source rows onto target: target ≈ s·R·source
    linear = (target_std / source_std) * rotation
    return np.concatenate([linear, (target_mean - linear @ source_mean)[:, None]], axis=1)


def invert_affine(affine: Float[ndarray, "2 3"]) -> Float[ndarray, "2 3"]:
    """The inverse of a 2×3 affine map."""
    inverse_linear = np.linalg.inv(affine[:, :2])
    return np.concatenate([inverse_linear, -inverse_linear @ affine[:, 2:]], axis=1)


def transform_points(points: Float[ndarray, "*batch 2"], affine: Float[ndarray, "2 3"]) -> Float[ndarray, "*batch 2"]:
    """Apply a 2×3 affine to (x, y) points (extra trailing columns such as mesh depth are not accepted)."""
    return (points @ affine[:, :2].T + affine[:, 2]).astype(points.dtype)


def affine_scale(affine: Float[ndarray, "2 3"]) -> float:
    """Uniform scale of a similarity (square root of the determinant of its linear part)."""
    return math.sqrt(abs(float(np.linalg.det(affine[:, :2]))))


def affine_rotation(affine: Float[ndarray, "2 3"]) -> float:
    """Rotation angle of a similarity in image coordinates (y down): positive values turn the image clockwise
    on screen, i.e. the content appears rotated clockwise in the output."""
    return math.atan2(float(affine[1, 0]), float(affine[0, 0]))


def alignment_affine(landmarks68: Float[ndarray, "68 2"], size: int) -> Float[ndarray, "2 3"]:
    """The similarity that maps one frame's 6 alignment landmarks onto `template_2d(size)`."""
    return similarity_from_points(landmarks68[list(ALIGN_INDICES)], template_2d(size))


def rigid_alignment(landmarks68: Float[ndarray, "frames 68 2"], size: int) -> Float[ndarray, "frames 2 3"]:
    """Per-frame similarities fitted on `RIGID_INDICES` only, onto the mean position those points take under
    `alignment_affine`: the clip keeps the template's framing on average, while a frame's own transform no longer
    moves with its mouth and chin."""
    talk3d = np.stack([alignment_affine(points, size) for points in landmarks68])
    rigid = landmarks68[:, list(RIGID_INDICES)]
    template = np.mean([transform_points(points, affine) for points, affine in zip(rigid, talk3d)], axis=0)
    return np.stack([similarity_from_points(points, template) for points in rigid])


def cv2_affine(affine: Float[ndarray, "2 3"]) -> Float[ndarray, "2 3"]:
    """The same map in OpenCV's convention, where pixel centres sit at integer coordinates."""
    linear = affine[:, :2]
    return np.concatenate([linear, (affine[:, 2] + linear.sum(1) * 0.5 - 0.5)[:, None]], axis=1)


def _prescale(rgb: ndarray, affine: Float[ndarray, "2 3"]) -> tuple[ndarray, Float[ndarray, "2 3"]]:
    """Shrink a source that the affine would downscale a lot, and compose the affine with that shrink."""
    scale = affine_scale(affine)
    if scale >= MAX_DIRECT_DOWNSCALE:
        return rgb, affine
    factor = scale / MAX_DIRECT_DOWNSCALE * 0.999
    height, width = rgb.shape[:2]
    new_width, new_height = max(1, round(width * factor)), max(1, round(height * factor))
    small = cv2.resize(rgb, (new_width, new_height), interpolation=cv2.INTER_AREA)
    shrink = np.diag([width / new_width, height / new_height])  # small-image pixels → original pixels
    return small, np.concatenate([affine[:, :2] @ shrink, affine[:, 2:]], axis=1)


def warp_to_template(rgb: UInt8[ndarray, "height width 3"], affine: Float[ndarray, "2 3"], size: int
                     ) -> UInt8[ndarray, "size size 3"]:
    """Warp an original frame into the size × size aligned frame (bicubic: 4× faster than Lanczos at 512²,
    borders replicated as in Talk3D)."""
    source, affine = _prescale(rgb, affine)
    return cv2.warpAffine(source, cv2_affine(affine), (size, size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)


def paste_back(aligned_rgb: UInt8[ndarray, "size size 3"], affine: Float[ndarray, "2 3"],
               original_rgb: UInt8[ndarray, "height width 3"], feather: float = 0.04,
               weight: Float[ndarray, "size size"] | None = None) -> UInt8[ndarray, "height width 3"]:
    """Put an aligned frame back into its original frame, blending over a border of `feather` × size pixels, or
    with `weight` (in [0, 1], in aligned pixels) when given. Original pixels whose weight is 0 are kept exactly."""
    size = aligned_rgb.shape[0]
    height, width = original_rgb.shape[:2]
    if weight is None:
        # Blend weight in the aligned frame: 0 at the border, 1 after `feather` of the size (a linear ramp).
        ramp = np.clip((np.minimum(np.arange(size), np.arange(size)[::-1]) + 0.5) / max(feather * size, 1.0), 0, 1)
        weight = np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)
    pasted = original_rgb.copy()
    rows, columns = np.nonzero(weight > 0)
    if rows.size == 0:
        return pasted
    # Blend only inside the original-frame box that the weight's support (+1 pixel for bilinear reach) maps to:
    # a 512² head in a 1080p frame touches a tenth of it, and every pixel outside is copied unchanged.
    corners = np.array([[columns.min() - 1, rows.min() - 1], [columns.max() + 2, rows.min() - 1],
                        [columns.min() - 1, rows.max() + 2], [columns.max() + 2, rows.max() + 2]], np.float64)
    inverse = invert_affine(affine)
    reach = transform_points(corners, inverse)
    x0, y0 = np.clip(np.floor(reach.min(0)).astype(int) - 1, 0, [width, height])
    x1, y1 = np.clip(np.ceil(reach.max(0)).astype(int) + 1, 0, [width, height])
    if x1 <= x0 or y1 <= y0:
        return pasted
    to_box = cv2_affine(inverse - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]]))  # aligned → box pixels
    warped = cv2.warpAffine(aligned_rgb, to_box, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(weight, to_box, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)[..., None]
    box = original_rgb[y0:y1, x0:x1].astype(np.float32)
    pasted[y0:y1, x0:x1] = np.clip(alpha * warped.astype(np.float32) + (1.0 - alpha) * box + 0.5, 0, 255)
    return pasted
