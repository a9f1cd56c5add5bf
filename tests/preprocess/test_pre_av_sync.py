"""The source clip's audio–video offset (`preprocess.av_sync`): measured from the tracked mouth and the speech, and
corrected by `deltaplane preprocess` so that the lip model never learns a lag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deltaplane import api
from deltaplane.audio.features import SAMPLE_RATE
from deltaplane.audio.io import load_audio, write_wav
from deltaplane.data.schema import AUDIO_WAV, read_manifest
from deltaplane.errors import InputError
from deltaplane.evaluation.sync import landmark_sync, speech_envelope
from deltaplane.preprocess.av_sync import describe_offset, measure_offset, shift_audio, shift_windows
from deltaplane.synthetic import PORTRAIT_LANDMARKS_68

FPS = 25.0


def test_shift_audio_moves_the_sound_by_whole_frames() -> None:
    samples = np.zeros(SAMPLE_RATE, np.float32)
    samples[8000] = 1.0
    per_frame = SAMPLE_RATE / FPS
    earlier, later = shift_audio(samples, -2, FPS, SAMPLE_RATE), shift_audio(samples, 3, FPS, SAMPLE_RATE)
    assert earlier.shape == later.shape == samples.shape
    assert np.argmax(earlier) == 8000 - 2 * per_frame and np.argmax(later) == 8000 + 3 * per_frame
    assert not shift_audio(samples, -40, FPS, SAMPLE_RATE).any()  # shifted past the end: silence, same length
    # Features computed elsewhere move with the sound: window k of the shifted clip is window k + 2 of the source.
    windows = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 16, 4), np.float32)
    assert shift_windows(windows, -2)[:, 0, 0].tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 9, 9]
    assert shift_windows(windows, 3)[:, 0, 0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]


def _talking(lag_frames: int, seconds: float = 12.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Syllable-like 1–4 kHz noise bursts and 68-point landmarks whose inner lips open with the speech envelope
    `lag_frames` frames later (positive: the mouth moves after the sound)."""
    rng = np.random.default_rng(seed)
    count = int(seconds * FPS)
    syllables = np.repeat(rng.random(count // 5 + 1) > 0.4, 5)[:count] * rng.uniform(0.3, 1.0, count)
    gain = np.interp(np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE * FPS, np.arange(count), syllables)
    noise = np.fft.irfft(np.fft.rfft(rng.normal(size=gain.shape[0]))
                         * ((np.fft.rfftfreq(gain.shape[0], 1 / SAMPLE_RATE) > 1000)
                            & (np.fft.rfftfreq(gain.shape[0], 1 / SAMPLE_RATE) < 4000)), gain.shape[0])
    samples = (0.3 * gain * noise / noise.std()).astype(np.float32)
    envelope = speech_envelope(samples, count, FPS)
    opening = np.roll(envelope / envelope.max(), lag_frames)  # opening[k] = envelope[k − lag]
    landmarks = np.repeat(np.asarray(PORTRAIT_LANDMARKS_68)[None], count, 0).astype(np.float64)
    for upper, lower in ((61, 67), (62, 66), (63, 65)):
        landmarks[:, lower, 1] = landmarks[:, upper, 1] + 20.0 * opening
    landmarks[:7] = np.nan  # frames without a face are left out
    return landmarks, samples


@pytest.mark.parametrize("lag", [-6, 4])
def test_a_clear_offset_is_measured_and_shifting_by_it_removes_it(lag: int) -> None:
    landmarks, samples = _talking(lag)
    measured = measure_offset(landmarks, samples, FPS)
    assert measured is not None and measured.frames == lag and measured.corrected
    assert measured.correlation > measured.zero_correlation + 0.1
    again = measure_offset(landmarks, shift_audio(samples, lag, FPS, SAMPLE_RATE), FPS)
    assert again is not None and again.frames == 0 and not again.corrected


def test_small_or_unclear_offsets_are_left_alone() -> None:
    landmarks, samples = _talking(1)
    assert measure_offset(landmarks, samples, FPS).frames == 1 and not measure_offset(landmarks, samples, FPS).corrected
    rng = np.random.default_rng(1)
    unrelated = landmarks.copy()  # a mouth that ignores the sound
    unrelated[:, 66, 1] += rng.uniform(0, 20, landmarks.shape[0])
    for upper, lower in ((61, 67), (63, 65)):
        unrelated[:, lower, 1] = unrelated[:, upper, 1]
    assert not measure_offset(unrelated, samples, FPS).corrected
    assert measure_offset(np.full_like(landmarks, np.nan), samples, FPS) is None  # no face anywhere


@pytest.fixture(scope="module")
def late_sound(synthetic_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """The synthetic clip's speech 5 frames (200 ms) late, as a separate file, and the speech in step."""
    speech = load_audio(synthetic_clip)
    path = tmp_path_factory.mktemp("late") / "late.wav"
    write_wav(path, shift_audio(speech, 5, FPS, SAMPLE_RATE))
    return path, speech


def test_preprocess_puts_late_sound_back_onto_the_lips(synthetic_clip: Path, synthetic_dataset: Path,
                                                       late_sound: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    assert read_manifest(synthetic_dataset).audio.offset_frames == 0  # the synthetic subject speaks in step
    late, speech = late_sound
    dataset = api.preprocess(synthetic_clip, tmp_path / "ds", audio=late, size=128, progress=False)
    assert read_manifest(dataset).audio.offset_frames == -5
    assert describe_offset(read_manifest(dataset)).startswith("the sound was 200 ms late against the lips")
    restored = load_audio(dataset / AUDIO_WAV)
    cut = len(speech) - 5 * SAMPLE_RATE // 25  # the last 200 ms were never in the late file
    assert np.abs(restored[:cut] - speech[:cut]).max() < 1e-3 and not restored[cut:].any()
    tracks = np.load(dataset / "tracks.npz")
    openings = np.linalg.norm(tracks["landmarks_original"][:, 62] - tracks["landmarks_original"][:, 66], axis=-1)
    assert landmark_sync(openings, speech_envelope(restored, len(openings), FPS), 12).offset == 0

    kept = api.preprocess(synthetic_clip, tmp_path / "kept", audio=late, size=128, av_offset=0, progress=False)
    assert read_manifest(kept).audio.offset_frames == 0
    unshifted = load_audio(kept / AUDIO_WAV)
    assert np.abs(unshifted - load_audio(late)[:len(unshifted)]).max() < 1e-3
    for bad in ("soon", "100"):  # not a number; the whole 100-frame clip
        with pytest.raises(InputError, match="--av-offset"):
            api.preprocess(synthetic_clip, tmp_path / "bad", av_offset=bad, progress=False)
    assert not (tmp_path / "bad").exists()
