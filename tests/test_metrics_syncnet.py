"""Lip-sync experts from checkpoints in the official formats (random values, real keys), audio front ends against
values computed with the reference libraries (librosa 0.11 with reflect padding; python_speech_features 0.6)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deltaplane.errors import InputError, MissingDependencyError
from deltaplane.metrics.syncnet import (
    LSE_VSHIFT,
    SyncNetV2,
    Wav2LipSyncNet,
    load_syncnet_v2,
    load_wav2lip_syncnet,
    lse_from_features,
    lse_scores,
    mel_window_for_frame,
    sync_loss,
    syncnet_mfcc,
    wav2lip_face_window,
    wav2lip_mel,
)


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BatchNorm statistics too, so that a loader that skipped them would be caught."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
    return model


@pytest.fixture(scope="module")
def expert() -> Wav2LipSyncNet:
    torch.manual_seed(0)
    return _randomise(Wav2LipSyncNet(), seed=1)


@pytest.fixture(scope="module")
def syncnet_v2() -> SyncNetV2:
    torch.manual_seed(2)
    return _randomise(SyncNetV2(), seed=3)


def _two_tones(num_samples: int) -> torch.Tensor:
    """0.5·sin(440 Hz) + 0.25·sin(1900 Hz) at 16 kHz, quantised to int16 steps as a decoded wav would be."""
    time = torch.arange(num_samples, dtype=torch.float64) / 16000
    wave = 0.5 * torch.sin(2 * math.pi * 440 * time) + 0.25 * torch.sin(2 * math.pi * 1900 * time)
    return torch.round(wave * 32767) / 32768


# ------------------------------------------------------------------------------------------- Wav2Lip expert
def test_wav2lip_checkpoint_round_trip(expert, tmp_path):
    optimizer = torch.optim.Adam(expert.parameters(), lr=1e-4)
    checkpoint = {"state_dict": {"module." + name: value for name, value in expert.state_dict().items()},
                  "optimizer": optimizer.state_dict(), "global_step": 12, "global_epoch": 3}
    torch.save(checkpoint, tmp_path / "lipsync_expert.pth")
    loaded = load_wav2lip_syncnet(tmp_path / "lipsync_expert.pth")
    mel, faces = torch.randn(2, 1, 80, 16), torch.rand(2, 15, 48, 96)
    for got, want in zip(loaded(mel, faces), expert(mel, faces), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert got.shape == (2, 512)
        torch.testing.assert_close(got.norm(dim=1), torch.ones(2))


def test_sync_loss_is_bce_of_cosine_and_reaches_the_frames(expert):
    frames = (torch.rand(1, 5, 3, 96, 96) * 2 - 1).requires_grad_(True)
    audio_embedding, video_embedding = expert(torch.randn(1, 1, 80, 16), wav2lip_face_window(frames))
    loss = sync_loss(audio_embedding, video_embedding)
    expected = -torch.log(F.cosine_similarity(audio_embedding, video_embedding)).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert frames.grad is not None and torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    assert frames.grad[..., :48, :].abs().sum() == 0  # only the lower half is seen
    assert not any(parameter.requires_grad for parameter in expert.parameters())
    assert not torch.nn.Sequential(expert).train()[0].training


def test_face_window_is_bgr_lower_half_with_frames_on_channels():
    frames = torch.zeros(1, 5, 3, 96, 96)
    for frame in range(5):
        for channel in range(3):  # RGB value in [-1, 1] encodes (frame, channel)
            frames[0, frame, channel] = (frame * 3 + channel) / 7.5 - 1
    window = wav2lip_face_window(frames)
    assert window.shape == (1, 15, 48, 96)
    for frame in range(5):
        for bgr_channel, rgb_channel in enumerate((2, 1, 0)):
            expected = (frame * 3 + rgb_channel) / 15
            torch.testing.assert_close(window[0, 3 * frame + bgr_channel], torch.full((48, 96), expected))


# ------------------------------------------------------------------------------------------- audio front ends
def test_wav2lip_mel_shape_and_range():
    for num_samples in (16000, 16199, 16200, 4000):
        mel = wav2lip_mel(torch.randn(num_samples) * 0.1)
        assert mel.shape == (80, 1 + num_samples // 200)
        assert mel.min() >= -4 and mel.max() <= 4
    assert wav2lip_mel(torch.zeros(16000)).eq(-4).all()
    with pytest.raises(InputError):
        wav2lip_mel(torch.zeros(300))


def test_wav2lip_mel_matches_librosa_reference_values():
    mel = wav2lip_mel(_two_tones(8000))  # librosa: 41 frames
    assert mel.shape == (80, 41)
    reference = {(9, 10): 1.65462, (10, 10): 1.989742, (30, 10): -4.0, (42, 10): 1.793718, (43, 10): 2.047759,
                 (9, 0): 1.813749, (30, 0): -2.429792, (43, 0): 2.029383}
    for (band, frame), value in reference.items():
        assert mel[band, frame].item() == pytest.approx(value, abs=1e-4)


def test_mel_windows_start_at_int_80k_over_25():
    mel = torch.arange(200, dtype=torch.float32).expand(80, 200)  # column index as value
    for frame in range(50):
        window = mel_window_for_frame(mel, frame)
        assert window.shape == (80, 16)
        assert window[0, 0].item() == int(80 * frame / 25)
    assert mel_window_for_frame(mel, 5)[0, 0] == 16 and mel_window_for_frame(mel, 1)[0, 0] == 3
    with pytest.raises(InputError):
        mel_window_for_frame(mel, 58)  # starts at 185: 185 + 16 > 200


def test_mfcc_matches_python_speech_features_reference_values():
    mfcc = syncnet_mfcc(_two_tones(8000))
    assert mfcc.shape == (13, 1 + math.ceil((8000 - 400) / 160))
    reference = {(0, 7): 22.171541, (1, 7): 14.014362, (5, 7): -39.986938, (12, 7): 20.82582,
                 (0, 48): 21.947367, (1, 48): 7.778245, (5, 48): -43.816796, (12, 48): 19.094554}
    for (coefficient, frame), value in reference.items():
        assert mfcc[coefficient, frame].item() == pytest.approx(value, abs=1e-3)


# ------------------------------------------------------------------------------------------- SyncNet v2 / LSE
def test_syncnet_v2_round_trip_with_and_without_batch_counters(syncnet_v2, tmp_path):
    state = syncnet_v2.state_dict()
    torch.save(state, tmp_path / "syncnet_v2.model")
    torch.save({k: v for k, v in state.items() if "num_batches_tracked" not in k}, tmp_path / "old.model")
    mfcc, clip = torch.randn(1, 1, 13, 20), torch.rand(1, 3, 5, 224, 224) * 255
    for name in ("syncnet_v2.model", "old.model"):
        loaded = load_syncnet_v2(tmp_path / name)
        torch.testing.assert_close(loaded.embed_audio(mfcc), syncnet_v2.embed_audio(mfcc), rtol=0, atol=0)
        torch.testing.assert_close(loaded.embed_video(clip), syncnet_v2.embed_video(clip), rtol=0, atol=0)
        assert loaded.embed_audio(mfcc).shape == (1, 1024)


def test_lse_runs_end_to_end(syncnet_v2):
    frames = torch.randint(0, 256, (8, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    audio = torch.randn(8 * 640, generator=torch.Generator().manual_seed(5)) * 0.1
    scores = lse_scores(syncnet_v2, frames, audio, batch_size=2)  # 3 windows, in two batches
    assert math.isfinite(scores.lse_d) and math.isfinite(scores.lse_c)
    assert scores.lse_d > 0 and scores.lse_c >= 0 and -LSE_VSHIFT <= scores.offset <= LSE_VSHIFT
    as_float = lse_scores(syncnet_v2, frames.float() / 127.5 - 1, audio)  # same frames in [-1, 1]
    assert as_float.lse_d == pytest.approx(scores.lse_d, rel=1e-4)
    assert as_float.offset == scores.offset
    with pytest.raises(InputError):
        lse_scores(syncnet_v2, frames[:5], audio)


@pytest.mark.parametrize("shift", [-15, -3, 0, 3, 15])
def test_offset_search_is_symmetric(shift):
    """Audio features that are the video features delayed by `shift` windows give offset −shift."""
    sequence = torch.randn(100 + 2 * LSE_VSHIFT, 64, generator=torch.Generator().manual_seed(6))
    video = sequence[LSE_VSHIFT:LSE_VSHIFT + 100]
    audio = sequence[LSE_VSHIFT - shift:LSE_VSHIFT - shift + 100]  # audio[j] = video[j − shift]
    scores = lse_from_features(video, audio)
    assert scores.offset == -shift
    assert scores.lse_c > 0


# ------------------------------------------------------------------------------------------- loader errors
def test_missing_files_raise_missing_dependency(tmp_path):
    with pytest.raises(MissingDependencyError, match="lip-sync expert"):
        load_wav2lip_syncnet(tmp_path / "lipsync_expert.pth")
    with pytest.raises(MissingDependencyError, match="SyncNet v2"):
        load_syncnet_v2(tmp_path / "syncnet_v2.model")


def test_corrupt_files_raise_input_error(tmp_path):
    corrupt = tmp_path / "lipsync_expert.pth"
    corrupt.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(InputError, match="cannot read"):
        load_wav2lip_syncnet(corrupt)
    with pytest.raises(InputError, match="cannot read"):
        load_syncnet_v2(corrupt)


def test_wrong_keys_name_the_missing_key(expert, tmp_path):
    torch.save({"state_dict": expert.state_dict()}, tmp_path / "expert.pth")
    with pytest.raises(InputError, match=r"missing key 'netcnnaud\.0\.weight'"):
        load_syncnet_v2(tmp_path / "expert.pth")
    torch.save({"state_dict": {"face_encoder.0.weight": torch.zeros(1)}}, tmp_path / "partial.pth")
    with pytest.raises(InputError, match=r"'face_encoder\.0\.conv_block\.0\.weight'"):
        load_wav2lip_syncnet(tmp_path / "partial.pth")
    torch.save({"state_dict": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(InputError, match="state_dict"):
        load_wav2lip_syncnet(tmp_path / "list.pth")
