"""The eyes, the brows and the mouth opening of the 68 aligned landmarks as regions and measures (pure numpy).

The face mesh's vertices on the eyelid margins and the inner lips sit on the edge between skin and sclera, teeth
or the dark mouth, and those edges move (blinks, speech): the frame's colour at such a vertex is sclera one frame
and lid the next, not a surface colour that another camera would see at that point. `near_features` finds them
so that the pseudo multi-view colour term (docs/novel-views.md) leaves them out.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float
from numpy import ndarray

EYES = (tuple(range(36, 42)), tuple(range(42, 48)))
"""The 68 landmarks' eye outlines (the subject's right eye first), each a closed polygon in order."""
INNER_MOUTH = tuple(range(60, 68))
"""The inner lip outline: the mouth opening (a sliver when closed)."""
OUTER_MOUTH = tuple(range(48, 60))
"""The outer lip outline."""
BROWS = (tuple(range(17, 22)), tuple(range(22, 27)))
"""The 68 landmarks' brows, in the order of `EYES` (each brow above its eye)."""
BROW_HEIGHT_MEAN = 0.2
"""A typical `brow_heights` (0.19–0.27 on the reference clips), subtracted by `brow_feature`."""
BROW_FEATURE_SCALE = 3.0
"""`brow_feature`'s factor: the reference clips' brows move by 0.016–0.032 of the inter-ocular distance (std), so
the feature moves by 0.05–0.10, about as much as the 6-D landmark feature's points (0.03–0.09), and the landmark
token's highest frequency (2^5) does not wrap round many times."""
FRAME_CHUNK = 128
"""`near_features` works through this many frames at a time: a frame's points against an outline's edges take
~0.3 MB in each of several temporaries, so a 5-minute clip at once would take ~2 GB."""
FEATURE_MARGIN = 0.03
"""Vertices within this fraction of the face width (jaw points 0–16) of an eye or the mouth opening are near it:
about 7 px at 512², the width of the lid margin and of the inner lip's edge."""


def polygon_distance(points: Float[ndarray, "*batch points 2"], polygon: Float[ndarray, "*batch corners 2"]
                     ) -> Float[ndarray, "*batch points"]:
    """Signed distance from each point to a closed polygon's outline: negative inside (even–odd rule), positive
    outside; any polygon, convex or not."""
    start = polygon[..., None, :, :]  # [*, 1, K, 2]
    edge = np.roll(polygon, -1, axis=-2)[..., None, :, :] - start
    offset = points[..., :, None, :] - start  # [*, P, K, 2]
    along = np.clip((offset * edge).sum(-1) / np.maximum((edge * edge).sum(-1), 1e-12), 0.0, 1.0)
    distance = np.linalg.norm(offset - along[..., None] * edge, axis=-1).min(-1)
    # even–odd: count the edges that a ray from the point toward +x crosses
    y0, y1 = start[..., 1], start[..., 1] + edge[..., 1]
    straddles = (y0 > points[..., :, None, 1]) != (y1 > points[..., :, None, 1])
    crossing_x = start[..., 0] + (points[..., :, None, 1] - y0) / np.where(y1 == y0, 1.0, y1 - y0) * edge[..., 0]
    inside = (straddles & (points[..., :, None, 0] < crossing_x)).sum(-1) % 2 == 1
    return np.where(inside, -distance, distance)


def face_width(landmarks: Float[ndarray, "*batch 68 2"]) -> Float[ndarray, " *batch"]:
    """Distance between the jaw's end points (0 and 16): the face width at the ears."""
    return np.linalg.norm(landmarks[..., 16, :] - landmarks[..., 0, :], axis=-1)


def near_features(points: Float[ndarray, "frames points 2"], landmarks: Float[ndarray, "frames 68 2"],
                  margin: float = FEATURE_MARGIN) -> Bool[ndarray, "frames points"]:
    """True for the points inside an eye or the mouth opening, or within `margin` × the face width of their
    outline (same pixel units for both inputs)."""
    limit = margin * face_width(landmarks)[:, None]
    near = np.zeros(points.shape[:2], dtype=bool)
    for start in range(0, len(points), FRAME_CHUNK):
        chunk = slice(start, start + FRAME_CHUNK)
        for outline in (*EYES, INNER_MOUTH):
            near[chunk] |= polygon_distance(points[chunk], landmarks[chunk, outline]) <= limit[chunk]
    return near


def brow_heights(landmarks: Float[ndarray, "*frames 68 2"]) -> Float[ndarray, "*frames 2"]:
    """Each brow's height over its eye (mean y of the eye outline minus mean y of the brow, image y pointing down),
    over the inter-ocular distance (outer eye corners 36 and 45): raised brows give larger values, and the scale
    of the face does not matter."""
    landmarks = np.asarray(landmarks, np.float64)
    distance = np.linalg.norm(landmarks[..., 45, :] - landmarks[..., 36, :], axis=-1)
    heights = [landmarks[..., eye, 1].mean(-1) - landmarks[..., brow, 1].mean(-1) for eye, brow in zip(EYES, BROWS)]
    return np.stack(heights, axis=-1) / np.maximum(distance, 1e-9)[..., None]


def brow_feature(landmarks: Float[ndarray, "*frames 68 2"]) -> Float[ndarray, "*frames 2"]:
    """`brow_heights` centred on a typical face and scaled to move about as much as the landmark feature: the
    condition input that lets the brows follow their own signal (`fields.conditions.ConditionEncoderConfig.brows`)."""
    return BROW_FEATURE_SCALE * (brow_heights(landmarks) - BROW_HEIGHT_MEAN)
