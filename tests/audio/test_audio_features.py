"""Log-mel features, their frame windows (the audio↔video alignment convention), imports and optional extractors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import pytest

from deltaplane.audio.features import (
    FEATURE_RATE,
    NUM_MELS,
    PHONES,
    SAMPLE_RATE,
    WINDOW,
    AudioFeatureExtractor,
    HuggingFaceExtractor,
    LogMelExtractor,
    frame_windows,
    load_precomputed_features,
    log_mel,
    mel_filterbank,
    phone_track,
)
from deltaplane.audio.io import load_audio
from deltaplane.errors import InputError, MissingDependencyError


def test_constants() -> None:
    assert (SAMPLE_RATE, FEATURE_RATE, WINDOW, NUM_MELS) == (16000, 50, 16, 80)


def test_mel_filterbank_is_slaney_normalised() -> None:
    weights = mel_filterbank()
    assert weights.shape == (80, 401)
    bin_hz = SAMPLE_RATE / 800
    peaks = weights.argmax(axis=1) * bin_hz
    assert np.all(np.diff(peaks) >= 0) and 40 <= peaks[0] <= 100 and 7000 <= peaks[-1] <= 7600
    wide = (weights > 0).sum(axis=1) >= 20  # unit area holds up to discretisation for filters spanning many bins
    np.testing.assert_allclose(weights[wide].sum(axis=1) * bin_hz, 1.0, rtol=0.05)


def test_log_mel_shape_range_and_timing() -> None:
    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(SAMPLE_RATE * 2 + 123)).astype(np.float32)
    features = log_mel(samples)
    assert features.shape == (len(samples) // 320 + 1, 80) and features.dtype == np.float32
    assert np.all(log_mel(np.zeros(8000, np.float32)) == -1.0)
    sine = np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    sine_features = log_mel(sine)
    assert 0.8 < sine_features.max() <= 1.0
    centre_hz = mel_filterbank().argmax(axis=1)[sine_features[25].argmax()] * 20
    assert abs(centre_hz - 1000) < 60
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[int(0.5 * SAMPLE_RATE)] = 1.0
    assert log_mel(click).sum(axis=1).argmax() == 25  # feature frame j is centred at j / 50 s
    assert log_mel(np.zeros(100, np.float32)).shape == (1, 80)


def test_one_window_per_frame_centred_on_its_time() -> None:
    features = (np.arange(101, dtype=np.float32)[:, None] + 1) * np.ones((1, 3), np.float32)  # value j + 1 at row j
    windows = frame_windows(features, 51)
    assert windows.shape == (51, WINDOW, 3) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[:, 8, 0], 2 * np.arange(51) + 1)  # centre of window k is feature 2k
    np.testing.assert_array_equal(windows[0, :, 0], [0] * 8 + list(range(1, 9)))  # zero-padded before the clip
    np.testing.assert_array_equal(windows[50, :, 0], list(range(93, 102)) + [0] * 7)  # and after it
    at_30fps = frame_windows(features, 10, fps=30)
    np.testing.assert_array_equal(at_30fps[:, 8, 0], np.floor(np.arange(10) * 50 / 30 + 0.5) + 1)
    assert frame_windows(np.zeros((0, 3), np.float32), 4).shape == (4, WINDOW, 3)


@pytest.mark.parametrize(("impulse_time", "position"), [(1.0, 8), (2.4, 8), (1.016, 9), (2.388, 7)])
def test_impulse_lands_in_the_centre_of_the_nearest_frames_window(impulse_time: float, position: int) -> None:
    num_frames, fps = 100, 25
    samples = np.zeros(num_frames * SAMPLE_RATE // fps, np.float32)
    samples[round(impulse_time * SAMPLE_RATE)] = 1.0
    energy = frame_windows(log_mel(samples), num_frames, fps).sum(axis=2) + 16 * NUM_MELS  # [N, 16], silence → 0
    nearest = round(impulse_time * fps)
    assert energy[:, 8].argmax() == nearest  # the centres of the windows are the frame times
    # Within that window the impulse sits at the feature frame nearest to it: the centre when it is on t_k.
    assert energy[nearest].argmax() == position == 8 + round((impulse_time - nearest / fps) * FEATURE_RATE)


def test_log_mel_extractor_is_an_audio_feature_extractor() -> None:
    extractor: AudioFeatureExtractor = LogMelExtractor()
    assert (extractor.name, extractor.dim) == ("log_mel", 80)
    assert extractor(np.zeros(SAMPLE_RATE, np.float32)).shape == (51, 80)


def test_load_precomputed_features(tmp_path: Path) -> None:
    np.save(tmp_path / "aud_eo.npy", np.ones((101, 16, 44), np.float64))
    loaded = load_precomputed_features(tmp_path / "aud_eo.npy", 100)
    assert loaded.shape == (100, 16, 44) and loaded.dtype == np.float32
    np.save(tmp_path / "aud.npy", np.ones((97, 16, 29), np.float32))
    padded = load_precomputed_features(tmp_path / "aud.npy", 100)
    assert padded.shape == (100, 16, 29) and padded[96].min() == 1 and padded[97:].max() == 0
    with pytest.raises(InputError, match="another clip"):
        load_precomputed_features(tmp_path / "aud.npy", 200)
    np.save(tmp_path / "flat.npy", np.ones((100, 44), np.float32))
    with pytest.raises(InputError, match=r"expected \[frames, 16, dim\]"):
        load_precomputed_features(tmp_path / "flat.npy", 100)
    with pytest.raises(InputError, match="not found"):
        load_precomputed_features(tmp_path / "missing.npy", 100)


def test_hugging_face_extractor_on_a_tiny_random_wav2vec2(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16)
    transformers.Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    transformers.Wav2Vec2FeatureExtractor().save_pretrained(tmp_path / "w2v")
    extractor: AudioFeatureExtractor = HuggingFaceExtractor(tmp_path / "w2v")
    assert (extractor.name, extractor.dim) == ("hf:w2v", 32)
    samples = (0.1 * np.random.default_rng(0).standard_normal(SAMPLE_RATE * 3 + 77)).astype(np.float32)
    features = extractor(samples)
    assert features.shape == (len(log_mel(samples)), 32) and np.isfinite(features).all()
    chunked = HuggingFaceExtractor(tmp_path / "w2v")
    chunked.chunk_frames, chunked.context_frames = 40, 20
    assert chunked(samples).shape == features.shape
    with pytest.raises(InputError, match="cannot load"):
        HuggingFaceExtractor(tmp_path / "missing")
    # weights that would run code when unpickled: refused in one line, without torch's hint to load them unsafely
    (tmp_path / "w2v" / "model.safetensors").unlink()
    torch.save({"weight": _RunsCode()}, tmp_path / "w2v" / "pytorch_model.bin")
    with pytest.raises(InputError, match="other than tensors") as refused:
        HuggingFaceExtractor(tmp_path / "w2v")
    assert "weights_only" not in str(refused.value)


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_optional_dependencies_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` meets when uninstalled
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    with pytest.raises(MissingDependencyError, match="pip install"):
        HuggingFaceExtractor(tmp_path)
    with pytest.raises(MissingDependencyError, match="pocketsphinx"):
        phone_track(np.zeros(SAMPLE_RATE, np.float32), 25)


@pytest.mark.shared_data
def test_phone_track_on_real_speech(shared_data: Path) -> None:
    pytest.importorskip("pocketsphinx")
    samples = load_audio(shared_data / "audio" / "en_male_13s.wav")
    num_frames = len(samples) * 25 // SAMPLE_RATE
    labels, ids = phone_track(samples, num_frames)
    assert labels == list(PHONES) and ids.shape == (num_frames,)
    assert labels[ids[0]] == "SIL"  # the clip opens with 0.27 s of silence
    assert len(set(ids.tolist())) > 15 and (ids != 0).mean() > 0.5
