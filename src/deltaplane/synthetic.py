"""A fully offline synthetic talking subject: speech-like audio and an animated public-domain portrait.

The subject is scikit-image's `astronaut.png` (NASA portrait of Eileen Collins, public domain, 512²), cropped to a
head-and-shoulders framing and animated frame by frame: smooth head motion (roll, translation and a yaw/pitch
"turn" made of a face-centred homography plus a little pseudo-depth parallax), a jaw that opens with the speech
envelope (a dark oral cavity appears between the lips) and occasional blinks. Everything is deterministic by seed,
and the frames pass through the real preprocessing (dlib and mediapipe find the face).

Time follows docs/conventions.md: frame k is shown at t_k = k / fps and its mouth opening is the audio envelope of
the window centred on t_k.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Float, UInt8
from scipy.signal import butter, lfilter, sosfilt

from deltaplane.audio.features import SAMPLE_RATE
from deltaplane.errors import MissingDependencyError
from deltaplane.media.video import VideoWriter

PORTRAIT_LANDMARKS_68 = np.array([
    [179, 104], [180, 116], [181, 127], [182, 139], [185, 150], [191, 160], [200, 168], [209, 176], [220, 178],
    [232, 177], [243, 171], [253, 163], [260, 154], [265, 143], [268, 131], [270, 120], [272, 108], [186, 94],
    [192, 88], [200, 87], [208, 89], [216, 92], [236, 93], [244, 91], [252, 91], [260, 92], [265, 99], [226, 102],
    [225, 111], [225, 119], [225, 127], [214, 131], [219, 133], [224, 134], [229, 133], [234, 132], [195, 101],
    [200, 98], [207, 98], [212, 104], [206, 104], [199, 104], [237, 106], [243, 100], [250, 100], [255, 105],
    [250, 107], [244, 107], [201, 139], [209, 139], [218, 139], [224, 141], [230, 140], [238, 140], [246, 141],
    [238, 151], [229, 155], [222, 156], [216, 155], [208, 150], [204, 141], [218, 143], [223, 144], [230, 143],
    [243, 142], [229, 150], [223, 151], [217, 150]], dtype=np.float32)
"""dlib 68-point landmarks (x, y) of the still portrait, measured once by `measure_portrait_landmarks()` (HOG
detector with one upsampling, best-scoring box, then shape_predictor_68_face_landmarks). Cached so that generation
needs neither dlib nor its 100 MB model and is identical on every machine; tests/test_synthetic.py re-measures them."""

CROP_SIDE = 3.3
"""Side of the square crop around the face, in face widths (jaw landmark 0 to 16): head, hair and shoulders."""
CROP_DROP = 0.35
"""The crop centre sits this many face heights below the face centre, so the mission patch stays out of view."""
PERSPECTIVE_DISTANCE = 4.0
"""Camera distance of the "turn" homography, in face widths (a real head filmed from about 60 cm)."""
NOSE_DEPTH = 0.45
"""Peak pseudo-depth of the face centre above its silhouette, in face widths; parallax that sells the yaw."""
VOWEL_FORMANTS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
                           [570, 840, 2410], [660, 1720, 2410]], dtype=np.float64)
"""F1-F3 (Hz) of /a i u e o æ/ (Peterson & Barney averages) for the vowel synthesiser."""
FORMANT_BANDWIDTHS = np.array([80.0, 110.0, 160.0])
MOUTH_EDGE, MOUTH_THROAT, MOUTH_TONGUE = (120, 55, 55), (40, 14, 16), (150, 72, 76)
"""RGB of the oral cavity: shaded lip interior, throat, tongue."""
BLINK_PROFILE = np.array([0.5, 1.0, 0.85, 0.35])
"""Eyelid closure over the frames of one blink at 25 fps (resampled to other rates)."""


@dataclass(frozen=True)
class SyntheticSubjectConfig:
    """How the synthetic talking subject moves; every number is deterministic given `seed`."""

    seconds: float = 4.0
    """Clip duration; the clip has floor(seconds · fps) frames."""
    fps: int = 25
    """Video frame rate."""
    size: int = 512
    """Output frames are size × size RGB."""
    seed: int = 0
    """Seeds the speech, the head motion and the blink times."""
    yaw_deg: float = 12.0
    """Largest yaw-like head turn (degrees), rendered as a face-centred homography plus parallax."""
    pitch_deg: float = 4.0
    """Largest nod (degrees), rendered like the yaw."""
    roll_deg: float = 4.0
    """Largest in-plane head rotation (degrees)."""
    translation: float = 0.02
    """Largest head translation, as a fraction of the frame size."""
    mouth_open_px: float = 18.0
    """Largest gap between the lips, in pixels of a 512² frame (scaled with `size`)."""
    blink_rate: float = 15.0
    """Mean blinks per minute (0 disables them); each blink lasts about 0.16 s."""

    @property
    def num_frames(self) -> int:
        return math.floor(self.seconds * self.fps + 1e-6)


def portrait_path() -> Path:
    """The astronaut portrait shipped inside the scikit-image wheel (not fetched: no pooch download)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise MissingDependencyError("scikit-image is needed for the synthetic subject: pip install scikit-image")
    path = Path(spec.origin).parent / "data" / "astronaut.png"
    if not path.is_file():
        raise MissingDependencyError(f"scikit-image's wheel has no {path.name} at {path}")
    return path


