"""Face-level measurements on tracked 68-point landmarks, and dlib's 128-D identity embedding.

Landmarks follow docs/conventions.md (iBUG 68-point indexing, pixels of the frame, pixel-centre convention).
"""

from __future__ import annotations

import importlib.util
import os

import cv2
import numpy as np
from jaxtyping import Bool, Float, UInt8
from numpy import ndarray

from deltaplane.errors import MissingDependencyError
from deltaplane.geometry.face_regions import EYES, OUTER_MOUTH, face_width
from deltaplane.geometry.lips import EYE_CORNERS, INNER_LIP_PAIRS, MOUTH_POINTS
from deltaplane.preprocess.landmarks import dlib_box

MOUTH_CROP_SIZE = 96
MOUTH_CROP_SPAN = 1.8
"""Mouth crops of the report's contact sheet are this many mouth widths wide."""
MIN_MOTION_FRAMES = 10
"""Fewer frames with a face than this give no mouth-motion scores."""
MOUTH_MOTION_KEYS = ("mouth/opening_std_ratio", "mouth/opening_mean_ratio", "mouth/open_fraction",
                     "mouth/open_fraction_reference")
LMD_WIDTH = 512.0
"""LMD is reported in pixels of a frame rescaled to this width (Talk3D resizes both videos to 512², spec §8)."""
SAME_PERSON_THRESHOLD = 0.6
"""dlib's decision threshold: embeddings closer than this are the same person (99.38 % on LFW)."""
EYE_REGION_MARGIN = 0.06
"""The eye region reaches this fraction of the face width (jaw points 0–16) beyond each eye outline: the lids and
the lashes (about 14 px at 512²)."""
MOUTH_REGION_MARGIN = 0.03
"""The mouth region reaches this fraction of the face width beyond the outer lip outline."""
TORSO_REGION_GAP = 0.05
"""The torso region starts this fraction of the face width below the chin (landmark 8)."""
TORSO_REGION_HALF_WIDTH = 0.75
"""The torso region reaches this fraction of the face width either side of the jaw's centre (points 0 and 16):
the neck, the collar and the inner shoulders of a head-and-shoulders crop (obama's collar and tie at 512²)."""


