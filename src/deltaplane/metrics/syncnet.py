"""Lip-sync experts from user-supplied weights: Wav2Lip's SyncNet_color (training loss, spec §6) and
syncnet_python's SyncNet v2 (LSE-D / LSE-C evaluation, spec §8). Audio front ends are plain numpy/torch ports.

* `lipsync_expert.pth` (Wav2Lip): {"state_dict": {...}, "optimizer": ..., ...}; keys may carry "module.".
* `syncnet_v2.model` (syncnet_python): a torch.save'd state dict with keys `netcnnaud.0.weight` ….
Both are read with `torch.load(weights_only=True)` (or safetensors), never unpickled as code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple, Self

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Shaped
from torch import Tensor, nn

from deltaplane.errors import InputError
from deltaplane.metrics.lpips import load_state_checked, read_weight_file

SAMPLE_RATE = 16000
VIDEO_FPS = 25
# Wav2Lip hparams.py (mel front end of the sync expert).
MEL_N_FFT, MEL_HOP, MEL_WIN, NUM_MELS = 800, 200, 800, 80
MEL_FMIN, MEL_FMAX, PREEMPHASIS = 55.0, 7600.0, 0.97
REF_LEVEL_DB, MIN_LEVEL_DB, MAX_ABS_VALUE = 20.0, -100.0, 4.0
MEL_WINDOW = 16
"""Mel frames per sync window (syncnet_mel_step_size): 0.2 s, i.e. 5 video frames."""
SYNC_FRAMES = 5
"""Video frames per sync window (syncnet_T)."""
# python_speech_features.mfcc defaults used by syncnet_python.
MFCC_WIN, MFCC_HOP, MFCC_NFFT, MFCC_FILTERS, MFCC_COEFFS, MFCC_LIFTER = 400, 160, 512, 26, 13, 22
LSE_VSHIFT = 15
"""Offsets searched by LSE, in video frames, both ways."""


# ---------------------------------------------------------------------------------------------- Wav2Lip expert
class _ConvBN(nn.Module):
    """Wav2Lip `models/conv.py` Conv2d: conv → BN (→ + input when residual) → ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int], padding: int,
                 residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_block(x)
        return F.relu(out + x if self.residual else out)


def _stage(cin: int, cout: int, kernel: int, stride: int | tuple[int, int], padding: int,
           num_residual: int) -> list[nn.Module]:
    return [_ConvBN(cin, cout, kernel, stride, padding)] + [
        _ConvBN(cout, cout, 3, 1, 1, residual=True) for _ in range(num_residual)]


class Wav2LipSyncNet(nn.Module):
    """Wav2Lip `SyncNet_color`: [B,15,48,96] lower-half BGR faces and [B,1,80,16] mels → unit 512-D embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder = nn.Sequential(
            *_stage(15, 32, 7, 1, 3, 0), *_stage(32, 64, 5, (1, 2), 1, 2), *_stage(64, 128, 3, 2, 1, 3),
            *_stage(128, 256, 3, 2, 1, 2), *_stage(256, 512, 3, 2, 1, 2),
            _ConvBN(512, 512, 3, 2, 1), _ConvBN(512, 512, 3, 1, 0), _ConvBN(512, 512, 1, 1, 0))
        self.audio_encoder = nn.Sequential(
            *_stage(1, 32, 3, 1, 1, 2), *_stage(32, 64, 3, (3, 1), 1, 2), *_stage(64, 128, 3, 3, 1, 2),
            *_stage(128, 256, 3, (3, 2), 1, 2), _ConvBN(256, 512, 3, 1, 0), _ConvBN(512, 512, 1, 1, 0))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Self:
        """A frozen expert: stays in eval mode (BatchNorm running statistics) whatever a parent module asks."""
        return super().train(False)

    def forward(self, mel: Float[Tensor, "B 1 80 16"], faces: Float[Tensor, "B 15 48 96"]
                ) -> tuple[Float[Tensor, "B 512"], Float[Tensor, "B 512"]]:
        """(audio_embedding, face_embedding), each L2-normalised."""
        audio_embedding = self.audio_encoder(mel).flatten(1)  # [B, 512]
        face_embedding = self.face_encoder(faces).flatten(1)  # [B, 512]
        return F.normalize(audio_embedding, dim=1), F.normalize(face_embedding, dim=1)


def load_wav2lip_syncnet(path: str | Path) -> Wav2LipSyncNet:
    """Load Wav2Lip's `lipsync_expert.pth` (a {"state_dict": ...} checkpoint, or a bare state dict)."""
    checkpoint = read_weight_file(Path(path), "Wav2Lip lip-sync expert")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise InputError(f"{path}: 'state_dict' is a {type(state).__name__}, expected a dict of tensors")
    model = Wav2LipSyncNet()
    load_state_checked(model, {name.removeprefix("module."): value for name, value in state.items()},
                       f"Wav2Lip lip-sync expert {path}")
    return model


