"""Audio-visual sync without any learned weights (mouth opening vs speech envelope), and the face crop SyncNet's
LSE-C / LSE-D evaluation takes (syncnet_python's `run_pipeline.py` crop around a face box).

Offsets are in video frames; a positive offset means the mouth moves *after* the sound (the video lags the audio),
the sign syncnet_python's AV offset uses too.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from jaxtyping import Float, UInt8
from numpy import ndarray
from scipy.signal import butter, sosfiltfilt

from deltaplane.audio.features import SAMPLE_RATE

SPEECH_BAND_HZ = (1000.0, 4000.0)
"""The envelope is taken of this band (second/third formants, where lip opening shapes the spectrum most); on the
reference clips it correlates with mouth opening more sharply than the broadband RMS does."""
ENVELOPE_FRAMES = 2.0
"""Length of the RMS window centred on each video frame's time, in frames."""
MIN_SYNC_FRAMES = 25
"""Fewer valid frames than this give no sync score."""
SYNCNET_CROP_SCALE = 0.4
"""syncnet_python's `--crop_scale`: the crop reaches bs·(1 + 2·0.4) below and bs·(1 + 0.4) beside the box centre."""
SYNCNET_PAD_VALUE = 110
SYNCNET_SIZE = 224


class SyncScore(NamedTuple):
    correlation: float
    """Pearson correlation of mouth opening and speech envelope at the best offset (higher is better)."""
    offset: int
    """The best offset in video frames (positive: the mouth lags the audio)."""


def speech_envelope(samples: Float[ndarray, " samples"], num_frames: int, fps: float,
                    sample_rate: int = SAMPLE_RATE) -> Float[ndarray, " frames"]:
    """RMS of the 1–4 kHz band (zero-phase filtered) in a window of `ENVELOPE_FRAMES` frames centred on each
    t_k = k / fps; zero past the end of the audio."""
    samples = np.asarray(samples, np.float64)
    if samples.shape[0] > 27:  # sosfiltfilt needs a few samples more than its padding
        sos = butter(4, SPEECH_BAND_HZ, btype="bandpass", fs=sample_rate, output="sos")
        samples = sosfiltfilt(sos, samples)
    energy = np.concatenate([[0.0], np.cumsum(samples**2)])  # energy[i] = sum of the first i squared samples
    centres = np.arange(num_frames) * sample_rate / fps
    half = ENVELOPE_FRAMES * sample_rate / fps / 2.0
    starts = np.clip(np.round(centres - half).astype(np.int64), 0, samples.shape[0])
    stops = np.clip(np.round(centres + half).astype(np.int64), 0, samples.shape[0])
    counts = np.maximum(stops - starts, 1)
    return np.sqrt(np.maximum(energy[stops] - energy[starts], 0.0) / counts)


def _pearson(first: ndarray, second: ndarray) -> float:
    first, second = first - first.mean(), second - second.mean()
    norm = np.sqrt((first**2).sum() * (second**2).sum())
    return float((first * second).sum() / norm) if norm > 0 else 0.0


def sync_curve(opening: Float[ndarray, " frames"], envelope: Float[ndarray, " frames"],
               max_offset: int = 10) -> dict[int, float]:
    """Correlation of opening[k] with envelope[k − d] for each d in [−max_offset, max_offset] that leaves at least
    `MIN_SYNC_FRAMES` pairs; frames without a face (NaN opening) are left out."""
    num_frames = min(opening.shape[0], envelope.shape[0])
    curve = {}
    for offset in range(-max_offset, max_offset + 1):
        video = opening[max(offset, 0):num_frames + min(offset, 0)]
        audio = envelope[max(-offset, 0):num_frames - max(offset, 0)]
        valid = np.isfinite(video)
        if valid.sum() >= MIN_SYNC_FRAMES:
            curve[offset] = _pearson(video[valid], audio[valid])
    return curve


def landmark_sync(opening: Float[ndarray, " frames"], envelope: Float[ndarray, " frames"],
                  max_offset: int = 10) -> SyncScore | None:
    """The best offset d of `sync_curve` and its correlation; None when no offset leaves enough frames."""
    curve = sync_curve(opening, envelope, max_offset)
    if not curve:
        return None
    offset = max(curve, key=lambda d: (curve[d], -abs(d)))  # a tie goes to the smaller shift
    return SyncScore(curve[offset], offset)


def syncnet_crop(rgb: UInt8[ndarray, "height width 3"], box: Float[ndarray, "4"]) -> UInt8[ndarray, "224 224 3"]:
    """syncnet_python's face crop: with bs = half the box's larger side and (x, y) its centre, rows y − bs …
    y + bs·(1 + 2·cs) and columns x ± bs·(1 + cs) (cs = 0.4), padded with grey 110, resized to 224². The box is the
    tracker's face-mesh box standing in for S3FD's."""
    center_x, center_y = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    half = max(box[2] - box[0], box[3] - box[1]) / 2.0
    side = 2.0 * half * (1.0 + SYNCNET_CROP_SCALE)
    left, top = center_x - side / 2.0, center_y - half
    scale = SYNCNET_SIZE / side
    # Crop pixel centre u + 0.5 ↔ frame point left + (u + 0.5)/scale, in OpenCV's integer-centre form.
    to_crop = np.array([[scale, 0.0, -left * scale + 0.5 * scale - 0.5],
                        [0.0, scale, -top * scale + 0.5 * scale - 0.5]])
    return cv2.warpAffine(rgb, to_crop, (SYNCNET_SIZE, SYNCNET_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(SYNCNET_PAD_VALUE,) * 3)
