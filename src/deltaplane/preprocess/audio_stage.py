"""The audio stages: the source's speech as 16 kHz mono cut to the video's length (first, so that a bad file fails
before tracking), then, once the face is tracked, the same speech put onto the lips, its frame-aligned features and
the optional phone track."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deltaplane.atomic import atomic_path, write_json
from deltaplane.audio.features import (FEATURE_RATE, SAMPLE_RATE, WINDOW, HuggingFaceExtractor, LogMelExtractor,
                                       frame_windows, load_precomputed_features, phone_track)
from deltaplane.audio.io import load_audio, write_wav
from deltaplane.data.schema import AUDIO_FEATURES, AUDIO_WAV, STAGES_DIR, AudioInfo
from deltaplane.errors import InputError
from deltaplane.preprocess.av_sync import measure_offset, shift_audio, shift_windows

if TYPE_CHECKING:
    from deltaplane.preprocess.stages import StageRecords

SOURCE_AUDIO = "audio_source.wav"
"""The audio stage's output in STAGES_DIR: the speech as the source has it."""
MAX_AUDIO_SHORTFALL = 1.0
"""Seconds of audio that may be missing at the end (zero-padded); more is refused as a mismatched file."""


def fit_length(samples: np.ndarray, num_samples: int, source: Path) -> np.ndarray:
    """Cut or zero-pad to exactly `num_samples`; refuse audio that is much shorter than the video."""
    shortfall = (num_samples - samples.shape[0]) / SAMPLE_RATE
    if shortfall > MAX_AUDIO_SHORTFALL:
        raise InputError(f"the audio of {source} lasts {samples.shape[0] / SAMPLE_RATE:.2f} s but the video "
                         f"{num_samples / SAMPLE_RATE:.2f} s; pass --audio with the matching speech")
    return np.pad(samples[:num_samples], (0, max(0, num_samples - samples.shape[0])))


def check_feature_spec(spec: str, num_frames: int, fps: float) -> None:
    """Refuse a bad --audio-features before the long tracking pass (a precomputed file is read and checked)."""
    path = Path(spec)
    if spec == "logmel" or path.is_dir():
        return
    if path.suffix != ".npy":
        raise InputError(f"--audio-features {spec!r}: expected 'logmel', a model directory or an .npy file")
    _precomputed(path, num_frames, fps)


def _precomputed(path: Path, num_frames: int, fps: float) -> np.ndarray:
    if abs(fps - 25.0) > 1e-6:
        raise InputError("precomputed AD-NeRF/Talk3D features are for 25 fps videos; use --fps 25")
    return load_precomputed_features(path, num_frames)


def _features(spec: str, samples: np.ndarray, num_frames: int, fps: float, offset: int) -> tuple[np.ndarray, str]:
    """Frame windows for a --audio-features spec (checked by `check_feature_spec`) and the kind recorded in the
    manifest; `samples` are already shifted by `offset` frames, precomputed features get the same shift here."""
    if spec == "logmel":
        return frame_windows(LogMelExtractor()(samples), num_frames, fps), "logmel"
    path = Path(spec)
    if path.is_dir():
        return frame_windows(HuggingFaceExtractor(path)(samples), num_frames, fps), f"hf:{path.name}"
    return shift_windows(_precomputed(path, num_frames, fps), offset), "precomputed"


def run_audio_stage(source: Path, dataset_dir: Path, num_frames: int, fps: float, records: StageRecords,
                    fingerprint: str) -> Path:
    """Decode the source's speech to 16 kHz mono, cut to the video's length (refusing a mismatched file before the
    long tracking pass); returns the stage's wav, the audio as the source has it."""
    wav = dataset_dir / STAGES_DIR / SOURCE_AUDIO
    if not records.done("audio", fingerprint, [wav]):
        started = time.perf_counter()
        write_wav(wav, fit_length(load_audio(source), int(round(num_frames / fps * SAMPLE_RATE)), source))
        records.mark("audio", fingerprint, time.perf_counter() - started)
    return wav


def run_sync_stage(dataset_dir: Path, source_wav: Path, track_path: Path, fps: float, spec: str, phones: bool,
                   av_offset: str, records: StageRecords, fingerprint: str) -> AudioInfo:
    """Put the sound onto the lips (`preprocess.av_sync`: measured with `av_offset` 'auto', else that many frames)
    and write the dataset's audio.wav, its frame-aligned features and the optional phone track; `track_path`
    holds the track stage's raw landmarks."""
    wav, features_path, phones_path = dataset_dir / AUDIO_WAV, dataset_dir / AUDIO_FEATURES, dataset_dir / "phones.json"
    outputs = [wav, features_path] + ([phones_path] if phones else [])
    if not records.done("sync", fingerprint, outputs):
        started = time.perf_counter()
        samples = load_audio(source_wav)
        with np.load(track_path) as raw:
            points = raw["landmarks68"]
        if av_offset == "auto":
            measured = measure_offset(points, samples, fps)
            offset = measured.frames if measured is not None and measured.corrected else 0
            report = {} if measured is None else {f"measured_{k}": v for k, v in asdict(measured).items()}
        else:
            offset, report = int(av_offset), {}
        samples = shift_audio(samples, offset, fps, SAMPLE_RATE)
        num_frames = points.shape[0]
        windows, kind = _features(spec, samples, num_frames, fps, offset)
        write_wav(wav, samples)
        with atomic_path(features_path) as tmp:
            np.save(tmp, windows.astype(np.float16))
        if phones:
            labels, ids = phone_track(samples, num_frames, fps)
            write_json(phones_path, {"labels": list(labels), "frames": [int(i) for i in ids]})
        records.mark("sync", fingerprint, time.perf_counter() - started, kind=kind, dim=int(windows.shape[-1]),
                     offset_frames=offset, **report)
    info = records.info("sync")
    return AudioInfo(kind=info["kind"], dim=info["dim"], window=WINDOW, feature_rate=float(FEATURE_RATE),
                     sample_rate=SAMPLE_RATE, offset_frames=info["offset_frames"])
