"""A depth prior for the face from the tracked 3D face mesh (pure functions).

The mediapipe mesh of each frame gives, per vertex, its pixel (x, y) and a relative depth z in the same pixel scale
(larger is farther). Under the aligned frame's pinhole camera a pixel offset at depth D is D/f world units, so the
relative camera-space depth of a vertex is z·s/f times D, with s the alignment's similarity scale and f the focal in
aligned pixels. Only the *shape* is trusted: losses compare depths after removing each frame's mean, and D is the
rendered face's own mean depth. Vertices near the face outline are dropped: there the surface is seen at grazing
angles and one render pixel covers cheek and background.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from numpy import ndarray
from torch import Tensor

FACE_VERTICES = 468
"""mediapipe's face-surface vertices (the 10 iris points after them are not surface points)."""
OUTLINE_MARGIN = 0.04
"""Vertices closer than this fraction of the face width to the outline (2D convex hull) are left out."""


def aligned_face_points(mesh: Float[ndarray, "frames points 3"], affine: Float[ndarray, "frames 2 3"],
                        focal: Float[ndarray, " frames"]) -> Float[ndarray, "frames 468 3"]:
    """Face vertices in the aligned frame: (x, y) in aligned pixels and z·s/f, the camera-space depth offset in units
    of the face's distance to the camera (dimensionless)."""
    points = mesh[:, :FACE_VERTICES].astype(np.float64)
    linear = affine[:, :, :2].astype(np.float64)  # [N, 2, 2]
    xy = np.einsum("nij,npj->npi", linear, points[..., :2]) + affine[:, None, :, 2]
    scale = np.sqrt(np.abs(np.linalg.det(linear)))  # similarity scale per frame
    relative = points[..., 2] * (scale / focal)[:, None]
    return np.concatenate([xy, relative[..., None]], axis=-1).astype(np.float32)


def interior_vertices(xy: Float[ndarray, "frames points 2"], margin: float = OUTLINE_MARGIN
                      ) -> Bool[ndarray, "frames points"]:
    """True for points farther than `margin` × (hull width) inside the 2D convex hull of the frame's points."""
    keep = np.zeros(xy.shape[:2], dtype=bool)
    for frame, points in enumerate(xy):
        hull = cv2.convexHull(points.astype(np.float32))[:, 0]  # [H, 2], counter-clockwise in image space
        start, edge = hull, np.roll(hull, -1, axis=0) - hull  # edges start → start + edge
        length = np.linalg.norm(edge, axis=1).clip(min=1e-6)
        # distance of every point to every edge's supporting line; inside a convex polygon the nearest boundary
        # distance is the minimum over the edges' lines
        offsets = points[:, None, :] - start[None]  # [P, H, 2]
        distance = np.abs(offsets[..., 0] * edge[:, 1] - offsets[..., 1] * edge[:, 0]) / length
        width = np.ptp(hull[:, 0])
        keep[frame] = distance.min(axis=1) > margin * width
    return keep


def sample_pixels(image: Float[Tensor, "batch channels h w"], pixels: Float[Tensor, "batch points 2"],
                  image_size: int) -> Float[Tensor, "batch channels points"]:
    """`image` (any resolution covering the same view) bilinearly sampled at pixels (x, y) of an `image_size`²
    image, in float32; the border value outside."""
    grid = pixels / image_size * 2 - 1  # pixel-centre convention: x = j + 0.5 ↔ align_corners=False
    return F.grid_sample(image.float(), grid[:, :, None].float(), mode="bilinear", padding_mode="border",
                         align_corners=False)[..., 0]


def camera_depth(ray_depth: Float[Tensor, "batch 1 h w"], pixels: Float[Tensor, "batch points 2"],
                 intrinsics: Float[Tensor, "batch 3 3"], image_size: int) -> Float[Tensor, "batch points"]:
    """Camera-space z of the rendered surface under each pixel (x, y) of an `image_size`² image whose intrinsics
    are given: the ray depth map (distance along unit rays, any resolution covering the same view) is bilinearly
    sampled at the pixel and multiplied by the ray's z component."""
    sampled = sample_pixels(ray_depth, pixels, image_size)[:, 0]  # [B, P]
    focal = intrinsics[:, None, :2, :2].diagonal(dim1=-2, dim2=-1)  # [B, 1, 2]
    normalised = (pixels - intrinsics[:, None, :2, 2]) / focal  # camera-frame (x/z, y/z)
    return sampled * torch.rsqrt(1 + normalised.square().sum(-1))
