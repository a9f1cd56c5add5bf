"""The mouth shape of a frame: its 20 mouth landmarks in a head-fixed, scale-free frame (docs/conventions.md).

Points 48–67 of the 68-point layout, relative to the centre of the nose (points 27–35, which do not move when the
mouth opens or the jaw drops), divided by the outer-eye-corner distance (36–45). A jaw drop, a smile and pursed lips
all change it; the head's position and size in the frame do not.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from numpy import ndarray
from torch import Tensor

MOUTH_POINTS = slice(48, 68)
"""The 20 mouth points of the 68-point layout (outer lip 48–59, inner lip 60–67)."""
NOSE_POINTS = slice(27, 36)
EYE_CORNERS = (36, 45)
"""The outer eye corners, whose distance is the scale of every mouth measure."""
MOUTH_SHAPE_DIM = 40
"""20 points × (x, y)."""
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
"""Upper/lower inner-lip point pairs whose distances measure how open the mouth is."""
CLOSED_MOUTH = (0.02, 0.05)
"""Openings (`shape_opening`) up to the first count as closed, from the second on as open; `closed_share` ramps
between. 10 % of the frames of obama_20s, macron_fr_50s and katie_8s open less than 0.009–0.013, a quarter less
than 0.034–0.067, half less than 0.057–0.115."""


def mouth_shape(landmarks68: Float[ndarray, "*frames 68 2"]) -> Float[ndarray, "*frames 40"]:
    """Mouth points relative to the nose centre over the eye-corner distance, flattened as (x48, y48, x49, …)."""
    landmarks68 = np.asarray(landmarks68, np.float64)
    origin = landmarks68[..., NOSE_POINTS, :].mean(axis=-2, keepdims=True)
    scale = np.linalg.norm(landmarks68[..., EYE_CORNERS[1], :] - landmarks68[..., EYE_CORNERS[0], :], axis=-1)
    relative = (landmarks68[..., MOUTH_POINTS, :] - origin) / np.maximum(scale, 1e-6)[..., None, None]
    return relative.reshape(*relative.shape[:-2], MOUTH_SHAPE_DIM).astype(np.float32)


def shape_opening(shapes: Float[Tensor, "*frames 40"]) -> Float[Tensor, "*frames"]:
    """Inner-lip gap of mouth shapes (`mouth_shape`, already over the outer-eye-corner distance): the mean of the
    `INNER_LIP_PAIRS` distances, as `evaluation.face.mouth_opening` measures the same landmarks."""
    points = shapes.reshape(*shapes.shape[:-1], -1, 2)
    first = MOUTH_POINTS.start
    return torch.stack([(points[..., upper - first, :] - points[..., lower - first, :]).norm(dim=-1)
                        for upper, lower in INNER_LIP_PAIRS]).mean(0)


def closed_share(openings: Float[Tensor, "*frames"]) -> Float[Tensor, "*frames"]:
    """1 for a closed mouth, 0 for an open one, linear between the two `CLOSED_MOUTH` openings."""
    closed, opened = CLOSED_MOUTH
    return ((opened - openings) / (opened - closed)).clamp(0, 1)