def sync_loss(audio_embedding: Float[Tensor, "B D"], video_embedding: Float[Tensor, "B D"]) -> Float[Tensor, ""]:
    """Wav2Lip / Talk3D expert loss: mean BCE(cos(a, v), 1). Embeddings are non-negative, so cos ∈ [0, 1]."""
    cosine = F.cosine_similarity(audio_embedding, video_embedding, dim=1).clamp(0.0, 1.0)  # [B]
    return F.binary_cross_entropy(cosine, torch.ones_like(cosine))


def wav2lip_face_window(frames: Float[Tensor, "B 5 3 96 96"]) -> Float[Tensor, "B 15 48 96"]:
    """Expert face input from 5 consecutive RGB crops in [-1, 1]: BGR in [0, 1], lower half, frames on channels."""
    if frames.shape[1:] != (SYNC_FRAMES, 3, 96, 96):
        raise InputError(f"sync face window must be [B, 5, 3, 96, 96], got {list(frames.shape)}")
    bgr = ((frames + 1.0) / 2.0).flip(2)  # [B, 5, 3, 96, 96]
    return bgr[..., 48:, :].reshape(frames.shape[0], 3 * SYNC_FRAMES, 48, 96)


def _slaney_hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    linear = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3.0))


def _slaney_filterbank() -> np.ndarray:
    """[80, 401] triangular filters on the Slaney mel scale, area-normalised (librosa.filters.mel, norm='slaney')."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, 1 + MEL_N_FFT // 2)
    mel_edges = np.linspace(_slaney_hz_to_mel(np.array(MEL_FMIN)), _slaney_hz_to_mel(np.array(MEL_FMAX)),
                            NUM_MELS + 2)
    hz_edges = _slaney_mel_to_hz(mel_edges)  # [82]
    widths = np.diff(hz_edges)  # [81]
    ramps = hz_edges[:, None] - fft_hz[None, :]  # [82, 401]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))  # [80, 401]
    return weights * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]


def wav2lip_mel(samples_16k: Float[Tensor, " samples"]) -> Float[Tensor, "80 frames"]:
    """Wav2Lip `audio.melspectrogram`: preemphasis, |STFT| (Hann 800, hop 200, centred, reflect), Slaney mel,
    dB − 20, symmetric normalisation clipped to ±4. 1 + samples // 200 frames (80 per second)."""
    if samples_16k.ndim != 1 or samples_16k.shape[0] <= MEL_N_FFT // 2:
        raise InputError(f"wav2lip_mel needs mono audio longer than {MEL_N_FFT // 2} samples, "
                         f"got shape {list(samples_16k.shape)}")
    wav = samples_16k.detach().to(torch.float64)
    emphasised = torch.cat([wav[:1], wav[1:] - PREEMPHASIS * wav[:-1]])
    window = torch.hann_window(MEL_WIN, periodic=True, dtype=torch.float64, device=wav.device)
    magnitude = torch.stft(emphasised, MEL_N_FFT, MEL_HOP, MEL_WIN, window, center=True, pad_mode="reflect",
                           return_complex=True).abs()  # [401, frames]
    mel = torch.from_numpy(_slaney_filterbank()).to(wav.device) @ magnitude  # [80, frames]
    decibels = 20.0 * torch.log10(mel.clamp_min(10.0 ** (MIN_LEVEL_DB / 20.0))) - REF_LEVEL_DB
    normalised = 2.0 * MAX_ABS_VALUE * (decibels - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS_VALUE
    return normalised.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE).to(torch.float32)


def mel_window_for_frame(mel: Float[Tensor, "80 frames"], frame_index: int, fps: int = VIDEO_FPS
                         ) -> Float[Tensor, "80 16"]:
    """The 16 mel frames starting at int(80 · frame_index / fps), as Wav2Lip's `crop_audio_window`."""
    start = int(80.0 * (frame_index / float(fps)))
    if frame_index < 0 or start + MEL_WINDOW > mel.shape[1]:
        raise InputError(f"mel window for video frame {frame_index} ({start}..{start + MEL_WINDOW}) is outside "
                         f"the {mel.shape[1]} mel frames")
    return mel[:, start:start + MEL_WINDOW]