def load_portrait() -> UInt8[np.ndarray, "512 512 3"]:
    """The still portrait as RGB uint8."""
    bgr = cv2.imread(str(portrait_path()), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def measure_portrait_landmarks() -> Float[np.ndarray, "68 2"]:
    """Re-measure `PORTRAIT_LANDMARKS_68` with dlib (used by the tests to check the cached constants)."""
    import dlib  # lazy: generation itself never needs dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingDependencyError("face-recognition-models is needed to measure landmarks")
    model = os.path.join(os.path.dirname(spec.origin), "models", "shape_predictor_68_face_landmarks.dat")
    image = load_portrait()
    boxes, scores, _ = dlib.get_frontal_face_detector().run(image, 1, 0)
    shape = dlib.shape_predictor(model)(image, boxes[int(np.argmax(scores))])
    return np.array([[part.x, part.y] for part in shape.parts()], dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- audio


def _smooth_noise(rng: np.random.Generator, num: int, step: int) -> Float[np.ndarray, " num"]:
    """Unit-variance noise, linearly interpolated between random knots `step` samples apart."""
    knots = rng.standard_normal(num // step + 2)
    return np.interp(np.arange(num) / step, np.arange(len(knots)), knots)


def _syllable_plan(seconds: float, rng: np.random.Generator) -> list[tuple[float, float, int, float]]:
    """(start s, duration s, vowel index, pitch accent) for each syllable: phrases of 3-7 syllables, ~4 Hz, pauses."""
    plan, time = [], rng.uniform(0.15, 0.35)
    while time < seconds - 0.3:
        for _ in range(rng.integers(3, 8)):
            duration = rng.uniform(0.14, 0.3)
            if time + duration > seconds - 0.1:
                break
            plan.append((time, duration, int(rng.integers(len(VOWEL_FORMANTS))), rng.uniform(-1, 1)))
            time += duration + rng.uniform(0.0, 0.06)
        time += rng.uniform(0.25, 0.6)  # pause between phrases
    return plan


def synthetic_speech(seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> Float[np.ndarray, " samples"]:
    """Speech-like mono audio in [-1, 1]: a jittered glottal pulse train (F0 100-220 Hz) through three formant
    resonators that glide between per-syllable vowels, ~4 syllables per second, fricative onsets and pauses."""
    rng = np.random.default_rng(seed)
    num = round(seconds * sample_rate)
    time = np.arange(num) / sample_rate
    gate = np.zeros(num)  # voicing amplitude envelope
    formants = np.tile(VOWEL_FORMANTS[5], (num, 1))
    pitch = np.full(num, 150.0)
    noise_gate = np.zeros(num)
    for start, duration, vowel, accent in _syllable_plan(seconds, rng):
        inside = (time >= start) & (time < start + duration)
        phase = (time[inside] - start) / duration
        gate[inside] = np.sin(np.pi * phase) ** 0.7 * rng.uniform(0.6, 1.0)
        formants[inside] = VOWEL_FORMANTS[vowel] * rng.uniform(0.95, 1.05, size=3)
        pitch[inside] = np.clip(155 + 35 * accent - 30 * phase, 100, 220)  # falling contour per syllable
        if rng.random() < 0.5:  # a fricative/plosive onset before the vowel
            burst = (time >= start - 0.06) & (time < start + 0.01)
            noise_gate[burst] = rng.uniform(0.15, 0.35)
    window = np.hanning(int(0.03 * sample_rate))  # 30 ms glides between targets
    window /= window.sum()
    formants = np.stack([np.convolve(formants[:, k], window, mode="same") for k in range(3)], axis=1)
    pitch = np.convolve(pitch, window, mode="same") * (1 + 0.02 * _smooth_noise(rng, num, sample_rate // 50))
    pitch = np.clip(pitch, 100, 220)
    # Glottal flow (Rosenberg pulse) per period, differentiated: the usual voice-source excitation.
    phase = np.cumsum(pitch / sample_rate) % 1.0
    flow = np.where(phase < 0.4, 0.5 * (1 - np.cos(np.pi * phase / 0.4)),
                    np.where(phase < 0.6, np.cos(np.pi * (phase - 0.4) / 0.4), 0.0))
    source = np.diff(flow, prepend=0.0) * gate + 0.003 * rng.standard_normal(num) * gate
    voiced = _formant_filter(source, formants, sample_rate)
    sos = butter(4, 3000, btype="highpass", fs=sample_rate, output="sos")
    fricative = sosfilt(sos, rng.standard_normal(num)) * np.convolve(noise_gate, window, mode="same")
    audio = voiced / (np.abs(voiced).max() + 1e-9) * 0.6 + 0.25 * fricative + 1e-4 * rng.standard_normal(num)
    return np.clip(audio, -1, 1).astype(np.float32)


def _formant_filter(source: np.ndarray, formants: np.ndarray, sample_rate: int, block: int = 80) -> np.ndarray:
    """Cascade of two-pole resonators whose centre frequencies follow `formants` [samples, 3], updated per block."""
    out = source.copy()
    radius = np.exp(-np.pi * FORMANT_BANDWIDTHS / sample_rate)
    states = [np.zeros(2) for _ in range(3)]
    for begin in range(0, len(source), block):
        chunk = out[begin:begin + block]
        for k in range(3):
            cosine = np.cos(2 * np.pi * formants[begin, k] / sample_rate)
            denominator = [1.0, -2 * radius[k] * cosine, radius[k] ** 2]
            gain = 1 - 2 * radius[k] * cosine + radius[k] ** 2  # unity gain at DC (Klatt)
            chunk, states[k] = lfilter([gain], denominator, chunk, zi=states[k])
        out[begin:begin + block] = chunk
    return out


def speech_envelope(samples: Float[np.ndarray, " samples"], num_frames: int, fps: float,
                    sample_rate: int = SAMPLE_RATE) -> Float[np.ndarray, " frames"]:
    """Per-video-frame loudness in [0, 1]: RMS over the 1/fps window centred on t_k = k / fps, divided by the
    clip's 95th percentile of voiced frames and clipped; silence gives 0."""
    samples = np.asarray(samples, dtype=np.float64)
    centres = np.arange(num_frames) / fps * sample_rate
    half = 0.5 * sample_rate / fps
    squares = np.concatenate([[0.0], np.cumsum(samples ** 2)])
    begin = np.clip(np.round(centres - half).astype(int), 0, len(samples))
    end = np.clip(np.round(centres + half).astype(int), 0, len(samples))
    rms = np.sqrt((squares[end] - squares[begin]) / np.maximum(end - begin, 1))
    voiced = rms[rms > 0.02 * (rms.max() + 1e-12)]
    if voiced.size == 0 or rms.max() < 1e-6:
        return np.zeros(num_frames, dtype=np.float32)
    envelope = np.clip(rms / np.percentile(voiced, 95), 0, 1)
    envelope = np.where(envelope < 0.05, 0.0, envelope)  # room noise does not open the mouth
    return envelope.astype(np.float32)


# ---------------------------------------------------------------------------------------------------- video


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class _MouthRig:
    """Precomputed jaw-drop field on a region of interest of the still portrait (source pixels)."""

    box: tuple[int, int, int, int]
    """(x0, y0, x1, y1) of the region, end exclusive."""
    grid_x: np.ndarray  # [h, w] source x of each region pixel
    grid_y: np.ndarray  # [h, w]
    line: np.ndarray  # [w] y of the parting line between the upper and lower teeth
    lens: np.ndarray  # [w] shape of the lip gap, 1 at the centre, 0 beyond the corners
    drop: np.ndarray  # [h, w] downward displacement per pixel of opening (0 above the parting line)


@dataclass(frozen=True)
class _EyeRig:
    """Column-wise eyelid geometry of one eye (source pixels)."""

    box: tuple[int, int, int, int]
    grid_y: np.ndarray  # [h, w]
    upper: np.ndarray  # [w] upper lid edge
    lower: np.ndarray  # [w] lower lid edge
    top: np.ndarray  # [w] top of the lid skin that stretches down
    bottom: np.ndarray  # [w]
    openness: np.ndarray  # [w] 1 where the eye is open, 0 at the corners


@dataclass(frozen=True)
class _Rig:
    """Everything measured once from the landmarks of the still portrait."""

    face_centre: np.ndarray  # [2] source px
    face_width: float
    face_height: float
    crop_centre: np.ndarray  # [2]
    crop_scale: float  # source px per output px
    mouth: _MouthRig
    eyes: tuple[_EyeRig, _EyeRig]


def _mouth_rig(points: np.ndarray, max_opening: float) -> _MouthRig:
    upper, lower = points[[60, 61, 62, 63, 64]], points[[64, 65, 66, 67, 60]][::-1]
    centre_x = 0.5 * (points[60, 0] + points[64, 0])
    half_width = 0.5 * (points[64, 0] - points[60, 0]) + 1.0  # the gap closes at the inner lip corners
    chin = points[8, 1]
    line_centre = 0.5 * (np.interp(centre_x, upper[:, 0], upper[:, 1]) + np.interp(centre_x, lower[:, 0], lower[:, 1]))
    jaw_height = chin - line_centre
    ramp = max(0.8 * jaw_height, 2.0 * max_opening)  # keeps the warp monotonic (slope < 1)
    fade = max(0.7 * jaw_height, 2.0 * max_opening)
    jaw_half = 0.5 * (points[12, 0] - points[4, 0])
    x0, x1 = int(centre_x - 1.3 * jaw_half) - 2, int(centre_x + 1.3 * jaw_half) + 3
    y0, y1 = int(line_centre - 0.3 * jaw_height) - 2, int(chin + 0.5 * max_opening + fade) + 3
    grid_y, grid_x = np.mgrid[y0:y1, x0:x1].astype(np.float32)  # [h, w]
    xs = grid_x[0]
    line = 0.5 * (np.interp(xs, upper[:, 0], upper[:, 1]) + np.interp(xs, lower[:, 0], lower[:, 1]))
    lens = np.clip(1 - ((xs - centre_x) / half_width) ** 2, 0, 1) ** 0.8
    # The jaw's half width at each height, from the jaw contour (landmarks 3-13), with a soft margin.
    heights = np.linspace(line_centre, chin, 8)
    widths = 0.5 * (np.interp(heights, points[8:14, 1][::-1], points[8:14, 0][::-1])
                    - np.interp(heights, points[3:9, 1], points[3:9, 0]))
    width = 1.3 * np.maximum(np.interp(grid_y, heights, widths), 0.6 * jaw_half)  # [h, w]
    across = np.cos(0.5 * np.pi * np.clip(np.abs(grid_x - centre_x) / width, 0, 1)) ** 2
    down = _smoothstep((grid_y - line) / ramp)
    drop = (lens + (across - lens) * down) * (1 - _smoothstep((grid_y - chin - 0.5 * max_opening) / fade))
    drop = np.where(grid_y >= line, drop, 0.0)
    return _MouthRig((x0, y0, x1, y1), grid_x, grid_y, line.astype(np.float32), lens.astype(np.float32),
                     drop.astype(np.float32))


def _eye_rig(points: np.ndarray) -> _EyeRig:
    """Points: the 6 eye landmarks in dlib order (outer/inner corner, two upper, inner/outer corner, two lower)."""
    left, right = points[:, 0].min() - 2, points[:, 0].max() + 2
    corner_left = points[np.argmin(points[:, 0])]
    corner_right = points[np.argmax(points[:, 0])]
    upper_pts = np.array([[left, corner_left[1]], *sorted(points[[0, 1, 2, 3]].tolist()), [right, corner_right[1]]])
    lower_pts = np.array([[left, corner_left[1]], *sorted(points[[3, 4, 5, 0]].tolist()), [right, corner_right[1]]])
    x0, x1 = int(left), int(right) + 2
    xs = np.arange(x0, x1, dtype=np.float32)
    upper, lower = np.interp(xs, *upper_pts.T), np.interp(xs, *lower_pts.T)
    middle, half = 0.5 * (upper + lower), 0.65 * (lower - upper)  # dlib's lids sit a little inside the real ones
    upper, lower = middle - half, middle + half
    height = float((lower - upper).max())
    top, bottom = upper - 1.0 * height, lower + 0.8 * height
    y0, y1 = int(top.min()) - 1, int(bottom.max()) + 2
    grid_y = np.mgrid[y0:y1, x0:x1][0].astype(np.float32)
    openness = np.clip(2 * (lower - upper) / height, 0, 1)
    return _EyeRig((x0, y0, x1, y1), grid_y, upper, lower, top, bottom, openness)


def _build_rig(points: np.ndarray, size: int, max_opening_src: float) -> _Rig:
    face_width = float(points[16, 0] - points[0, 0])
    face_height = float(points[8, 1] - points[17:27, 1].mean())
    face_centre = points.mean(axis=0)
    crop_centre = face_centre + np.array([0.0, CROP_DROP * face_height])
    return _Rig(face_centre, face_width, face_height, crop_centre, CROP_SIDE * face_width / size,
                _mouth_rig(points, max_opening_src), (_eye_rig(points[36:42]), _eye_rig(points[42:48])))


def _open_mouth(image: np.ndarray, rig: _MouthRig, opening: float) -> None:
    """Drop the jaw by `opening` source px in place: lower lip, teeth, chin and jaw move down with a falloff, and a
    dark oral cavity fills the gap that opens below the parting line."""
    if opening <= 0.05:
        return
    x0, y0, x1, y1 = rig.box
    region = cv2.remap(image, rig.grid_x, rig.grid_y - opening * rig.drop, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)  # [h, w, 3]
    gap = opening * rig.lens  # [w]
    inside = rig.grid_y - rig.line  # [h, w] distance below the parting line
    alpha = np.clip(np.minimum(inside, gap - inside) + 0.5, 0, 1) * np.clip(gap, 0, 1)  # anti-aliased lens
    # Shading across the gap: lit lips at its edges, a dark throat, then the tongue in its lower third.
    across = np.clip(inside / np.maximum(gap, 1e-3), 0, 1)[..., None]  # [h, w, 1] 0 at the upper lip, 1 at the lower
    throat = np.exp(-(((across - 0.4) / 0.3) ** 2))
    tongue = _smoothstep((across - 0.55) / 0.3) * min(1.0, opening / 6.0)
    cavity = (np.array(MOUTH_EDGE) * (1 - throat) + np.array(MOUTH_THROAT) * throat) * (1 - tongue) + \
        np.array(MOUTH_TONGUE) * tongue
    region = region + alpha[..., None] * (cavity - region)
    image[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)


def _blink(image: np.ndarray, rig: _EyeRig, closure: float) -> None:
    """Close the eye by `closure` in [0, 1] in place: the upper lid skin stretches down over the eye, which is hidden
    from the top, the lower lid rises a little, and the lash line darkens."""
    if closure <= 0.01:
        return
    x0, y0, x1, y1 = rig.box
    meet = rig.upper + 0.75 * (rig.lower - rig.upper)
    lid = rig.upper + closure * (meet - rig.upper)  # [w] where the upper lid edge is now
    rise = rig.lower - closure * (rig.lower - meet)  # [w] where the lower lid edge is now
    y = rig.grid_y  # [h, w]
    above = rig.top + (y - rig.top) * (rig.upper - rig.top) / np.maximum(lid - rig.top, 1e-3)
    between = y + (rig.lower - rise)
    below = rig.lower + (y - rise) * (rig.bottom - rig.lower) / np.maximum(rig.bottom - rise, 1e-3)
    source_y = np.where(y < lid, above, np.where(y < rise, between, below))
    source_y = np.where((y < rig.top) | (y > rig.bottom), y, source_y).astype(np.float32)
    source_x = np.broadcast_to(np.arange(x0, x1, dtype=np.float32), y.shape)
    region = cv2.remap(image, np.ascontiguousarray(source_x), source_y, cv2.INTER_LINEAR).astype(np.float32)
    lashes = 1 - 0.6 * closure * rig.openness * np.exp(-(((y - lid) / 0.9) ** 2))
    image[y0:y1, x0:x1] = np.clip(region * lashes[..., None] + 0.5, 0, 255).astype(np.uint8)


def _head_map(rig: _Rig, size: int, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward map (output pixel → source pixel) for pose (yaw, pitch, roll in radians, tx, ty in source px).

    Forward model of a head point x (relative to the face centre): a parallax shift by its pseudo-depth, a
    face-centred turn homography, roll, translation; blended with the static background by a soft head mask.
    Computed on a 4× coarser grid (the field is smooth) and upsampled.
    """
    yaw, pitch, roll, shift_x, shift_y = pose
    coarse = -(-size // 4)
    index = (np.arange(coarse, dtype=np.float32) + 0.5) * size / coarse - 0.5  # cv2.resize's sample positions
    out_y, out_x = np.meshgrid(index, index, indexing="ij")  # [c, c]
    rest_x = rig.crop_centre[0] + (out_x - (size - 1) / 2) * rig.crop_scale
    rest_y = rig.crop_centre[1] + (out_y - (size - 1) / 2) * rig.crop_scale
    # Undo translation and roll about the face centre.
    vx, vy = rest_x - rig.face_centre[0] - shift_x, rest_y - rig.face_centre[1] - shift_y
    cos_r, sin_r = math.cos(roll), math.sin(roll)
    vx, vy = cos_r * vx + sin_r * vy, -sin_r * vx + cos_r * vy
    # Undo the turn: H = K [r1 r2 e3] K⁻¹ for a plane facing the camera at distance F (pixels), rotated about its
    # own centre; K = diag(F, F, 1) in face-centred coordinates.
    focal = PERSPECTIVE_DISTANCE * rig.face_width
    cos_y, sin_y, cos_p, sin_p = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rotation = np.array([[cos_y, 0, sin_y], [0, 1, 0], [-sin_y, 0, cos_y]]) @ np.array(
        [[1, 0, 0], [0, cos_p, -sin_p], [0, sin_p, cos_p]])
    homography = np.diag([focal, focal, 1.0]) @ np.stack([rotation[:, 0], rotation[:, 1], [0, 0, 1]], axis=1)
    inverse = np.linalg.inv(homography @ np.diag([1 / focal, 1 / focal, 1.0]))
    w = inverse[2, 0] * vx + inverse[2, 1] * vy + inverse[2, 2]
    ux = (inverse[0, 0] * vx + inverse[0, 1] * vy + inverse[0, 2]) / w
    uy = (inverse[1, 0] * vx + inverse[1, 1] * vy + inverse[1, 2]) / w
    # Undo the parallax: a Gaussian bump of height `depth` toward the camera, centred on the nose, is rotated by the
    # same R (camera z forward), which moves it by (-sin(yaw), +sin(pitch)) · depth: the face's middle turns more than
    # its outline, and the same way as the homography's near side.
    nose_y = 0.1 * rig.face_height
    depth = NOSE_DEPTH * rig.face_width * np.exp(-0.5 * ((ux / (0.33 * rig.face_width)) ** 2
                                                           + ((uy - nose_y) / (0.45 * rig.face_height)) ** 2))
    head_x = rig.face_centre[0] + ux + sin_y * depth
    head_y = rig.face_centre[1] + uy - sin_p * depth
    # Soft head-and-neck mask: 1 inside an ellipse around the head, 0 on the torso and the background.
    ex = (rest_x - rig.face_centre[0]) / (0.95 * rig.face_width)
    ey = (rest_y - rig.face_centre[1] + 0.15 * rig.face_height) / (1.35 * rig.face_height)
    weight = 1 - _smoothstep((np.sqrt(ex ** 2 + ey ** 2) - 1.0) / 0.6)
    map_x = (rest_x + weight * (head_x - rest_x)).astype(np.float32)
    map_y = (rest_y + weight * (head_y - rest_y)).astype(np.float32)
    return (cv2.resize(map_x, (size, size), interpolation=cv2.INTER_LINEAR),
            cv2.resize(map_y, (size, size), interpolation=cv2.INTER_LINEAR))


def _head_track(config: SyntheticSubjectConfig, rng: np.random.Generator, crop_scale: float) -> np.ndarray:
    """[frames, 5] smooth head poses (yaw, pitch, roll in radians, tx, ty in source px; `crop_scale` is source px
    per output px): each degree of freedom is a bounded sum of three slow random sinusoids."""
    time = np.arange(config.num_frames) / config.fps
    amplitudes = [math.radians(config.yaw_deg), math.radians(config.pitch_deg), math.radians(config.roll_deg),
                  config.translation * config.size * crop_scale, config.translation * config.size * crop_scale]
    track = np.zeros((config.num_frames, 5))
    for dof, amplitude in enumerate(amplitudes):
        for band, weight in (((0.12, 0.25), 0.65), ((0.25, 0.5), 0.25), ((0.5, 0.9), 0.1)):
            frequency, phase = rng.uniform(*band), rng.uniform(0, 2 * np.pi)
            track[:, dof] += amplitude * weight * np.sin(2 * np.pi * frequency * time + phase)
    return track


def _blink_track(config: SyntheticSubjectConfig, rng: np.random.Generator) -> np.ndarray:
    """[frames] eyelid closure in [0, 1]: blinks at random times, at least 1.2 s apart."""
    closure = np.zeros(config.num_frames)
    if config.blink_rate <= 0:
        return closure
    length = max(2, round(len(BLINK_PROFILE) * config.fps / 25))
    profile = np.interp(np.linspace(0, len(BLINK_PROFILE) - 1, length), np.arange(len(BLINK_PROFILE)), BLINK_PROFILE)
    time = rng.uniform(0.5, 2.5)
    while time < config.seconds:
        start = round(time * config.fps)
        closure[start:start + length] = profile[:max(0, min(length, config.num_frames - start))]
        time += max(1.2, rng.exponential(60.0 / config.blink_rate))
    return closure


def synthetic_frames(config: SyntheticSubjectConfig,
                     envelope: Float[np.ndarray, " frames"]) -> Iterator[UInt8[np.ndarray, "size size 3"]]:
    """Animate the portrait: `config.num_frames` RGB frames whose jaw opening follows `envelope` (in [0, 1], one
    value per frame, e.g. from `speech_envelope`), with smooth head motion and occasional blinks."""
    envelope = np.asarray(envelope, dtype=np.float32)
    if envelope.shape != (config.num_frames,):
        raise ValueError(f"envelope must have one value per frame ({config.num_frames}), got {envelope.shape}")
    face_width = float(PORTRAIT_LANDMARKS_68[16, 0] - PORTRAIT_LANDMARKS_68[0, 0])
    max_opening = config.mouth_open_px / 512 * CROP_SIDE * face_width  # source px
    rig = _build_rig(PORTRAIT_LANDMARKS_68, config.size, max_opening)
    rng = np.random.default_rng([config.seed, 1])  # independent of the speech stream of the same seed
    poses, closures = _head_track(config, rng, rig.crop_scale), _blink_track(config, rng)
    portrait = load_portrait()
    for pose, opening, closure in zip(poses, np.clip(envelope, 0, 1) * max_opening, closures, strict=True):
        image = portrait.copy()
        _open_mouth(image, rig.mouth, float(opening))
        for eye in rig.eyes:
            _blink(image, eye, float(closure))
        map_x, map_y = _head_map(rig, config.size, pose)
        yield cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def write_synthetic_clip(path: str | os.PathLike, config: SyntheticSubjectConfig = SyntheticSubjectConfig()) -> Path:
    """Write the synthetic talking subject to an H.264 mp4 with its speech muxed as AAC; returns the path."""
    audio = synthetic_speech(config.seconds, SAMPLE_RATE, config.seed)
    envelope = speech_envelope(audio, config.num_frames, config.fps, SAMPLE_RATE)
    with VideoWriter(path, fps=config.fps, audio=audio, audio_sample_rate=SAMPLE_RATE,
                     metadata={"comment": "deltaplane synthetic subject (NASA public-domain portrait)"}) as writer:
        for frame in synthetic_frames(config, envelope):
            writer.write(frame)
    return Path(path)


def pattern_frames(seconds: float = 2.0, fps: int = 25,
                   size: int | tuple[int, int] = 256) -> Iterator[UInt8[np.ndarray, "height width 3"]]:
    """A moving colour pattern with no face in it: drifting colour waves and a rotating bar. `size` is the side of
    a square frame or (width, height)."""
    width, height = (size, size) if isinstance(size, int) else size
    scale = max(width, height) / 2
    y, x = np.meshgrid((np.arange(height, dtype=np.float32) - height / 2) / scale,
                       (np.arange(width, dtype=np.float32) - width / 2) / scale, indexing="ij")  # [h, w]
    for k in range(math.floor(seconds * fps + 1e-6)):
        time = k / fps
        channels = [np.sin(3 * x + 2 * time), np.sin(4 * y - 3 * time), np.sin(2.5 * (x + y) + 1.5 * time)]
        frame = (np.stack(channels, axis=-1) * 0.5 + 0.5) * 255  # [h, w, 3]
        bar = np.abs(np.cos(0.8 * time) * y - np.sin(0.8 * time) * x) < 0.08
        frame[bar] = 255 - frame[bar]
        yield frame.astype(np.uint8)


def write_pattern_clip(path: str | os.PathLike, seconds: float = 2.0, fps: int = 25,
                       size: int | tuple[int, int] = 256, with_audio: bool = True) -> Path:
    """Write a face-free moving pattern (for "no face detected" paths and I/O tests), optionally with a 220 Hz
    tone that swells at 2 Hz; `size` is a side or (width, height). Returns the path."""
    audio = None
    if with_audio:
        time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        audio = (0.3 * np.sin(2 * np.pi * 220 * time) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * time))).astype(np.float32)
    with VideoWriter(path, fps=fps, audio=audio, audio_sample_rate=SAMPLE_RATE) as writer:
        for frame in pattern_frames(seconds, fps, size):
            writer.write(frame)
    return Path(path)