def dlib_model_path(name: str) -> str:
    """Path of one of the dlib models shipped by face-recognition-models (found without importing the package)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingDependencyError("face-recognition-models is not installed (it ships dlib's face models)")
    path = os.path.join(os.path.dirname(spec.origin), "models", name)
    if not os.path.isfile(path):
        raise MissingDependencyError(f"dlib model {name} is missing from face-recognition-models: {path}")
    return path


def mouth_landmark_distance(prediction: Float[ndarray, "68 2"], target: Float[ndarray, "68 2"],
                            width: int) -> float:
    """LMD of one frame (spec §8): mouth points 48–67 of each set are mean-centred (translation only), and the mean
    Euclidean distance between corresponding points is returned in units of a `LMD_WIDTH`-wide frame."""
    differences = (_centred_mouth(prediction) - _centred_mouth(target)) * (LMD_WIDTH / width)  # [20, 2]
    return float(np.linalg.norm(differences, axis=1).mean())


def _centred_mouth(points: Float[ndarray, "*frames 68 2"]) -> Float[ndarray, "*frames 20 2"]:
    """Mouth points 48–67 less their mean point (LMD's translation-free mouth), in float64."""
    mouth = points[..., MOUTH_POINTS, :].astype(np.float64)
    return mouth - mouth.mean(-2, keepdims=True)


def mouth_shape_offset(predictions: Float[ndarray, "frames 68 2"], targets: Float[ndarray, "frames 68 2"],
                       width: int) -> tuple[float, float] | None:
    """How much of the clip's LMD a constant mouth-shape error explains: (lmd_offset, lmd_motion). The offset is the
    mean over frames of the centred mouth points' differences (`mouth_landmark_distance`'s), a mouth that is on
    average too open, wide or thick; lmd_offset is its mean point length, lmd_motion the LMD left once it is taken
    from every frame (what the motion gets wrong). Frames without a face on either side are left out; None when
    none is left. Both in pixels of a `LMD_WIDTH`-wide frame."""
    differences = _centred_mouth(predictions) - _centred_mouth(targets)  # [frames, 20, 2]
    differences = differences[np.isfinite(differences).all((1, 2))]
    if not len(differences):
        return None
    differences *= LMD_WIDTH / width
    offset = differences.mean(0)
    return float(np.linalg.norm(offset, axis=1).mean()), float(np.linalg.norm(differences - offset, axis=2).mean())


def mouth_opening(landmarks68: Float[ndarray, "68 2"]) -> float:
    """Inner-lip gap (mean of three upper/lower point distances) over the outer-eye-corner distance: scale-free."""
    gap = np.mean([np.linalg.norm(landmarks68[upper] - landmarks68[lower]) for upper, lower in INNER_LIP_PAIRS])
    eyes = np.linalg.norm(landmarks68[EYE_CORNERS[0]] - landmarks68[EYE_CORNERS[1]])
    return float(gap / max(float(eyes), 1e-6))


def mouth_motion(openings: Float[ndarray, " frames"], reference: Float[ndarray, " frames"]
                 ) -> tuple[dict[str, float], dict[str, str]]:
    """How much a video's mouth moves next to a reference's (`mouth_opening` per frame, NaN without a face).

    opening_std_ratio = std over frames of the opening / the reference's; opening_mean_ratio likewise for the mean;
    open_fraction = share of frames opened wider than the reference's median + 1 std (teeth showing), beside the
    reference's own share. A still mouth gives a std ratio of 0, the reference itself 1."""
    found = openings[np.isfinite(openings)]
    known = reference[np.isfinite(reference)]
    if found.size < MIN_MOTION_FRAMES or known.size < MIN_MOTION_FRAMES:
        reason = f"{found.size} / {known.size} frames with a face; mouth motion needs {MIN_MOTION_FRAMES} in each"
        return {}, {key: reason for key in MOUTH_MOTION_KEYS}
    spread, level = float(known.std()), float(known.mean())
    if spread <= 0 or level <= 0:
        reason = "the reference mouth never moves"
        return {}, {key: reason for key in MOUTH_MOTION_KEYS}
    threshold = float(np.median(known)) + spread
    return {"mouth/opening_std_ratio": float(found.std()) / spread,
            "mouth/opening_mean_ratio": float(found.mean()) / level,
            "mouth/open_fraction": float((found > threshold).mean()),
            "mouth/open_fraction_reference": float((known > threshold).mean())}, {}


MESH_EYE_CORNERS = (33, 263)
"""mediapipe face-mesh indices of the outer eye corners (the person's right, left): the mesh measures' unit."""
MESH_VIEW_KEYS = ("mesh/offset", "mesh/shape")


def mesh_view_metrics(observed: Float[ndarray, "frames points 2"], expected: Float[ndarray, "frames points 2"],
                      valid: Bool[ndarray, "frames points"]) -> tuple[dict[str, float], dict[str, str]]:
    """How far a view draws the face from where a rigid head would show it: `observed` is the face mesh tracked on
    the render (NaN rows without a face), `expected` the tracked mesh of the same frames projected into the view
    (`geometry.novel_view.rigid_mesh_in_view`), over the points `valid` in the latter. mesh/offset = mean point
    distance; mesh/shape = the same once each frame's mean offset is taken out (what the lifting depth does not
    decide: a part of the face drawn at another depth than the rest). Both in outer-eye-corner distances of the
    expected mesh, mean over the frames with a face."""
    found = np.isfinite(observed).all((1, 2)) & valid.any(1)
    if not found.any():
        reason = "no face found in any frame of this view"
        return {}, {key: reason for key in MESH_VIEW_KEYS}
    observed, expected, weights = (array[found].astype(np.float64) for array in (observed, expected, valid))
    eyes = np.linalg.norm(expected[:, MESH_EYE_CORNERS[0]] - expected[:, MESH_EYE_CORNERS[1]], axis=-1)
    difference = (observed - expected) / np.maximum(eyes, 1e-6)[:, None, None]
    count = weights.sum(1)
    mean = (difference * weights[..., None]).sum(1) / count[:, None]
    offset = (np.linalg.norm(difference, axis=-1) * weights).sum(1) / count
    shape = (np.linalg.norm(difference - mean[:, None], axis=-1) * weights).sum(1) / count
    return {"mesh/offset": float(offset.mean()), "mesh/shape": float(shape.mean())}, {}


def square_crop(rgb: UInt8[ndarray, "height width 3"], centre: Float[ndarray, "2"], side: float,
                size: int) -> UInt8[ndarray, "size size 3"]:
    """The `side`-pixel square around `centre`, resampled to `size`² (black outside the frame)."""
    scale = size / side
    # pixel-centre convention: source pixel x (centre at x + 0.5) maps to (x + 0.5 − left)·scale − 0.5
    left = centre - side / 2
    matrix = np.array([[scale, 0.0, (0.5 - left[0]) * scale - 0.5], [0.0, scale, (0.5 - left[1]) * scale - 0.5]])
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (size, size), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def mouth_crop(rgb: UInt8[ndarray, "height width 3"], landmarks68: Float[ndarray, "68 2"],
               size: int = MOUTH_CROP_SIZE) -> UInt8[ndarray, "size size 3"]:
    """A `size`² crop centred on the mouth, MOUTH_CROP_SPAN mouth widths (corners 48–54) wide, for contact sheets."""
    mouth = landmarks68[MOUTH_POINTS].astype(np.float64)
    side = MOUTH_CROP_SPAN * max(float(np.linalg.norm(landmarks68[54] - landmarks68[48])), 4.0)
    return square_crop(rgb, mouth.mean(0), side, size)


DETAIL_CROP_SIZE = 128
"""Side of the report's detail crops (about the crops' own pixel size at 512²: detail is shown, not resampled away)."""


def detail_crops(rgb: UInt8[ndarray, "height width 3"], landmarks68: Float[ndarray, "68 2"],
                 size: int = DETAIL_CROP_SIZE) -> dict[str, UInt8[ndarray, "size size 3"]]:
    """Eyes (both, with the nose bridge), mouth, and hair (above the brows) crops for the report's detail sheet,
    each a square sized by the outer-eye-corner distance."""
    points = landmarks68.astype(np.float64)
    eye_distance = max(float(np.linalg.norm(points[45] - points[36])), 4.0)
    brows = points[17:27].mean(0)
    return {"eyes": square_crop(rgb, points[36:48].mean(0), 1.3 * eye_distance, size),
            "mouth": square_crop(rgb, points[MOUTH_POINTS].mean(0), eye_distance, size),
            "hair": square_crop(rgb, brows - [0.0, 0.9 * eye_distance], eye_distance, size)}


def face_mask(landmarks68: Float[ndarray, "68 2"], height: int, width: int) -> Bool[ndarray, "height width"]:
    """Pixels inside the convex hull of the 68 landmarks (brows to chin, cheek to cheek)."""
    mask = np.zeros((height, width), np.uint8)
    hull = cv2.convexHull(np.round(landmarks68 - 0.5).astype(np.int32))  # pixel-centre → integer pixel grid
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def region_masks(landmarks68: Float[ndarray, "68 2"], height: int, width: int
                 ) -> dict[str, Bool[ndarray, "height width"]]:
    """The eyes (both eye outlines grown by `EYE_REGION_MARGIN` face widths), the mouth (the outer lip outline
    grown by `MOUTH_REGION_MARGIN`; where they meet, the pixel is the mouth's) and the torso (the rows from
    `TORSO_REGION_GAP` face widths below the chin to the frame's bottom, within `TORSO_REGION_HALF_WIDTH` face widths
    of the jaw's centre: whatever the frame shows there, neck, collar and shoulders, or backdrop between them)."""
    size = face_width(landmarks68.astype(np.float64))

    def grown(outlines: tuple[tuple[int, ...], ...], margin: float) -> Bool[ndarray, "height width"]:
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [np.round(landmarks68[list(outline)] - 0.5).astype(np.int32) for outline in outlines], 1)
        radius = int(round(margin * size))
        if radius > 0:  # a disc's dilation: the pixels within `radius` of the outline
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
        return mask.astype(bool)

    mouth = grown((OUTER_MOUTH,), MOUTH_REGION_MARGIN)
    rows, columns = np.arange(height) + 0.5, np.arange(width) + 0.5  # pixel centres, as the landmarks'
    centre = float(landmarks68[[0, 16], 0].mean())
    torso = ((rows >= landmarks68[8, 1] + TORSO_REGION_GAP * size)[:, None]
             & (np.abs(columns - centre) <= TORSO_REGION_HALF_WIDTH * size)[None, :])
    return {"eyes": grown(EYES, EYE_REGION_MARGIN) & ~mouth, "mouth": mouth, "torso": torso & ~mouth}


class IdentityEmbedder:
    """dlib's ResNet face descriptor (128-D, Euclidean distance; < 0.6 = same person), aligned with dlib's 5-point
    shape predictor inside the box dlib's HOG detector would give for the tracked face mesh. ~95 ms per face on
    one CPU core, so callers sample frames."""

    def __init__(self) -> None:
        import dlib

        self._rectangle = dlib.rectangle
        self._shape5 = dlib.shape_predictor(dlib_model_path("shape_predictor_5_face_landmarks.dat"))
        self._network = dlib.face_recognition_model_v1(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, rgb: UInt8[ndarray, "height width 3"], mesh: Float[ndarray, "478 3"]) -> Float[ndarray, "128"]:
        """The descriptor of the face whose mediapipe mesh is `mesh` (as `FaceTracker` returns it)."""
        # dlib uses integer pixel centres, so its boxes are shifted by half a pixel (as FaceTracker does).
        x0, y0, x1, y1 = (round(float(value) - 0.5) for value in dlib_box(mesh))
        shape = self._shape5(np.ascontiguousarray(rgb), self._rectangle(x0, y0, x1, y1))
        return np.asarray(self._network.compute_face_descriptor(np.ascontiguousarray(rgb), shape), np.float32)
