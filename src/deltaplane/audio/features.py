"""Audio features at 50 Hz and their frame-aligned windows (docs/conventions.md, "Time and audio").

Feature frame j is centred at time j / FEATURE_RATE. Window k, for video frame k at t_k = k / fps, holds the
WINDOW feature frames round(t_k · FEATURE_RATE) − 8 … + 7 (zero-padded outside the clip), the same unfolding as
AD-NeRF/Talk3D (window 16, stride 2, padding 8 at 25 fps).
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from jaxtyping import Float, Int

from deltaplane.errors import InputError, MissingDependencyError

SAMPLE_RATE = 16000
"""Audio sample rate everywhere inside deltaplane (Hz)."""
FEATURE_RATE = 50
"""Feature frames per second (two per video frame at 25 fps)."""
WINDOW = 16
"""Feature frames per video-frame window (0.32 s)."""
NUM_MELS = 80
"""Mel bands of the default log-mel features."""

HOP = SAMPLE_RATE // FEATURE_RATE  # 320 samples between feature frames
N_FFT = 800
MEL_FMIN, MEL_FMAX = 55.0, 7600.0
LOG_FLOOR = math.log(1e-5)
"""Log-mel of silence; normalised to -1."""
LOG_CEIL = 2.0
"""About the log-mel peak of a full-scale sine (1.87 at 1 kHz); normalised to +1. Speech sits around -0.1 ± 0.4."""
MAX_LENGTH_MISMATCH = 5
"""Frames by which imported precomputed features may differ from the video before it is an error."""
PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
          "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y",
          "Z", "ZH")
"""Phone labels of `phone_track`: silence plus the 39 CMU phones (pocketsphinx en-us)."""


class AudioFeatureExtractor(Protocol):
    """Turns 16 kHz mono samples into features at FEATURE_RATE; frame j is centred at j / FEATURE_RATE s."""

    name: str
    dim: int

    def __call__(self, samples: Float[np.ndarray, " samples"]) -> Float[np.ndarray, "time dim"]: ...


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    log_step = math.log(6.4) / 27.0
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / log_step, hz * 3.0 / 200.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    log_step = math.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * 200.0 / 3.0)


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, num_mels: int = NUM_MELS,
                   fmin: float = MEL_FMIN, fmax: float = MEL_FMAX, warp: float = 1.0) -> Float[np.ndarray, "mels bins"]:
    """Triangular Slaney-scale filters with Slaney (unit-area) normalisation, as `librosa.filters.mel`.

    `warp` ≠ 1 reads the spectrum with its frequency axis stretched by that factor (vocal-tract-length
    perturbation): a band centred at f collects what the speaker put at f / warp, so formants move up by `warp`."""
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1) * warp
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), num_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - bin_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return (weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]).astype(np.float32)


def log_mel(samples: Float[np.ndarray, " samples"], sample_rate: int = SAMPLE_RATE,
            warp: float = 1.0) -> Float[np.ndarray, "time 80"]:
    """Normalised log-mel magnitude spectrogram at 50 Hz, 1 + len // 320 frames, frame j centred at j / 50 s.

    STFT: 800-sample Hann window, hop 320, centred (reflect padding). Values: log(max(mel, 1e-5)) mapped
    affinely so that silence is -1 and a full-scale sine about +1. `warp`: vocal-tract-length perturbation
    (`mel_filterbank`).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"log_mel expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample with load_audio")
    signal = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    if len(signal) <= N_FFT // 2:  # reflect padding needs more samples than half a window
        signal = torch.nn.functional.pad(signal, (0, N_FFT // 2 + 1 - len(signal)))
    spectrum = torch.stft(signal, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=True,
                          return_complex=True).abs()  # [bins, T]
    mel = torch.from_numpy(mel_filterbank(warp=warp)) @ spectrum  # [80, T]
    logs = torch.log(mel.clamp(min=1e-5)).T[: len(samples) // HOP + 1]  # [T, 80]
    return (2.0 * (logs - LOG_FLOOR) / (LOG_CEIL - LOG_FLOOR) - 1.0).numpy()


class LogMelExtractor:
    """The default, dependency-free features: 80 log-mel bands."""

    name = "log_mel"
    dim = NUM_MELS

    def __call__(self, samples: Float[np.ndarray, " samples"]) -> Float[np.ndarray, "time 80"]:
        return log_mel(samples)


def frame_windows(features: Float[np.ndarray, "time dim"], num_frames: int,
                  fps: float = 25.0) -> Float[np.ndarray, "frames 16 dim"]:
    """One WINDOW-frame slice of `features` per video frame; window k is centred on t_k = k / fps."""
    centres = np.floor(np.arange(num_frames) * FEATURE_RATE / fps + 0.5 + 1e-9).astype(np.int64)
    indices = centres[:, None] + np.arange(-WINDOW // 2, WINDOW // 2)[None, :]  # [N, 16]
    inside = (indices >= 0) & (indices < len(features))
    padded = np.concatenate([np.zeros((1, features.shape[1]), features.dtype), features])  # row 0: outside the clip
    return padded[np.where(inside, indices + 1, 0)]


def normalize_utterance(windows: Float[np.ndarray, "frames 16 dim"]) -> Float[np.ndarray, "frames 16 dim"]:
    """Standardise every feature channel over one utterance (a training clip, a driving audio file): subtract its
    mean and divide by its std over the frames (taken from the window centres, so the zero padding at the clip's
    ends does not count). This removes a speaker's or a microphone's constant spectral tilt and loudness, which
    the per-person audio encoder would otherwise read as mouth information; the zero padding stays zero."""
    centres = windows[:, WINDOW // 2]  # [N, D]: feature frame k·(rate/fps), the window's centre
    mean, std = centres.mean(0), centres.std(0)
    outside = ~windows.any(axis=-1, keepdims=True)  # padded feature frames (all zero)
    normalised = (windows - mean) / np.maximum(std, 1e-3)
    return np.where(outside, 0.0, normalised).astype(np.float32)


def load_precomputed_features(path: str | os.PathLike, num_frames: int) -> Float[np.ndarray, "frames 16 dim"]:
    """Import AD-NeRF/Talk3D windows: `aud_eo.npy` [N, 16, 44] (wav2vec2 logits) or `aud.npy` [N, 16, 29]
    (DeepSpeech), whose window k is centred on video frame k like ours. Cropped or zero-padded to `num_frames`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio features not found: {path}")
    try:
        features = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputError(f"cannot read audio features {path}: {error}") from None
    if features.ndim != 3 or features.shape[1] != WINDOW:
        raise InputError(f"audio features {path} have shape {features.shape}; expected [frames, {WINDOW}, dim] "
                         "(aud_eo.npy [N, 16, 44] or aud.npy [N, 16, 29])")
    if abs(len(features) - num_frames) > MAX_LENGTH_MISMATCH:
        raise InputError(f"audio features {path} have {len(features)} windows but the video has {num_frames} "
                         "frames; they were computed for another clip or frame rate")
    features = features[:num_frames].astype(np.float32)
    return np.pad(features, ((0, num_frames - len(features)), (0, 0), (0, 0)))


class HuggingFaceExtractor:
    """Hidden states of a local wav2vec2/HuBERT directory (`save_pretrained` layout), aligned to our 50 Hz frames.

    The input is zero-padded by half the 400-sample receptive field on both sides, so hidden frame j is centred on
    j / 50 s and there are 1 + len // 320 of them, as with `log_mel`. Long audio runs in chunks with context.
    """

    chunk_frames = 1000
    """Frames (20 s) per forward pass: attention memory grows with the square of the length."""
    context_frames = 50
    """Extra frames (1 s) of audio on each side of a chunk, computed and thrown away."""
    receptive_field = 400

    def __init__(self, model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        try:
            import transformers
        except ImportError:
            raise MissingDependencyError("HuggingFace audio features need transformers: "
                                         "pip install 'deltaplane[hf]' (or pip install transformers)") from None
        model_dir = Path(model_dir)
        try:
            self.processor = transformers.AutoFeatureExtractor.from_pretrained(model_dir, local_files_only=True)
            self.model = transformers.AutoModel.from_pretrained(model_dir, local_files_only=True).eval().to(device)
        except pickle.UnpicklingError:  # transformers loads .bin files weights-only; torch's hint is to load unsafely
            raise InputError(f"refusing the HuggingFace audio model in {model_dir}: its weights hold Python objects "
                             "other than tensors, which could run code when loaded; give its model.safetensors "
                             "instead") from None
        except (OSError, ValueError) as error:
            raise InputError(f"cannot load a HuggingFace audio model from {model_dir}: {error}") from None
        self.device = torch.device(device)
        self.name = f"hf:{model_dir.name}"
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def __call__(self, samples: Float[np.ndarray, " samples"]) -> Float[np.ndarray, "time dim"]:
        count = len(samples) // HOP + 1
        values = self.processor(np.asarray(samples, np.float32), sampling_rate=SAMPLE_RATE,
                                return_tensors="pt").input_values[0]  # normalised over the whole clip
        half = self.receptive_field // 2
        values = torch.nn.functional.pad(values, (half, half)).to(self.device)
        chunks = []
        for first in range(0, count, self.chunk_frames):
            lo = max(first - self.context_frames, 0)
            hi = min(first + self.chunk_frames + self.context_frames, count)
            segment = values[lo * HOP: (hi - 1) * HOP + self.receptive_field]  # exactly hi - lo hidden frames
            hidden = self.model(segment[None]).last_hidden_state[0]  # [hi - lo, D]
            chunks.append(hidden[first - lo: first - lo + self.chunk_frames])
        features = torch.cat(chunks).float().cpu().numpy()[:count]
        return np.pad(features, ((0, count - len(features)), (0, 0)))


def phone_track(samples: Float[np.ndarray, " samples"], num_frames: int,
                fps: float = 25.0) -> tuple[list[str], Int[np.ndarray, " frames"]]:
    """The phone spoken at each video frame time t_k, by pocketsphinx all-phone decoding (English, noisy labels).

    Returns the label list (PHONES) and, per frame, an index into it; noise fillers count as silence.
    """
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError:
        raise MissingDependencyError("phone tracks need pocketsphinx: pip install 'deltaplane[audio]' "
                                     "(or pip install pocketsphinx==5.1.1)") from None
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    decoder = Decoder(allphone=get_model_path("en-us/en-us-phone.lm.bin"), lw=2.0, pip=0.3, beam=1e-20,
                      pbeam=1e-20, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    ids = np.zeros(num_frames, dtype=np.int64)
    times = np.arange(num_frames) / fps
    for segment in decoder.seg():  # pocketsphinx frames are 10 ms
        start, end = segment.start_frame / 100.0, (segment.end_frame + 1) / 100.0
        label = PHONES.index(segment.word) if segment.word in PHONES else 0
        ids[(times >= start) & (times < end)] = label
    return list(PHONES), ids
