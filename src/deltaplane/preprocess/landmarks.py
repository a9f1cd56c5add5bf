"""Per-frame face tracking on original frames: dlib's 68 landmarks plus mediapipe's 478-point 3D mesh.

Speed plan (6–9 ms per frame on one core, whatever the frame size): mediapipe's full-range face detector runs on the whole
frame only to (re)acquire the face and once every `redetect_interval` frames to count faces; otherwise face mesh
runs on a small square crop that follows the face, which also finds small faces in large frames. dlib's 68-point
shape predictor gets a box computed from the mesh and calibrated to match dlib's HOG detector (whose 25 ms per
512² frame we skip); its landmarks agree with the HOG-box ones to ~1 % of the eye-corner distance.

All coordinates are pixels of the original frame, pixel (i, j) centred at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from types import TracebackType

import cv2
import numpy as np
from jaxtyping import Float, UInt8
from numpy import ndarray

from deltaplane.errors import InputError, MissingDependencyError

NUM_MESH_POINTS = 478
"""mediapipe face mesh with refined eyes and irises (468 face points + 10 iris points)."""

# dlib's HOG box as a function of the mesh (least squares over 1,500 frames of the six test clips): a square centred
# on the 2D centroid of the 468 face points, shifted up by 0.059·s, of side 2.78·s, s = RMS 3D distance to the 3D
# centroid (pose-invariant). Residuals are dominated by the HOG pyramid's coarse scale steps.
DLIB_BOX_SIZE = 2.78
DLIB_BOX_SHIFT_Y = -0.059

LEFT_EYE = (42, 43, 44, 45, 46, 47)
"""The subject's left eye in the 68-point layout: outer corner 45, inner corner 42."""
RIGHT_EYE = (36, 37, 38, 39, 40, 41)
FEATURE_INDICES = (30, 45, 36)
"""Points of the 6-D landmark feature (docs/conventions.md): nose tip and the two outer eye corners."""


@dataclass(frozen=True)
class TrackerConfig:
    """How `FaceTracker` finds and follows the face."""

    detection_confidence: float = 0.5
    """Minimum score of mediapipe's full-range face detector."""
    tracking_confidence: float = 0.5
    """Minimum face-presence score for face mesh to keep tracking."""
    crop_scale: float = 2.0
    """Side of the square crop given to face mesh, in units of the face size (the larger side of its mesh box)."""
    crop_size: int = 256
    """The crop is resampled to crop_size² pixels (face mesh itself works at 192²)."""
    redetect_interval: int = 25
    """Run the full-frame detector every this many frames (to count faces); 0 runs it only to (re)acquire."""


@dataclass(frozen=True)
class FaceObservation:
    """One tracked face in one original frame."""

    landmarks68: Float[ndarray, "68 2"]
    """dlib 68-point landmarks (iBUG indexing), float32 pixels."""
    mesh: Float[ndarray, "478 3"]
    """mediapipe face mesh: x, y in pixels; z is relative depth in pixels (same scale as x, larger is farther)."""
    box: Float[ndarray, "4"]
    """Bounding box (x0, y0, x1, y1) of the 468 face-mesh points, pixels."""
    num_faces: int
    """Faces seen by the last full-frame detection (run at acquisition and every `redetect_interval` frames)."""


def shape_predictor_path() -> str:
    """Path of dlib's 68-point model shipped by face-recognition-models (found without importing that package)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingDependencyError("face-recognition-models is not installed (it ships dlib's 68-point model)")
    path = os.path.join(os.path.dirname(spec.origin), "models", "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise MissingDependencyError(f"dlib's 68-point model is missing: {path}")
    return path


def _square(center_x: float, center_y: float, side: float) -> Float[ndarray, "4"]:
    return np.array([center_x - side / 2, center_y - side / 2, center_x + side / 2, center_y + side / 2], np.float32)


def _center_distance(box: ndarray, other: ndarray) -> float:
    """Distance between box centres in units of `other`'s size."""
    size = max(other[2] - other[0], other[3] - other[1], 1.0)
    return math.hypot((box[0] + box[2] - other[0] - other[2]) / 2, (box[1] + box[3] - other[1] - other[3]) / 2) / size


def dlib_box(mesh: Float[ndarray, "478 3"]) -> Float[ndarray, "4"]:
    """The box dlib's HOG detector would give for this face (see the calibration note above)."""
    face = mesh[:468].astype(np.float64)
    scale = math.sqrt(((face - face.mean(0)) ** 2).sum(1).mean())
    center = face[:, :2].mean(0)
    return _square(center[0], center[1] + DLIB_BOX_SHIFT_Y * scale, DLIB_BOX_SIZE * scale)


