"""The mouth shape of a frame: its 20 mouth landmarks in a head-fixed, scale-free frame (docs/conventions.md).

Points 48–67 of the 68-point layout, relative to the centre of the nose (points 27–35, which do not move when the
mouth opens or the jaw drops), divided by the outer-eye-corner distance (36–45). A jaw drop, a smile and pursed lips
all change it; the head's position and size in the frame do not.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float
from numpy import ndarray

MOUTH_POINTS = slice(48, 68)
NOSE_POINTS = slice(27, 36)
EYE_CORNERS = (36, 45)
MOUTH_SHAPE_DIM = 40
"""20 points × (x, y)."""


def mouth_shape(landmarks68: Float[ndarray, "*frames 68 2"]) -> Float[ndarray, "*frames 40"]:
    """Mouth points relative to the nose centre over the eye-corner distance, flattened as (x48, y48, x49, …)."""
    landmarks68 = np.asarray(landmarks68, np.float64)
    origin = landmarks68[..., NOSE_POINTS, :].mean(axis=-2, keepdims=True)
    scale = np.linalg.norm(landmarks68[..., EYE_CORNERS[1], :] - landmarks68[..., EYE_CORNERS[0], :], axis=-1)
    relative = (landmarks68[..., MOUTH_POINTS, :] - origin) / np.maximum(scale, 1e-6)[..., None, None]
    return relative.reshape(*relative.shape[:-2], MOUTH_SHAPE_DIM).astype(np.float32)
