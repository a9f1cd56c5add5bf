"""Speaker augmentation: a vocal-tract warp moves formants up, noise lands at the asked SNR, copies stay aligned
with the video frames, and training draws from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from deltaplane.audio.augment import SpeakerAugmentConfig, augmented_windows, pink_noise, stratified_perturbations
from deltaplane.audio.features import log_mel
from deltaplane.presets import get_preset
from deltaplane.synthetic import synthetic_speech
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train


def test_warp_one_is_the_plain_log_mel_and_a_warp_moves_a_tone_up() -> None:
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    np.testing.assert_array_equal(log_mel(tone, warp=1.0), log_mel(tone))
    peak = lambda features: int(features[20:-20].mean(0).argmax())
    assert peak(log_mel(tone, warp=1.15)) > peak(log_mel(tone)) + 2  # 1 kHz now reads as ~1.15 kHz


def test_pink_noise_has_unit_rms_and_falls_with_frequency() -> None:
    noise = pink_noise(32000, np.random.default_rng(0))
    assert np.sqrt(np.mean(noise ** 2)) == pytest.approx(1.0, rel=1e-4)
    power = np.abs(np.fft.rfft(noise)) ** 2
    assert power[100:1000].mean() > 5 * power[5000:15000].mean()


def test_copies_are_frame_aligned_and_differ_from_the_original() -> None:
    speech = synthetic_speech(2.0)
    copies = augmented_windows(speech, 50, 25.0, SpeakerAugmentConfig(copies=3, seed=1))
    assert copies.shape == (3, 50, 16, 80)
    again = augmented_windows(speech, 50, 25.0, SpeakerAugmentConfig(copies=3, seed=1))
    np.testing.assert_array_equal(copies, again)  # seeded: a resumed run draws the same copies
    assert not np.allclose(copies[0], copies[1])
    # Loud frames stay loud: the speech envelope (mean over bands) still follows the original frame by frame.
    from deltaplane.audio.features import frame_windows

    original = frame_windows(log_mel(speech), 50, 25.0)[:, 8].mean(-1)
    assert np.corrcoef(original, copies[0][:, 8].mean(-1))[0, 1] > 0.8


@pytest.mark.parametrize("seed", range(5))
def test_stratified_copies_cover_each_range_once_per_slice(seed: int) -> None:
    config = SpeakerAugmentConfig(copies=4, seed=seed, stratified=True)
    drawn = np.array(stratified_perturbations(config, np.random.default_rng(seed)))
    for column, (low, high) in enumerate((config.warp_range, config.snr_range_db)):
        slices = np.floor((drawn[:, column] - low) / (high - low) * config.copies)
        assert sorted(slices) == [0, 1, 2, 3]  # one copy in every quarter of the range, whatever the seed
    # warp and noise are not tied: over the seeds, the noisiest copy is not always the same warp slice
    assert len({int(np.argmin(np.array(stratified_perturbations(config, np.random.default_rng(s)))[:, 1]))
                for s in range(8)}) > 1


def test_training_draws_from_the_copies(synthetic_dataset: Path, tmp_path: Path) -> None:
    from deltaplane.data.dataset import load_clip
    from deltaplane.training.trainer import _audio_versions

    model_config, train_config = get_preset("tiny")
    config = dataclasses.replace(train_config, steps=4, eval_every=0, log_every=1, sample_every=1000,
                                 speaker_augment=SpeakerAugmentConfig(copies=2))
    manifest, clip = load_clip(synthetic_dataset, "train", size=128)
    versions = _audio_versions(synthetic_dataset, manifest, clip, config, normalize=False)
    assert versions.shape == (3, *clip.audio_features.shape)
    assert torch.equal(versions[0], clip.audio_features) and not torch.allclose(versions[1], versions[0])
    assert _audio_versions(synthetic_dataset, manifest, clip, train_config, normalize=False) is None  # off
    train(synthetic_dataset, tmp_path / "run", dataclasses.replace(model_config, audio_token="lips"), config, "tiny",
          torch.device("cpu"), progress=False)
    assert len([r for r in read_log(tmp_path / "run") if "loss/lips" in r]) == 4
