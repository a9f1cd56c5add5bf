"""A round head behind the face (pure functions): points on an ellipsoid fitted to the head's silhouette, in the
face mesh's relative-depth units, for the depth prior and the pseudo multi-view terms (docs/novel-views.md "The
head proxy").

The mesh covers the face only. Hair and ears, seen edge-on at the head's outline in near-frontal frames, get no
depth, so the field draws them on the face's card and side views cut the head off at the far eye's corner. Here the
head (parsing label ≥ 2 above the chin) is an ellipse in the image, from the second moments of its mask: a filled
ellipse of semi-axes (A, B) has variances A²/4 and B²/4. In depth it is the front half of an ellipsoid of semi-axis
C = `depth_ratio`·A, C/f relative units (an offset of p pixels at depth D is p·D/f world units, f the focal in
pixels: `geometry.face_depth`). Its front is placed on the mesh: the median over the frame's valid vertices of the
mesh depth minus the ellipsoid's offset there. Head points are hair and ear pixels (label 2) above the chin, away
from the background (an outline pixel mixes hair and backdrop); beyond the ellipse's rim they sit at its widest
section, as ears do.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from jaxtyping import Bool, Float, UInt8
from numpy import ndarray

HEAD_LABEL = 2
"""Parsing label of the head outside the face: hair, ears, neck (docs/dataset.md)."""
CHIN = 8
"""68-point landmark of the chin: rows below it are neck and torso."""


@dataclass(frozen=True)
class HeadProxyConfig:
    """How the head proxy is fitted and sampled."""

    points: int = 128
    """Head points per frame (fewer are valid where the head shows fewer hair and ear pixels)."""
    depth_ratio: float = 1.3
    """Ellipsoid depth semi-axis over its width semi-axis: a head is about 1.3 times as long as it is broad."""
    max_radius: float = 1.5
    """Points lie inside this normalised radius of the silhouette's ellipse. Beyond its rim (1) they sit at the
    ellipsoid's widest section, C behind its front: ears, and hair that stands out."""
    inset: float = 0.01
    """Points lie at least this fraction of the image side inside the person's mask (an outline pixel mixes hair
    and backdrop)."""


@dataclass(frozen=True)
class HeadEllipse:
    """The head's silhouette as an ellipse in pixels, and its depth semi-axis in relative units."""

    centre: Float[ndarray, "2"]
    axes: Float[ndarray, "2"]
    """Semi-axes (A, B) along x and y, pixels."""
    depth: float
    """C/f: the ellipsoid's depth semi-axis in units of the face's distance."""

    def offset(self, xy: Float[ndarray, "points 2"]) -> Float[ndarray, " points"]:
        """Relative depth of the ellipsoid's front surface at pixels `xy` behind its front point (C/f at the rim
        and beyond)."""
        return self.depth * (1 - np.sqrt(np.clip(1 - self.radius(xy) ** 2, 0, None)))

    def radius(self, xy: Float[ndarray, "points 2"]) -> Float[ndarray, " points"]:
        """Normalised radius of pixels `xy` in the silhouette's ellipse (1 on its rim)."""
        return np.sqrt((((xy - self.centre) / self.axes) ** 2).sum(-1))


def fit_head_ellipse(parsing: UInt8[ndarray, "size size"], chin_y: float, focal: float,
                     config: HeadProxyConfig = HeadProxyConfig()) -> HeadEllipse | None:
    """The ellipse with the second moments of the head's mask (label ≥ 2) above `chin_y`; None without one."""
    rows, cols = np.nonzero(parsing[: max(int(chin_y), 0)] >= HEAD_LABEL)
    if rows.size < 16:
        return None
    centre = np.array([cols.mean(), rows.mean()]) + 0.5  # pixel centres
    axes = 2 * np.sqrt(np.array([cols.var(), rows.var()])) + 0.5
    return HeadEllipse(centre, axes, config.depth_ratio * axes[0] / focal)


def head_points(parsing: UInt8[ndarray, "size size"], mesh_points: Float[ndarray, "468 3"],
                mesh_valid: Bool[ndarray, " 468"], chin_y: float, focal: float, rng: np.random.Generator,
                config: HeadProxyConfig = HeadProxyConfig()
                ) -> tuple[Float[ndarray, "points 3"], Bool[ndarray, " points"]]:
    """`config.points` head points of one frame: (x, y) pixels and relative depth on the ellipsoid, anchored on the
    face mesh (`mesh_points` in the same pixels and units, `geometry.face_depth.aligned_face_points`), and which are
    valid (none without a fitted head or valid vertices). `rng` draws the pixels."""
    points = np.zeros((config.points, 3), np.float32)
    valid = np.zeros(config.points, bool)
    ellipse = fit_head_ellipse(parsing, chin_y, focal, config)
    if ellipse is None or not mesh_valid.any():
        return points, valid
    front = float(np.median(mesh_points[mesh_valid, 2] - ellipse.offset(mesh_points[mesh_valid, :2])))
    size = parsing.shape[0]
    inset = max(int(round(config.inset * size)), 1)
    person = cv2.erode((parsing >= 1).astype(np.uint8), np.ones((2 * inset + 1, 2 * inset + 1), np.uint8)) > 0
    rows, cols = np.nonzero((parsing == HEAD_LABEL) & person)
    xy = np.stack([cols, rows], -1).astype(np.float64) + 0.5
    xy = xy[(xy[:, 1] < chin_y) & (ellipse.radius(xy) < config.max_radius)]
    if not xy.shape[0]:
        return points, valid
    chosen = xy[rng.choice(xy.shape[0], min(config.points, xy.shape[0]), replace=False)]
    count = chosen.shape[0]
    points[:count, :2] = chosen
    points[:count, 2] = front + ellipse.offset(chosen)
    valid[:count] = True
    return points, valid
