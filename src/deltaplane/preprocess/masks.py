"""One uint8 label map per aligned frame: face regions from landmark geometry, person vs background from mediapipe.

Labels (each region contains the higher ones, so thresholds give the usual masks):

    0 background · 1 torso · 2 head-other (hair, ears, neck above the chin line) · 3 face-middle (nose, cheeks)
    4 upper face (eyes and brows) · 5 lower face (mouth and jaw below the nose)

face = label ≥ 3, head = label ≥ 2, person = label ≥ 1. The face regions come from the landmarks alone, so they are
labelled even where the segmenter misses; head vs torso splits the segmented person at the chin line.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import cv2
import numpy as np
from jaxtyping import Bool, Float, UInt8
from numpy import ndarray

BACKGROUND, TORSO, HEAD, FACE_MIDDLE, UPPER_FACE, LOWER_FACE = range(6)
LABEL_NAMES = ("background", "torso", "head", "face_middle", "upper_face", "lower_face")
"""Names of labels 0–5 (`head` here is head-other; the `head` mask of `masks_from_parsing` is label ≥ 2)."""

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
"""mediapipe face-mesh silhouette, in order around the face; 10 is the top of the forehead."""
JAW = tuple(range(17))
BROWS = tuple(range(17, 27))
EYES = tuple(range(36, 48))
LOWER_FACE_OUTLINE = tuple(range(2, 15)) + (35, 34, 33, 32, 31)
"""Jaw from cheek to cheek under the mouth, closed along the bottom of the nose."""

FOREHEAD_HEIGHT = 0.45
"""Without the mesh, the forehead reaches this fraction of the brow-to-chin distance above the brows."""
EYE_MARGIN = 0.12
"""Upper-face margin above the brows and below the eyes, in outer-eye-corner distances."""
FACE_ELLIPSE_SCALE = 1.1
"""The head keeps person pixels inside the face's bounding ellipse grown by this factor, even below the chin line."""


@dataclass(frozen=True)
class SegmenterConfig:
    """mediapipe selfie segmentation settings."""

    model_selection: int = 1
    """1: the 144×256 landscape model (~3.5 ms per 512² frame); 0: the general 256×256 model (~7 ms, slightly
    smoother edges, otherwise the same masks on the test clips)."""
    threshold: float = 0.5
    """Person probability above which a pixel is the person."""


