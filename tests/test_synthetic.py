"""The synthetic talking subject: real detectors find the face, the mouth follows the audio, the pattern has no face."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest

from deltaplane.audio.io import load_audio
from deltaplane.media.video import iter_frames, probe_video
from deltaplane.synthetic import (
    PORTRAIT_LANDMARKS_68,
    SyntheticSubjectConfig,
    measure_portrait_landmarks,
    speech_envelope,
    synthetic_frames,
    synthetic_speech,
    write_pattern_clip,
    write_synthetic_clip,
)

dlib = pytest.importorskip("dlib")
CONFIG = SyntheticSubjectConfig(seconds=4.0, seed=0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_clip(tmp_path_factory.mktemp("synthetic") / "subject.mp4", CONFIG)


@pytest.fixture(scope="module")
def decoded(clip: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Every frame of the clip as decoded by the real reader, and the per-frame envelope of its decoded audio."""
    frames = list(iter_frames(clip, CONFIG.fps))
    return frames, speech_envelope(load_audio(clip), len(frames), CONFIG.fps)


@pytest.fixture(scope="module")
def dlib_models() -> tuple[object, object]:
    spec = importlib.util.find_spec("face_recognition_models")
    assert spec is not None and spec.origin is not None
    model = os.path.join(os.path.dirname(spec.origin), "models", "shape_predictor_68_face_landmarks.dat")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(model)


def test_cached_landmarks_match_a_fresh_dlib_measurement() -> None:
    np.testing.assert_allclose(measure_portrait_landmarks(), PORTRAIT_LANDMARKS_68, atol=2.0)


def test_speech_is_deterministic_syllabic_and_has_pauses() -> None:
    audio = synthetic_speech(6.0, seed=3)
    assert audio.dtype == np.float32 and audio.shape == (6 * 16000,)
    assert np.array_equal(audio, synthetic_speech(6.0, seed=3))
    assert not np.array_equal(audio, synthetic_speech(6.0, seed=4))
    assert 0.2 < np.abs(audio).max() <= 1.0
    envelope = speech_envelope(audio, 150, 25)
    assert envelope.min() >= 0 and envelope.max() <= 1
    silent = np.mean(envelope == 0)
    assert 0.1 < silent < 0.6, silent  # pauses between phrases, but mostly speech
    # Syllables: rises of the envelope through 0.5, about 2-6 per second of speech.
    onsets = np.count_nonzero((envelope[1:] >= 0.5) & (envelope[:-1] < 0.5))
    assert 2.0 < onsets / (6.0 * (1 - silent)) < 6.0, onsets


def test_envelope_of_silence_is_zero() -> None:
    assert not speech_envelope(np.zeros(16000, np.float32), 25, 25).any()


def test_clip_has_the_requested_duration_frames_and_audio(clip: Path, decoded: tuple[list, np.ndarray]) -> None:
    info = probe_video(clip)
    assert (info.width, info.height, info.fps, info.has_audio) == (512, 512, 25.0, True)
    assert abs(info.duration - CONFIG.seconds) < 0.05
    frames, _ = decoded
    assert len(frames) == CONFIG.num_frames == 100
    assert abs(len(load_audio(clip)) - CONFIG.seconds * 16000) < 0.05 * 16000


def test_frames_are_deterministic_and_check_the_envelope_length() -> None:
    config = SyntheticSubjectConfig(seconds=0.4, size=128, seed=5)
    envelope = np.linspace(0, 1, config.num_frames, dtype=np.float32)
    first, second = list(synthetic_frames(config, envelope)), list(synthetic_frames(config, envelope))
    assert len(first) == 10 and first[0].shape == (128, 128, 3) and first[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(ValueError, match="one value per frame"):
        next(synthetic_frames(config, envelope[:-1]))


def test_dlib_finds_the_face_and_the_mouth_follows_the_audio(decoded: tuple[list, np.ndarray], dlib_models) -> None:
    detector, predictor = dlib_models
    frames, envelope = decoded
    openings, found = [], []
    for index in range(0, len(frames), 2):
        boxes = detector(frames[index], 0)
        if not boxes:
            continue
        points = np.array([[p.x, p.y] for p in predictor(frames[index], max(boxes, key=lambda b: b.area())).parts()])
        openings.append(np.linalg.norm(points[[61, 62, 63]] - points[[67, 66, 65]], axis=1).mean())  # inner lips
        found.append(index)
    assert len(found) >= 0.95 * len(range(0, len(frames), 2))
    correlation = np.corrcoef(envelope[found], openings)[0, 1]
    assert correlation > 0.6, correlation


def test_mediapipe_finds_the_face(decoded: tuple[list, np.ndarray]) -> None:
    mediapipe = pytest.importorskip("mediapipe")
    frames, _ = decoded
    sampled = frames[::2]
    with mediapipe.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        found = sum(mesh.process(frame).multi_face_landmarks is not None for frame in sampled)
    assert found >= 0.95 * len(sampled)


def test_pattern_clip_has_no_face(tmp_path: Path, dlib_models) -> None:
    detector, _ = dlib_models
    path = write_pattern_clip(tmp_path / "pattern.mp4", seconds=1.0, fps=25, size=(160, 120), with_audio=False)
    info = probe_video(path)
    assert (info.width, info.height, info.has_audio) == (160, 120, False)
    frames = list(iter_frames(path, 25))
    assert len(frames) == 25
    assert all(len(detector(frame, 1)) == 0 for frame in frames[::6])
    assert probe_video(write_pattern_clip(tmp_path / "tone.mp4", seconds=1.0, with_audio=True)).has_audio


def test_generation_is_fast() -> None:
    config = SyntheticSubjectConfig(seconds=2.0)
    frames = synthetic_frames(config, np.full(config.num_frames, 0.7, np.float32))
    next(frames)  # loads the portrait
    start = time.perf_counter()
    count = sum(1 for _ in frames)
    per_frame = (time.perf_counter() - start) / count
    assert per_frame < 0.03, f"{per_frame * 1e3:.1f} ms per 512² frame (target ≤ 10 ms; loose bound for busy CI)"
