"""Video probe, constant-rate decoding and the mp4 writer, on clips generated here with PyAV and on the real clips."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from deltaplane.audio.io import load_audio
from deltaplane.errors import InputError
from deltaplane.media.video import (
    VideoInfo,
    VideoWriter,
    iter_frames,
    output_frame_count,
    probe_video,
    read_video_metadata,
)

BITS = 8
TIME_BASE = Fraction(1, 30000)


def counter_frame(index: int, height: int, width: int) -> np.ndarray:
    """A frame whose top half shows `index` in binary as BITS black/white columns; the bottom half moves."""
    frame = np.zeros((height, width, 3), np.uint8)
    columns = np.array_split(np.arange(width), BITS)
    for bit, cols in enumerate(columns):
        if index >> bit & 1:
            frame[: height // 2, cols] = 255
    stripes = ((np.arange(width)[None, :] + np.arange(height - height // 2)[:, None] + 7 * index) // 9) % 2
    frame[height // 2:] = stripes[:, :, None] * 200
    return frame


def read_counter(frame: np.ndarray) -> int:
    height, width = frame.shape[:2]
    top = frame[height // 8: 3 * height // 8].mean(axis=2)
    columns = np.array_split(np.arange(width), BITS)
    return sum(1 << bit for bit, cols in enumerate(columns) if top[:, cols[2:-2]].mean() > 128)


def write_clip(path: Path, times: np.ndarray, height: int = 96, width: int = 160, audio_seconds: float = 0.0,
               faststart: bool = True, rotation: int = 0) -> None:
    """An H.264 mp4 whose frame i has pts times[i] (seconds) and shows counter i; optional 16 kHz audio from 0 s."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        video = out.add_stream("libx264", rate=round(1 / np.median(np.diff(times))))  # sets the last frame's length
        video.height, video.width, video.pix_fmt = height + height % 2, width + width % 2, "yuv420p"
        video.codec_context.time_base = TIME_BASE
        video.options = {"crf": "12", "preset": "ultrafast"}
        if rotation:
            video.set_display_rotation(rotation)
        audio = out.add_stream("aac", rate=16000) if audio_seconds else None
        for index, time in enumerate(times):
            image = np.pad(counter_frame(index, height, width), ((0, height % 2), (0, width % 2), (0, 0)))
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(time / TIME_BASE), TIME_BASE
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            samples = 0.3 * np.sin(np.arange(int(audio_seconds * 16000)) / 16000 * 2 * np.pi * 440)
            frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 16000, 0
            out.mux(audio.encode(frame))
            out.mux(audio.encode(None))


def expected_sources(times: np.ndarray, count: int, fps: float) -> np.ndarray:
    """Index of the source frame on screen at k / fps: the last one that has started (the first one before that)."""
    return np.maximum(np.searchsorted(times, np.arange(count) / fps + 1e-3, side="right") - 1, 0)


@pytest.mark.parametrize("source_fps", [30, 24, 50])
def test_constant_rate_resampling_shows_the_frame_of_each_time(tmp_path: Path, source_fps: int) -> None:
    times = np.arange(round(2.0 * source_fps)) / source_fps
    write_clip(tmp_path / "clip.mp4", times)
    info = probe_video(tmp_path / "clip.mp4")
    assert info.fps == pytest.approx(source_fps) and info.duration == pytest.approx(2.0, abs=1e-3)
    frames = list(iter_frames(tmp_path / "clip.mp4", fps=25))
    assert len(frames) == output_frame_count(info.duration, 25) == 50
    assert [read_counter(frame) for frame in frames] == expected_sources(times, 50, 25).tolist()


def test_variable_frame_rate_with_late_video_start(tmp_path: Path) -> None:
    # Irregular gaps of 15-90 ms; the video starts 0.1 s after the audio, so frame 0 is held until then.
    rng = np.random.default_rng(0)
    times = 0.1 + np.concatenate([[0.0], np.cumsum(rng.uniform(0.015, 0.09, 60))])
    write_clip(tmp_path / "vfr.mp4", times, audio_seconds=times[-1] + 0.1)
    info = probe_video(tmp_path / "vfr.mp4")
    assert info.has_audio and info.audio_sample_rate == 16000
    frames = list(iter_frames(tmp_path / "vfr.mp4", fps=25))
    assert len(frames) == math.floor(info.duration * 25)
    assert [read_counter(frame) for frame in frames] == expected_sources(times, len(frames), 25).tolist()
    assert read_counter(frames[0]) == read_counter(frames[2]) == 0


def test_odd_non_square_clip(tmp_path: Path) -> None:
    write_clip(tmp_path / "odd.mp4", np.arange(30) / 30, height=317, width=451)
    info = probe_video(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.codec, info.has_audio) == (452, 318, "h264", False)
    frames = list(iter_frames(tmp_path / "odd.mp4", fps=25))
    assert len(frames) == 25 and frames[0].shape == (318, 452, 3) and frames[0].dtype == np.uint8
    assert [read_counter(frame) for frame in frames] == expected_sources(np.arange(30) / 30, 25, 25).tolist()