# ---------------------------------------------------------------------------------------------- SyncNet v2 / LSE
def _conv_bn_relu(conv: nn.Module, channels: int, norm: type[nn.Module]) -> list[nn.Module]:
    return [conv, norm(channels), nn.ReLU()]


class SyncNetV2(nn.Module):
    """syncnet_python `SyncNetModel.S`: MFCC [B,1,13,20] and BGR 0–255 video [B,3,5,224,224] → 1024-D features.

    Sequential indices (and so state-dict keys) follow the original, including its no-op 1×1 max-pool.
    """

    def __init__(self, embedding_dim: int = 1024) -> None:
        super().__init__()
        conv2, conv3 = nn.Conv2d, nn.Conv3d
        bn2, bn3 = nn.BatchNorm2d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(
            *_conv_bn_relu(conv2(1, 64, 3, 1, 1), 64, bn2), nn.MaxPool2d(1, 1),
            *_conv_bn_relu(conv2(64, 192, 3, 1, 1), 192, bn2), nn.MaxPool2d(3, (1, 2)),
            *_conv_bn_relu(conv2(192, 384, 3, padding=1), 384, bn2),
            *_conv_bn_relu(conv2(384, 256, 3, padding=1), 256, bn2),
            *_conv_bn_relu(conv2(256, 256, 3, padding=1), 256, bn2), nn.MaxPool2d(3, 2),
            *_conv_bn_relu(conv2(256, 512, (5, 4)), 512, bn2))
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
                                      nn.Linear(512, embedding_dim))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
                                      nn.Linear(512, embedding_dim))
        self.netcnnlip = nn.Sequential(
            *_conv_bn_relu(conv3(3, 96, (5, 7, 7), (1, 2, 2)), 96, bn3), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn_relu(conv3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), 256, bn3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_conv_bn_relu(conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            *_conv_bn_relu(conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            *_conv_bn_relu(conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn_relu(conv3(256, 512, (1, 6, 6)), 512, bn3))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Self:
        """An evaluation network: stays in eval mode."""
        return super().train(False)

    def embed_audio(self, mfcc: Float[Tensor, "B 1 13 20"]) -> Float[Tensor, "B D"]:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))  # [B, 512] → [B, D]

    def embed_video(self, frames: Float[Tensor, "B 3 5 224 224"]) -> Float[Tensor, "B D"]:
        return self.netfclip(self.netcnnlip(frames).flatten(1))  # [B, 512] → [B, D]


def load_syncnet_v2(path: str | Path) -> SyncNetV2:
    """Load syncnet_python's `syncnet_v2.model` (a state dict saved with torch.save)."""
    state = read_weight_file(Path(path), "SyncNet v2")
    model = SyncNetV2()
    load_state_checked(model, state, f"SyncNet v2 {path}")
    return model


def _psf_filterbank() -> np.ndarray:
    """[26, 257] python_speech_features filters: HTK mel spacing 0–8 kHz, edges floored to FFT bins, peak 1."""
    mel_edges = np.linspace(0.0, 2595.0 * np.log10(1.0 + (SAMPLE_RATE / 2) / 700.0), MFCC_FILTERS + 2)
    bins = np.floor((MFCC_NFFT + 1) * 700.0 * (10.0 ** (mel_edges / 2595.0) - 1.0) / SAMPLE_RATE)
    index = np.arange(MFCC_NFFT // 2 + 1)[None, :]  # [1, 257]
    low, mid, high = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((index >= low) & (index < mid), (index - low) / (mid - low), 0.0)
        falling = np.where((index >= mid) & (index < high), (high - index) / (high - mid), 0.0)
    return rising + falling


def syncnet_mfcc(samples_16k: Float[Tensor, " samples"]) -> Float[Tensor, "13 frames"]:
    """python_speech_features.mfcc defaults on int16-scaled samples (as syncnet_python reads its wav):
    preemphasis 0.97, 25 ms rectangular frames every 10 ms (zero-padded end), 512-FFT power, 26 filters, log,
    orthonormal DCT-II → 13, lifter 22, c0 replaced by log frame energy. 100 frames per second."""
    signal = samples_16k.detach().cpu().to(torch.float64).numpy() * 32768.0
    emphasised = np.append(signal[0], signal[1:] - PREEMPHASIS * signal[:-1])
    num_frames = 1 if len(signal) <= MFCC_WIN else 1 + math.ceil((len(signal) - MFCC_WIN) / MFCC_HOP)
    padded = np.concatenate([emphasised, np.zeros((num_frames - 1) * MFCC_HOP + MFCC_WIN - len(signal))])
    frames = np.lib.stride_tricks.sliding_window_view(padded, MFCC_WIN)[::MFCC_HOP]  # [frames, 400]
    power = np.abs(np.fft.rfft(frames, MFCC_NFFT)) ** 2 / MFCC_NFFT  # [frames, 257]
    eps = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    bands = power @ _psf_filterbank().T  # [frames, 26]
    bands = np.log(np.where(bands == 0, eps, bands))
    k, n = np.arange(MFCC_COEFFS)[:, None], np.arange(MFCC_FILTERS)[None, :]
    dct = np.sqrt(2.0 / MFCC_FILTERS) * np.cos(np.pi * k * (2 * n + 1) / (2 * MFCC_FILTERS))  # [13, 26]
    dct[0] /= np.sqrt(2.0)
    cepstra = bands @ dct.T * (1.0 + (MFCC_LIFTER / 2.0) * np.sin(np.pi * np.arange(MFCC_COEFFS) / MFCC_LIFTER))
    cepstra[:, 0] = np.log(energy)
    return torch.from_numpy(cepstra.T.copy()).to(torch.float32)


class LseScores(NamedTuple):
    lse_d: float
    """Mean feature distance at the best offset (lower is better)."""
    lse_c: float
    """Median over offsets minus that minimum (higher is better)."""
    offset: int
    """Best audio-video offset in video frames, in [−vshift, vshift] (syncnet_python's sign)."""


def lse_from_features(video_features: Float[Tensor, "N D"], audio_features: Float[Tensor, "N D"],
                      vshift: int = LSE_VSHIFT) -> LseScores:
    """syncnet_python `calc_pdist` + scoring: distances of each video window to the audio windows shifted by
    −vshift…vshift (zero features past the ends), averaged over windows; LSE-D = min, LSE-C = median − min."""
    padded = F.pad(audio_features, (0, 0, vshift, vshift))  # [N + 2·vshift, D]
    shifted = padded.unfold(0, 2 * vshift + 1, 1).transpose(1, 2)  # [N, 2·vshift + 1, D]
    distances = F.pairwise_distance(video_features[:, None, :], shifted)  # [N, 2·vshift + 1]
    mean_distance = distances.mean(dim=0)  # [2·vshift + 1]
    min_distance, min_index = torch.min(mean_distance, dim=0)
    confidence = torch.median(mean_distance) - min_distance
    return LseScores(float(min_distance), float(confidence), vshift - int(min_index))


def lse_scores(model: SyncNetV2, frames: Shaped[Tensor, "T 3 224 224"], samples_16k: Float[Tensor, " samples"],
               vshift: int = LSE_VSHIFT, batch_size: int = 20) -> LseScores:
    """LSE-D / LSE-C of 224² face crops (RGB: uint8 0–255, or float in [−1, 1]) against 16 kHz audio in [−1, 1],
    as syncnet_python's evaluation: 5-frame windows every frame, each against MFCC frames 4i…4i+20."""
    if frames.ndim != 4 or frames.shape[1:] != (3, 224, 224):
        raise InputError(f"LSE needs face crops [T, 3, 224, 224], got {list(frames.shape)}")
    num_windows = min(frames.shape[0], samples_16k.shape[0] // (SAMPLE_RATE // VIDEO_FPS)) - SYNC_FRAMES
    if num_windows < 1:
        raise InputError(f"LSE needs more than {SYNC_FRAMES} frames of video and audio, got {frames.shape[0]} "
                         f"frames and {samples_16k.shape[0] / SAMPLE_RATE:.2f} s")
    device = next(model.parameters()).device
    mfcc = syncnet_mfcc(samples_16k)  # [13, 100 per second]
    video_features, audio_features = [], []
    with torch.no_grad():
        for start in range(0, num_windows, batch_size):
            windows = range(start, min(num_windows, start + batch_size))
            clips = torch.stack([frames[i:i + SYNC_FRAMES] for i in windows]).to(device)  # [b, 5, 3, 224, 224]
            pixels = clips.float() if clips.dtype == torch.uint8 else (clips.float() + 1.0) * 127.5
            bgr = pixels.flip(2).transpose(1, 2)  # BGR 0–255 as cv2 reads it: [b, 3, 5, 224, 224]
            cepstra = torch.stack([mfcc[None, :, 4 * i:4 * i + 20] for i in windows])  # [b, 1, 13, 20]
            video_features.append(model.embed_video(bgr).cpu())
            audio_features.append(model.embed_audio(cepstra.to(device)).cpu())
    return lse_from_features(torch.cat(video_features), torch.cat(audio_features), vshift)