class PersonSegmenter:
    """Person vs background with mediapipe selfie segmentation; use as a context manager or call `close()`."""

    def __init__(self, config: SegmenterConfig = SegmenterConfig()) -> None:
        import mediapipe as mp

        self.config = config
        self._segmentation = mp.solutions.selfie_segmentation.SelfieSegmentation(
            model_selection=config.model_selection)

    def __call__(self, rgb: UInt8[ndarray, "height width 3"]) -> Bool[ndarray, "height width"]:
        """True where the person is."""
        probability = self._segmentation.process(rgb).segmentation_mask
        return probability > self.config.threshold

    def close(self) -> None:
        self._segmentation.close()

    def __enter__(self) -> PersonSegmenter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _fill(shape: tuple[int, int], polygon: Float[ndarray, "points 2"], convex: bool = False
          ) -> Bool[ndarray, "height width"]:
    """Rasterise a polygon given in pixel-centre coordinates (OpenCV wants integer centres; 4 subpixel bits)."""
    mask = np.zeros(shape, np.uint8)
    points = np.round((polygon - 0.5) * 16).astype(np.int32)
    if convex:
        points = cv2.convexHull(points)
    cv2.fillPoly(mask, [points.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _face_up(landmarks68: Float[ndarray, "68 2"]) -> Float[ndarray, "2"]:
    """Unit vector from the chin toward the brows, in image coordinates."""
    up = landmarks68[list(BROWS)].mean(0) - landmarks68[8]
    return up / max(float(np.linalg.norm(up)), 1e-6)


def face_polygon(landmarks68: Float[ndarray, "68 2"], mesh_xy: Float[ndarray, "478 2"] | None = None
                 ) -> Float[ndarray, "points 2"]:
    """Outline of the face up to the forehead: the mesh silhouette when available, else the jaw and the brows
    lifted by `FOREHEAD_HEIGHT`."""
    if mesh_xy is not None:
        return mesh_xy[list(FACE_OVAL)]
    brows = landmarks68[list(BROWS)]
    lift = FOREHEAD_HEIGHT * np.linalg.norm(brows.mean(0) - landmarks68[8]) * _face_up(landmarks68)
    return np.concatenate([landmarks68[list(JAW)], brows[::-1] + lift])


def _ellipse(shape: tuple[int, int], polygon: ndarray, up: ndarray, scale: float) -> Bool[ndarray, "height width"]:
    """The ellipse aligned with `up` that bounds the polygon, grown by `scale`."""
    right = np.array([-up[1], up[0]])
    center = polygon.mean(0)
    along, across = (polygon - center) @ up, (polygon - center) @ right
    center = center + up * (along.max() + along.min()) / 2 + right * (across.max() + across.min()) / 2
    semi_axes = (scale * (across.max() - across.min()) / 2, scale * (along.max() - along.min()) / 2)
    mask = np.zeros(shape, np.uint8)
    angle = float(np.degrees(np.arctan2(right[1], right[0])))
    cv2.ellipse(mask, ((float(center[0] - 0.5), float(center[1] - 0.5)), (2 * semi_axes[0], 2 * semi_axes[1]), angle),
                1, -1)
    return mask.astype(bool)


def parsing_map(aligned_rgb: UInt8[ndarray, "height width 3"], aligned_landmarks68: Float[ndarray, "68 2"],
                segmenter: PersonSegmenter, aligned_mesh: Float[ndarray, "478 _"] | None = None
                ) -> UInt8[ndarray, "height width"]:
    """The label map of one aligned frame (labels in the module docstring); the mesh, when given, is in aligned
    pixels (only its x, y are used)."""
    shape = aligned_rgb.shape[:2]
    landmarks = aligned_landmarks68.astype(np.float64)
    mesh_xy = None if aligned_mesh is None else aligned_mesh[:, :2].astype(np.float64)
    up = _face_up(landmarks)
    face_outline = face_polygon(landmarks, mesh_xy)
    face = _fill(shape, face_outline)

    # Head: person pixels above the line through the chin perpendicular to `up` (a large quad), or near the face.
    reach = 4.0 * max(shape)
    right = np.array([-up[1], up[0]]) * reach
    chin = landmarks[8]
    above_chin = _fill(shape, np.stack([chin - right, chin + right, chin + right + up * reach, chin - right + up * reach]))
    head = above_chin | _ellipse(shape, face_outline, up, FACE_ELLIPSE_SCALE)

    margin = EYE_MARGIN * np.linalg.norm(landmarks[45] - landmarks[36]) * up
    upper = _fill(shape, np.concatenate([landmarks[list(BROWS)] + margin, landmarks[list(EYES)] - margin]),
                  convex=True)
    lower = _fill(shape, landmarks[list(LOWER_FACE_OUTLINE)])

    labels = np.zeros(shape, np.uint8)
    person = segmenter(aligned_rgb)
    labels[person] = TORSO
    labels[person & head] = HEAD
    labels[face] = FACE_MIDDLE
    labels[face & upper] = UPPER_FACE
    labels[face & lower] = LOWER_FACE
    return labels


def masks_from_parsing(labels: UInt8[ndarray, "height width"]) -> dict[str, Bool[ndarray, "height width"]]:
    """Boolean masks: face, lower_face, upper_face, head (face included), torso and background."""
    return {"face": labels >= FACE_MIDDLE, "lower_face": labels == LOWER_FACE, "upper_face": labels == UPPER_FACE,
            "head": labels >= HEAD, "torso": labels == TORSO, "background": labels == BACKGROUND}
