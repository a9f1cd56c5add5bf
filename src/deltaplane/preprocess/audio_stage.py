"""The audio stage: 16 kHz mono wav cut to the video's length, frame-aligned features, optional phone track."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deltaplane.atomic import atomic_path, write_json
from deltaplane.audio.features import (FEATURE_RATE, SAMPLE_RATE, WINDOW, HuggingFaceExtractor, LogMelExtractor,
                                       frame_windows, load_precomputed_features, phone_track)
from deltaplane.audio.io import load_audio, write_wav
from deltaplane.data.schema import AUDIO_FEATURES, AUDIO_WAV, AudioInfo
from deltaplane.errors import InputError

if TYPE_CHECKING:
    from deltaplane.preprocess.stages import StageRecords

MAX_AUDIO_SHORTFALL = 1.0
"""Seconds of audio that may be missing at the end (zero-padded); more is refused as a mismatched file."""


def fit_length(samples: np.ndarray, num_samples: int, source: Path) -> np.ndarray:
    """Cut or zero-pad to exactly `num_samples`; refuse audio that is much shorter than the video."""
    shortfall = (num_samples - samples.shape[0]) / SAMPLE_RATE
    if shortfall > MAX_AUDIO_SHORTFALL:
        raise InputError(f"the audio of {source} lasts {samples.shape[0] / SAMPLE_RATE:.2f} s but the video "
                         f"{num_samples / SAMPLE_RATE:.2f} s; pass --audio with the matching speech")
    return np.pad(samples[:num_samples], (0, max(0, num_samples - samples.shape[0])))


def _features(spec: str, samples: np.ndarray, num_frames: int, fps: float) -> tuple[np.ndarray, str]:
    """Frame windows for a --audio-features spec and the kind recorded in the manifest."""
    if spec == "logmel":
        return frame_windows(LogMelExtractor()(samples), num_frames, fps), "logmel"
    path = Path(spec)
    if path.suffix == ".npy":
        if abs(fps - 25.0) > 1e-6:
            raise InputError("precomputed AD-NeRF/Talk3D features are for 25 fps videos; use --fps 25")
        return load_precomputed_features(path, num_frames), "precomputed"
    if path.is_dir():
        return frame_windows(HuggingFaceExtractor(path)(samples), num_frames, fps), f"hf:{path.name}"
    raise InputError(f"--audio-features {spec!r}: expected 'logmel', a model directory or an .npy file")


def run_audio_stage(source: Path, dataset_dir: Path, num_frames: int, fps: float, spec: str, phones: bool,
                    records: StageRecords, fingerprint: str) -> AudioInfo:
    wav, features_path, phones_path = dataset_dir / AUDIO_WAV, dataset_dir / AUDIO_FEATURES, dataset_dir / "phones.json"
    outputs = [wav, features_path] + ([phones_path] if phones else [])
    if not records.done("audio", fingerprint, outputs):
        started = time.perf_counter()
        samples = fit_length(load_audio(source), int(round(num_frames / fps * SAMPLE_RATE)), source)
        windows, kind = _features(spec, samples, num_frames, fps)
        write_wav(wav, samples)
        with atomic_path(features_path) as tmp:
            np.save(tmp, windows.astype(np.float16))
        if phones:
            labels, ids = phone_track(samples, num_frames, fps)
            write_json(phones_path, {"labels": list(labels), "frames": [int(i) for i in ids]})
        records.mark("audio", fingerprint, time.perf_counter() - started, kind=kind, dim=int(windows.shape[-1]))
    info = records.info("audio")
    return AudioInfo(kind=info["kind"], dim=info["dim"], window=WINDOW, feature_rate=float(FEATURE_RATE),
                     sample_rate=SAMPLE_RATE)
