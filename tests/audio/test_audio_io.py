"""load_audio on wav/mp3/m4a/mp4 (generated here and real), and write_wav."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from deltaplane.audio.features import SAMPLE_RATE
from deltaplane.audio.io import load_audio, write_wav
from deltaplane.errors import InputError


def tone(seconds: float, rate: int, amplitude: float = 0.8, hz: float = 440.0) -> np.ndarray:
    return (amplitude * np.sin(np.arange(round(seconds * rate)) / rate * 2 * np.pi * hz)).astype(np.float32)


def encode(path: Path, codec: str, samples: np.ndarray, rate: int) -> None:
    """Write mono `samples` with an FFmpeg audio encoder (mp3, m4a ...), as PyAV users would."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def test_stereo_48k_wav_is_averaged_and_resampled(tmp_path: Path) -> None:
    left = tone(2.0, 48000)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, left], axis=1), 48000, subtype="PCM_16")
    samples = load_audio(tmp_path / "stereo.wav")
    assert samples.dtype == np.float32 and samples.shape == (2 * SAMPLE_RATE,)
    # The mean of two equal channels keeps the amplitude (FFmpeg's own downmix would give 0.8·√2 and clip).
    assert np.abs(samples).max() == pytest.approx(0.8, abs=0.01)
    assert np.corrcoef(samples[100:-100], tone(2.0, SAMPLE_RATE)[100:-100])[0, 1] > 0.999


def test_24k_wav_and_other_target_rate(tmp_path: Path) -> None:
    soundfile.write(tmp_path / "tone.wav", tone(1.5, 24000), 24000)
    assert load_audio(tmp_path / "tone.wav").shape == (24000,)
    assert load_audio(tmp_path / "tone.wav", sample_rate=8000).shape == (12000,)


@pytest.mark.parametrize(("codec", "suffix"), [("libmp3lame", "mp3"), ("aac", "m4a")])
def test_compressed_audio(tmp_path: Path, codec: str, suffix: str) -> None:
    encode(tmp_path / f"tone.{suffix}", codec, tone(2.0, 44100), 44100)
    samples = load_audio(tmp_path / f"tone.{suffix}")
    assert abs(len(samples) - 2 * SAMPLE_RATE) < 0.06 * SAMPLE_RATE  # encoders pad to whole codec frames
    assert np.corrcoef(samples[1000:30000], tone(2.0, SAMPLE_RATE)[1000:30000])[0, 1] > 0.99


def test_no_audio_unreadable_and_missing(tmp_path: Path) -> None:
    with av.open(str(tmp_path / "silent.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode(None))
    with pytest.raises(InputError, match=r"no audio stream in .*silent.mp4; pass --audio WAV"):
        load_audio(tmp_path / "silent.mp4")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(InputError, match="cannot read audio"):
        load_audio(tmp_path / "noise.wav")
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "missing.wav")


def test_write_wav_round_trip(tmp_path: Path) -> None:
    samples = tone(0.5, SAMPLE_RATE, amplitude=1.2)  # out of range: clipped, not wrapped
    write_wav(tmp_path / "out" / "a.wav", samples)
    info = soundfile.info(tmp_path / "out" / "a.wav")
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SAMPLE_RATE, 1, "PCM_16", 8000)
    np.testing.assert_allclose(load_audio(tmp_path / "out" / "a.wav"), np.clip(samples, -1, 1), atol=1e-4)
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["a.wav"]


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "seconds"), [
    ("audio/en_female_16s.wav", 15.754667), ("audio/en_tts_33s.mp3", 32.88), ("audio/en_16s.m4a", 16.62),
    ("clips/katie_8s.mp4", 8.0), ("clips/macron_fr_50s.mp4", 50.43)])
def test_real_files(shared_data: Path, name: str, seconds: float) -> None:
    samples = load_audio(shared_data / name)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) / SAMPLE_RATE == pytest.approx(seconds, abs=0.06)
    assert np.sqrt(np.mean(samples**2)) > 0.01 and np.abs(samples).max() <= 1.0


@pytest.mark.shared_data
def test_real_clip_without_audio(shared_data: Path) -> None:
    with pytest.raises(InputError, match="no audio stream"):
        load_audio(shared_data / "clips" / "noaudio_3s.mp4")


def test_audio_that_starts_after_the_video_is_padded_in_front(tmp_path: Path) -> None:
    # Sample i of load_audio is at i / rate from the container start, the time origin of the video frames too.
    with av.open(str(tmp_path / "late.mp4"), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = out.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        for _ in range(25):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
        out.mux(video.encode(None))
        frame = av.AudioFrame.from_ndarray(tone(0.8, SAMPLE_RATE)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, int(0.2 * SAMPLE_RATE)
        out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    samples = load_audio(tmp_path / "late.mp4")
    first_sound = np.flatnonzero(np.abs(samples) > 0.05)[0] / SAMPLE_RATE
    assert first_sound == pytest.approx(0.2, abs=0.005)