@pytest.mark.parametrize("rotation", [90, -90])
def test_display_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    # Phones store landscape frames plus a display rotation (counter-clockwise degrees, FFmpeg's convention).
    write_clip(tmp_path / "phone.mp4", np.arange(5) / 25, height=96, width=160, rotation=rotation)
    info = probe_video(tmp_path / "phone.mp4")
    assert (info.width, info.height) == (96, 160)
    frame = next(iter_frames(tmp_path / "phone.mp4"))
    np.testing.assert_allclose(frame, np.rot90(counter_frame(0, 96, 160), rotation // 90), atol=40)


def test_output_frame_count() -> None:
    assert output_frame_count(8.0, 25) == 200
    assert output_frame_count(50.4, 25) == 1260
    assert output_frame_count(0.0399, 25) == 0
    assert output_frame_count(3 * 0.1, 10) == 3  # 0.30000000000000004 · 10 and 0.29999999999999999 · 10 alike


def test_bad_inputs_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(InputError, match="cannot read video"):
        probe_video(tmp_path / "noise.mp4")
    with pytest.raises(InputError, match="cannot read video"):
        iter_frames(tmp_path / "noise.mp4")
    soundfile.write(tmp_path / "tone.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(InputError, match="no video stream"):
        probe_video(tmp_path / "tone.wav")


def test_truncated_files_raise_input_error(tmp_path: Path) -> None:
    times = np.arange(120) / 30
    write_clip(tmp_path / "index_last.mp4", times, faststart=False)  # the index (moov) is lost with the tail
    data = (tmp_path / "index_last.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read video"):
        probe_video(tmp_path / "cut.mp4")
    write_clip(tmp_path / "index_first.mp4", times)  # the index survives, the frames do not
    data = (tmp_path / "index_first.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="truncated"):
        list(iter_frames(tmp_path / "cut.mp4"))


@pytest.mark.parametrize("audio_rate", [16000, 10000])
def test_writer_round_trip(tmp_path: Path, audio_rate: int) -> None:
    fps, num_frames = 25, 50
    frames = [counter_frame(index, 317, 451) for index in range(num_frames)]
    tone = 0.5 * np.sin(np.arange(int(1.9 * audio_rate)) / audio_rate * 2 * np.pi * 300).astype(np.float32)
    tags = {"comment": "synthetic: generated by deltaplane", "title": "round trip"}
    with VideoWriter(tmp_path / "out.mp4", fps, audio=tone, audio_sample_rate=audio_rate, metadata=tags) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height, info.fps, info.codec) == (452, 318, 25.0, "h264")
    assert read_video_metadata(tmp_path / "out.mp4").items() >= tags.items()
    with av.open(str(tmp_path / "out.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        durations = [float(stream.duration * stream.time_base) for stream in (video, audio)]
    assert durations[0] == pytest.approx(num_frames / fps) and abs(durations[0] - durations[1]) < 1 / fps
    decoded = list(iter_frames(tmp_path / "out.mp4", fps))
    assert [read_counter(frame) for frame in decoded] == list(range(num_frames))
    error = decoded[7][:317, :451].astype(float) - frames[7]
    assert 10 * np.log10(255**2 / np.mean(error**2)) > 35
    sound = load_audio(tmp_path / "out.mp4")
    reference = 0.5 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 300)
    assert np.corrcoef(sound[4000:20000], reference)[0, 1] > 0.99  # in sync to well under a sample period
    assert np.abs(sound[int(1.95 * 16000): 32000]).max() < 0.02  # padded with silence after the audio ends


def test_writer_leaves_nothing_when_interrupted(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(tmp_path / "out.mp4") as writer:
        writer.write(np.zeros((64, 64, 3), np.uint8))
        raise RuntimeError("boom")
    with pytest.raises(ValueError, match="no frames"), VideoWriter(tmp_path / "out.mp4"):
        pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="drops the tags"):
        VideoWriter(tmp_path / "out.mp4", metadata={"my_tag": "x"})


def test_writer_leaves_nothing_when_interrupted_while_opening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM or Ctrl-C that lands after the temporary file exists but before the container is open (no
    `__exit__` runs for a `with` whose `__enter__` raised) still deletes it."""
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(av, "open", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught, VideoWriter(tmp_path / "out.mp4"):
        pass
    # checked while the traceback still holds the writer, as the CLI's directory cleanup runs while the interrupt
    # unwinds (a collected writer would also delete it, too late for that cleanup)
    assert caught.tb is not None and list(tmp_path.iterdir()) == []


@pytest.mark.shared_data
def test_real_clips(shared_data: Path) -> None:
    katie = shared_data / "clips" / "katie_8s.mp4"
    assert probe_video(katie) == VideoInfo(512, 512, 25.0, 8.0, 200, "mpeg4", True, 16000)
    assert sum(1 for _ in iter_frames(katie, 25)) == 200
    assert not probe_video(shared_data / "clips" / "noaudio_3s.mp4").has_audio
    portrait = probe_video(shared_data / "clips" / "portrait_1080x1920_20s.mp4")
    assert (portrait.width, portrait.height, portrait.codec) == (1080, 1920, "hevc")


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.shared_data
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from Linux /proc")
def test_real_30fps_clip_streams(shared_data: Path) -> None:
    frames = iter_frames(shared_data / "clips" / "macron_fr_50s.mp4", 25)
    start, peak, count = resident_bytes(), 0, 0
    for count, frame in enumerate(frames, start=1):
        assert frame.shape == (512, 512, 3)
        if count % 50 == 0:
            peak = max(peak, resident_bytes() - start)
    assert count == math.floor(50.4 * 25) == 1260
    assert peak < 150e6  # a few frames at a time, never the ~1 GB of the whole clip
