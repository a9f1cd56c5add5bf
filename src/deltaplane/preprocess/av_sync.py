"""The source clip's audio–video offset, measured weight-free and corrected before anything learns from it.

Videos often carry sound that is out of step with the picture (a re-encode, a screen recording, a phone's variable
frame rate). The lip model learns whatever lag its training clip has and replays it with every voice: obama_20s's
sound comes 6 frames (240 ms) after the lips move, and the model trained on it put its renders 5 frames off the
driving speech. The offset is read from the clip itself: the mouth opening tracked in every frame against the speech
envelope (`evaluation.sync.sync_curve`), and the dataset's audio is shifted onto the lips when the peak is clear.

Offsets follow `evaluation.sync`: in frames, positive when the mouth moves after the sound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from numpy import ndarray

from deltaplane.data.schema import Manifest
from deltaplane.evaluation.face import mouth_opening
from deltaplane.evaluation.sync import landmark_sync, speech_envelope, sync_curve

MAX_OFFSET_SECONDS = 0.5
"""Offsets searched: ±0.5 s."""
MIN_OFFSET_FRAMES = 2
"""Smaller offsets are left alone: one frame (40 ms) is below what viewers notice (ITU-R BT.1359: sound up to 45 ms
early or 125 ms late) and within the measurement's own spread (macron_fr_50s: 0 or +1 in every 8-s block)."""
MIN_CORRELATION = 0.2
"""The peak must correlate at least this well: a clip whose mouth hardly follows its sound gives no evidence."""
MIN_MARGIN = 0.1
"""…and by at least this much better than at offset 0 (obama_20s: 0.45 at −6 against 0.06 at 0)."""


@dataclass(frozen=True)
class AudioOffset:
    """The measured offset of a clip and whether it is corrected."""

    frames: int
    """Best offset (positive: the mouth moves after the sound)."""
    correlation: float
    """Sync correlation at that offset."""
    zero_correlation: float
    """Sync correlation at offset 0."""
    corrected: bool
    """Whether the dataset's audio is shifted by `frames` (see the MIN_* thresholds)."""


def measure_offset(landmarks68: Float[ndarray, "frames 68 2"], samples: Float[ndarray, " samples"],
                   fps: float) -> AudioOffset | None:
    """Offset of a clip from its tracked landmarks (NaN rows where no face was found) and its 16 kHz speech; None
    when too few frames have a face to measure it."""
    openings = np.array([mouth_opening(points) for points in landmarks68])  # NaN without a face
    envelope = speech_envelope(samples, landmarks68.shape[0], fps)
    best = landmark_sync(openings, envelope, max(1, round(MAX_OFFSET_SECONDS * fps)))
    zero = sync_curve(openings, envelope, 0).get(0)
    if best is None or zero is None:
        return None
    corrected = (abs(best.offset) >= MIN_OFFSET_FRAMES and best.correlation >= MIN_CORRELATION
                 and best.correlation - zero >= MIN_MARGIN)
    return AudioOffset(best.offset, best.correlation, zero, corrected)


def shift_audio(samples: Float[ndarray, " samples"], frames: int, fps: float, sample_rate: int
                ) -> Float[ndarray, " samples"]:
    """Samples moved by `frames` video frames, same length, zero-padded: by a negative offset (sound late) the
    sound comes earlier, by a positive one later, so that sound and mouth meet at offset 0."""
    shift = int(round(-frames / fps * sample_rate))  # samples to drop from the front (negative: to insert)
    if shift >= 0:
        return np.concatenate([samples[shift:], np.zeros(min(shift, samples.shape[0]), samples.dtype)])
    return np.concatenate([np.zeros(min(-shift, samples.shape[0]), samples.dtype), samples[:shift]])


def shift_windows(windows: Float[ndarray, "frames ..."], frames: int) -> Float[ndarray, "frames ..."]:
    """Per-frame feature windows moved as `shift_audio` moves the sound (window k becomes window k − frames), the
    end windows repeated: for features computed elsewhere (AD-NeRF/Talk3D .npy) that cannot be recomputed."""
    source = np.clip(np.arange(windows.shape[0]) - frames, 0, windows.shape[0] - 1)
    return windows[source]


def describe_offset(manifest: Manifest) -> str:
    """One line on the dataset's audio–video offset, for the preprocess log and the evaluation report."""
    if "sync" not in manifest.stages:
        return ("not checked: preprocessed before deltaplane checked it; re-run `deltaplane preprocess` (seconds) to "
                "check it")
    frames = manifest.audio.offset_frames
    if frames == 0:
        return "in step (no shift)"
    return (f"the sound was {abs(frames) / manifest.fps * 1000:.0f} ms {'late' if frames < 0 else 'early'} against "
            "the lips: shifted onto them at preprocessing (--av-offset 0 keeps it as it is)")