TRACKING_PACKAGES = {"mediapipe": "python -m pip install --no-deps mediapipe==0.10.21",
                     "dlib": "python -m pip install dlib-bin face-recognition-models"}
"""Packages face tracking imports, and the command that installs each (mediapipe goes without its declared
dependencies: README)."""


def require_face_tracking() -> None:
    """Fail in one line, before any work, when a package face tracking needs is not installed."""
    missing = [name for name in TRACKING_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        commands = " and ".join(f"`{TRACKING_PACKAGES[name]}`" for name in missing)
        raise MissingDependencyError(f"face tracking needs {' and '.join(missing)}, which is not installed: run "
                                     f"{commands} (the README's install command does this)")


class FaceTracker:
    """Tracks the main face through a video, frame by frame; use as a context manager or call `close()`.

    The main face is the largest one when tracking starts; after that (and after losing it) the face closest to the
    last tracked box. `track` returns None for frames without that face.
    """

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        require_face_tracking()
        import dlib
        import mediapipe as mp

        self.config = config
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=config.detection_confidence)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=config.detection_confidence, min_tracking_confidence=config.tracking_confidence)
        self._predictor = dlib.shape_predictor(shape_predictor_path())
        self._rectangle = dlib.rectangle
        self._box: ndarray | None = None  # face-mesh box of the tracked face in the previous frame
        self._last_box: ndarray | None = None  # where the face was when last seen
        self._num_faces = 0
        self._frame_index = -1

    def track(self, rgb: UInt8[ndarray, "height width 3"]) -> FaceObservation | None:
        """Landmarks of the main face in one RGB frame, or None when it is not visible."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"expected an RGB uint8 frame of shape (height, width, 3), got "
                             f"{getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}")
        rgb = np.ascontiguousarray(rgb)  # dlib and mediapipe read the buffer directly (e.g. mirrored views)
        self._frame_index += 1
        interval = self.config.redetect_interval
        detected = self._box is None or (interval > 0 and self._frame_index % interval == 0)
        if detected:
            self._acquire(rgb)
        mesh = None if self._box is None else self._mesh_in_crop(rgb, self._box)
        if mesh is None and not detected:  # lost it: look again on this very frame
            self._box = None
            self._acquire(rgb)
            mesh = None if self._box is None else self._mesh_in_crop(rgb, self._box)
        if mesh is None:
            self._box = None
            return None
        box = np.concatenate([mesh[:468, :2].min(0), mesh[:468, :2].max(0)]).astype(np.float32)
        self._box = self._last_box = box
        return FaceObservation(self._landmarks68(rgb, mesh), mesh, box, self._num_faces)

    def _acquire(self, rgb: ndarray) -> None:
        """Run the full-frame detector to count faces, and pick the main face if not tracking one."""
        faces = self.detect(rgb)
        self._num_faces = len(faces)
        if self._box is not None or not faces:
            return
        if self._last_box is None:
            self._box = max(faces, key=lambda box: (box[2] - box[0]) * (box[3] - box[1]))
        else:
            last_box = self._last_box
            self._box = min(faces, key=lambda box: _center_distance(box, last_box))

    def detect(self, rgb: UInt8[ndarray, "height width 3"]) -> list[Float[ndarray, "4"]]:
        """Face boxes (x0, y0, x1, y1) in pixels from mediapipe's full-range detector on this frame alone (score ≥
        `TrackerConfig.detection_confidence`): what (re)acquires a face, without the tracking that follows it."""
        height, width = rgb.shape[:2]
        result = self._detector.process(rgb)
        boxes = []
        for detection in result.detections or []:
            relative = detection.location_data.relative_bounding_box
            x0, y0 = relative.xmin * width, relative.ymin * height
            boxes.append(np.array([x0, y0, x0 + relative.width * width, y0 + relative.height * height], np.float32))
        return boxes

    def _mesh_in_crop(self, rgb: ndarray, box: ndarray) -> Float[ndarray, "478 3"] | None:
        """Face mesh on a square crop around `box`, mapped back to frame pixels; None if absent or off target."""
        size = self.config.crop_size
        side = self.config.crop_scale * max(box[2] - box[0], box[3] - box[1])
        scale = size / side  # crop pixels per frame pixel
        x0, y0 = (box[0] + box[2] - side) / 2, (box[1] + box[3] - side) / 2
        # Crop pixel centre u + 0.5 ↔ frame point x0 + (u + 0.5)/scale; written in OpenCV's integer-centre form.
        to_crop = np.array([[scale, 0.0, -x0 * scale + 0.5 * scale - 0.5],
                            [0.0, scale, -y0 * scale + 0.5 * scale - 0.5]])
        crop = cv2.warpAffine(rgb, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        normalized = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], np.float64)
        mesh = np.empty_like(normalized)
        mesh[:, 0] = x0 + normalized[:, 0] * side
        mesh[:, 1] = y0 + normalized[:, 1] * side
        mesh[:, 2] = normalized[:, 2] * side
        found = np.concatenate([mesh[:468, :2].min(0), mesh[:468, :2].max(0)])
        if _center_distance(found, box) > 0.5:  # face mesh latched onto another face in the crop
            return None
        return mesh.astype(np.float32)

    def _landmarks68(self, rgb: ndarray, mesh: ndarray) -> Float[ndarray, "68 2"]:
        # dlib uses integer pixel centres, so its boxes and points are shifted by half a pixel.
        x0, y0, x1, y1 = (round(float(value) - 0.5) for value in dlib_box(mesh))
        shape = self._predictor(rgb, self._rectangle(x0, y0, x1, y1))
        return np.array([(point.x + 0.5, point.y + 0.5) for point in shape.parts()], np.float32)

    def close(self) -> None:
        """Release the mediapipe graphs."""
        self._detector.close()
        self._mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def eye_openness(landmarks68: Float[ndarray, "68 2"]) -> float:
    """Eye aspect ratio (Soukupová & Čech 2016) averaged over both eyes: the mean of the two vertical lid distances
    over the corner-to-corner width. Open eyes give about 0.25–0.35, closed eyes under 0.15; it falls during a
    blink, whereas OpenFace AU45 (0–5, Talk3D clips it to [0, 2]) rises."""
    ratios = []
    for p1, p2, p3, p4, p5, p6 in (RIGHT_EYE, LEFT_EYE):
        vertical = np.linalg.norm(landmarks68[p2] - landmarks68[p6]) + np.linalg.norm(landmarks68[p3] - landmarks68[p5])
        ratios.append(vertical / (2.0 * max(float(np.linalg.norm(landmarks68[p1] - landmarks68[p4])), 1e-6)))
    return float(np.mean(ratios))


def landmark_feature(landmarks68: Float[ndarray, "68 2"], width: int, height: int) -> Float[ndarray, "6"]:
    """The 6-D landmark feature: points 30, 45, 36 in original-frame pixels with x / W and y / H mapped to [-1, 1],
    flattened as (x30, y30, x45, y45, x36, y36)."""
    points = landmarks68[list(FEATURE_INDICES)].astype(np.float32)
    return (2.0 * points / np.array([width, height], np.float32) - 1.0).reshape(6)


def missing_ranges(values: Float[ndarray, "frames *rest"]) -> list[tuple[int, int]]:
    """Half-open frame ranges [start, stop) whose rows contain a NaN."""
    missing = np.isnan(values.reshape(len(values), -1)).any(1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], missing.astype(np.int8), [0]])))
    return [(int(start), int(stop)) for start, stop in zip(edges[::2], edges[1::2])]


def fill_missing(values: Float[ndarray, "frames *rest"], fps: float = 25.0, max_missing_fraction: float = 0.05,
                 max_gap_seconds: float = 1.0) -> tuple[Float[ndarray, "frames *rest"], list[tuple[int, int]]]:
    """Fill frames without a face (NaN rows) by linear interpolation in time (edges hold the nearest value).

    The rule: a clip is refused (InputError naming the frame ranges and times) when the face is missing in more than
    `max_missing_fraction` of its frames, or in any run longer than `max_gap_seconds`; interpolating across a longer
    gap would invent head motion and speech. Returns the filled values and the missing [start, stop) ranges.
    """
    num_frames = len(values)
    ranges = missing_ranges(values)
    num_missing = sum(stop - start for start, stop in ranges)
    longest = max((stop - start for start, stop in ranges), default=0)
    if num_missing == num_frames:
        raise InputError(f"no face found in any of the {num_frames} frames")
    if num_missing > max_missing_fraction * num_frames or longest > max_gap_seconds * fps:
        listed = ", ".join(f"{start}–{stop - 1} ({start / fps:.2f}–{stop / fps:.2f} s)" for start, stop in ranges[:8])
        more = f" and {len(ranges) - 8} more" if len(ranges) > 8 else ""
        raise InputError(f"no face in {num_missing}/{num_frames} frames (allowed: {max_missing_fraction:.0%} of frames, "
                         f"gaps up to {max_gap_seconds:g} s): frames {listed}{more}; trim the video to the part "
                         f"where the face is visible")
    flat = values.reshape(num_frames, -1).astype(np.float64)
    valid = ~np.isnan(flat).any(1)
    frames = np.arange(num_frames)
    filled = np.stack([np.interp(frames, frames[valid], column[valid]) for column in flat.T], axis=1)
    return filled.reshape(values.shape).astype(values.dtype), ranges
