"""Audio I/O: decode the audio of any file PyAV reads to mono float32 at one rate, and write PCM16 wav.

Sample i of `load_audio` is at time i / sample_rate from the container's start (the earliest stream start), the
origin `deltaplane.media.video.iter_frames` uses too; audio that starts later than the video is zero-padded in front.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import soundfile
from jaxtyping import Float

from deltaplane.atomic import atomic_path
from deltaplane.audio.features import SAMPLE_RATE
from deltaplane.errors import InputError


AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")
"""Files taken from a folder of driving speech (`audio_files`)."""


def audio_files(path: str | os.PathLike) -> dict[str, Path]:
    """Name → file for one audio file (named by its stem) or every AUDIO_SUFFIXES file of a folder, sorted."""
    path = Path(path)
    if path.is_file():
        return {path.stem: path}
    if not path.is_dir():
        raise InputError(f"audio not found: {path}")
    found = sorted(item for item in path.iterdir() if item.is_file() and item.suffix.lower() in AUDIO_SUFFIXES)
    if not found:
        raise InputError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {path}")
    names = [item.stem for item in found]
    if len(set(names)) < len(names):
        raise InputError(f"{path} holds several audio files with the same name; keep one of each")
    return dict(zip(names, found))


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> Float[np.ndarray, " samples"]:
    """The first audio stream of `path` (wav, mp3, m4a, the audio of an mp4 ...) as mono float32 in [-1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio not found: {path}")
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise InputError(f"no audio stream in {path}; pass --audio WAV")
            stream = container.streams.audio[0]
            stream.thread_type = "AUTO"
            origin = container.start_time / av.time_base if container.start_time is not None else 0.0
            # Keep the channel layout here and average the channels below: FFmpeg's own downmix of stereo to
            # float mono sums with gain 1/√2 per channel and can exceed [-1, 1].
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)
            chunks: list[np.ndarray] = []
            start: float | None = None
            for frame in container.decode(stream):
                if start is None and frame.time is not None:
                    start = frame.time - origin
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    except av.FFmpegError as error:
        raise InputError(f"cannot read audio {path}: {error}") from None
    if not chunks:
        raise InputError(f"cannot read audio {path}: its audio stream decodes to nothing")
    samples = np.concatenate(chunks, axis=1).mean(axis=0)  # [channels, samples] -> [samples]
    lead = round(max(start or 0.0, 0.0) * sample_rate)
    return np.clip(np.pad(samples, (lead, 0)), -1.0, 1.0).astype(np.float32)


def write_wav(path: str | os.PathLike, samples: Float[np.ndarray, " samples"], sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono samples in [-1, 1] as a 16-bit PCM wav, atomically."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples [samples], got shape {samples.shape}")
    with atomic_path(path) as tmp:
        soundfile.write(tmp, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
