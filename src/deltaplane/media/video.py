"""Video I/O with PyAV: probe, stream-decode to a constant frame rate, and stream-encode H.264 mp4 (+ AAC audio).

Time follows docs/conventions.md: output frame k is presented at t_k = k / fps. Times are measured from the
container's start (the earliest stream start), the same origin `deltaplane.audio.io.load_audio` uses, so that
video frames and audio samples stay in sync even when one stream starts later than the other.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Self

import av
import numpy as np
from jaxtyping import Float, UInt8

from deltaplane.atomic import atomic_path
from deltaplane.errors import InputError

DEFAULT_FPS = 25.0
"""Frame rate of every dataset and rendered clip unless told otherwise."""
PTS_EPSILON = 1e-3
"""Seconds of slack when matching t_k to a frame's pts: absorbs time-base rounding, far below one frame interval."""
MAX_MISSING_SECONDS = 1.0
"""A stream that ends this much before its declared duration is treated as truncated, not padded."""
MP4_TAGS = ("title", "artist", "album", "comment", "description", "copyright", "date", "genre", "keywords",
            "composer", "synopsis")
"""Container tags that the mp4 muxer writes as standard iTunes atoms (others are silently dropped, so refused)."""
AAC_SAMPLE_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read from its headers and its first frame."""

    width: int
    """Width in pixels of the frames as displayed (and as `iter_frames` yields them)."""
    height: int
    """Height in pixels of the frames as displayed."""
    fps: float
    """Average frame rate (frames / second); variable-rate files report their mean."""
    duration: float
    """Seconds from the container start to the end of the video stream."""
    num_frames_estimate: int
    """Frame count from the header, or duration · fps when the header has none."""
    codec: str
    """Video codec name, e.g. 'h264', 'hevc', 'mpeg4'."""
    has_audio: bool
    """Whether the file has at least one audio stream."""
    audio_sample_rate: int | None
    """Sample rate of the first audio stream, None without audio."""


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video not found: {path}")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as error:
        raise InputError(f"cannot read video {path}: {error}") from None


def _video_stream(container: av.container.InputContainer, path: str | os.PathLike) -> av.VideoStream:
    if not container.streams.video:
        raise InputError(f"no video stream in {path}")
    return container.streams.video[0]


def _origin(container: av.container.InputContainer) -> float:
    """Seconds of the container's time zero: the earliest stream start (FFmpeg's own A/V reference)."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _to_rgb(frame: av.VideoFrame) -> UInt8[np.ndarray, "height width 3"]:
    """RGB pixels as displayed: phone videos store landscape frames plus a rotation to apply on display."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round(frame.rotation / 90) % 4  # counter-clockwise, as np.rot90
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream,
                 path: str | os.PathLike) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as error:
        raise InputError(f"cannot read video {path}: {error}") from None
    raise InputError(f"cannot read video {path}: no frame could be decoded")


def _info(container: av.container.InputContainer, path: str | os.PathLike) -> VideoInfo:
    stream = _video_stream(container, path)
    first = _first_frame(container, stream, path)  # checks the stream decodes and gives the displayed size
    sideways = round(first.rotation / 90) % 2 == 1
    width, height = (first.height, first.width) if sideways else (first.width, first.height)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and stream.time_base is not None:
        start = stream.start_time or 0
        duration = float((start + stream.duration) * stream.time_base) - _origin(container)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    elif rate and stream.frames:
        duration = stream.frames / float(rate)
    else:
        raise InputError(f"cannot read video {path}: no duration in its headers")
    if not rate:
        if not stream.frames or duration <= 0:
            raise InputError(f"cannot read video {path}: no frame rate in its headers")
        rate = Fraction(stream.frames) / Fraction(duration)
    audio = container.streams.audio
    return VideoInfo(
        width=width, height=height, fps=float(rate),
        duration=duration, num_frames_estimate=stream.frames or round(duration * float(rate)),
        codec=stream.codec_context.name, has_audio=bool(audio),
        audio_sample_rate=audio[0].codec_context.sample_rate if audio else None)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's size, rate, duration and streams (decoding one frame); InputError if it is missing,
    unreadable or has no video."""
    with _open(path) as container:
        return _info(container, path)


CUT_TOLERANCE = 1.0
"""Seconds a video stream may end before the duration its headers declare without being called cut short."""


def check_complete(path: str | os.PathLike, info: VideoInfo) -> None:
    """InputError when the video stream stops well before the duration its headers declare: a file cut short, such
    as a half-downloaded mp4 whose index sits at the start (it opens and probes fine). Seeks near the end and
    decodes at most one keyframe interval."""
    target = max(0.0, info.duration - CUT_TOLERANCE)
    last = 0.0
    with _open(path) as container:
        stream = _video_stream(container, path)
        origin = _origin(container)
        try:
            container.seek(int((target + origin) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                last = frame.time - origin if frame.time is not None else last
                if last >= target:
                    return
        except av.FFmpegError:
            pass  # the data ends inside the stream: the file is cut
    raise InputError(f"{path} is cut short: its video stops at {last:.2f} s of the {info.duration:.2f} s its header "
                     "declares; export or download it again")


def output_frame_count(duration: float, fps: float) -> int:
    """Frames of a constant-rate clip of `duration` seconds: N frames cover N / fps seconds."""
    return math.floor(duration * fps + 1e-6)


def iter_frames(path: str | os.PathLike, fps: float = DEFAULT_FPS, start: int = 0
                ) -> Generator[UInt8[np.ndarray, "height width 3"], None, None]:
    """Decode `path` frame by frame, resampled to constant `fps`.

    Frame k is the source frame on screen at t_k = k / fps (the last one with pts ≤ t_k; the first frame before
    the video starts). Yields exactly `output_frame_count(duration, fps)` RGB frames, repeating the last one if
    the stream ends a little early; from frame `start` on when given (seeking to the keyframe before it rather than
    decoding from the beginning). The file is checked now; decoding happens lazily as frames are consumed.
    """
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    info = probe_video(path)
    return _resampled_frames(path, output_frame_count(info.duration, fps), fps, start)


def _resampled_frames(path: str | os.PathLike, count: int, fps: float, start: int = 0
                      ) -> Generator[UInt8[np.ndarray, "h w 3"], None, None]:
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        origin = _origin(container)
        frame_step = 1.0 / float(stream.average_rate or fps)
        shown: av.VideoFrame | None = None  # the source frame on screen at the current output time
        shown_time = 0.0
        k = start
        try:
            if start > 0:
                container.seek(int((start / fps + origin) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if start > 0 and shown is None and (frame.time is None or frame.time - origin > k / fps + PTS_EPSILON):
                    # The seek landed past t_start (or the frames carry no times): decode from the start instead.
                    yield from itertools.islice(_resampled_frames(path, count, fps), start, None)
                    return
                if frame.time is not None:
                    time = frame.time - origin
                else:  # no pts: assume the average spacing
                    time = shown_time + frame_step if shown is not None else 0.0
                # Every output time before this frame's pts still shows the previous frame (or this one if none).
                while k < count and k / fps + PTS_EPSILON < time:
                    yield _to_rgb(frame if shown is None else shown)
                    k += 1
                if k >= count:
                    return
                shown, shown_time = frame, time
        except av.FFmpegError as error:
            raise InputError(f"cannot read video {path}: {error}") from None
        if count / fps - (shown_time + frame_step) > MAX_MISSING_SECONDS:
            raise InputError(f"cannot read video {path}: it ends at {shown_time:.2f} s but claims "
                             f"{count / fps:.2f} s (truncated file?)")
        assert shown is not None, "probe_video decoded a frame"
        last = _to_rgb(shown)
        for _ in range(k, count):
            yield last.copy()


def frames_in_order(path: str | os.PathLike, fps: float, order: Sequence[int], block: int
                    ) -> Iterator[UInt8[np.ndarray, "height width 3"]]:
    """The frames numbered `order` (as `iter_frames` numbers them) in that order, e.g. a clip played forward and
    backward. Each run of `block` positions decodes forward once from its lowest frame to its highest, continuing
    the open stream when it lies ahead and seeking back otherwise, so memory holds at most `block` frames."""
    stream: Generator[np.ndarray, None, None] | None = None
    position = 0  # the frame number `stream` yields next
    try:
        for begin in range(0, len(order), block):
            wanted = order[begin:begin + block]
            keep, low, high = set(wanted), min(wanted), max(wanted)
            if stream is None or low < position:
                if stream is not None:
                    stream.close()
                stream, position = iter_frames(path, fps, start=low), low
            decoded = {number: frame for number, frame in zip(range(position, high + 1), stream) if number in keep}
            position = high + 1
            if len(decoded) < len(keep):
                raise InputError(f"{path} holds fewer than {high + 1} frames at {fps:g} fps")
            yield from (decoded[number] for number in wanted)
    finally:
        if stream is not None:
            stream.close()


def read_video_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The container-level tags of a media file (e.g. 'title', 'comment')."""
    with _open(path) as container:
        return dict(container.metadata)


class VideoWriter:
    """Stream RGB frames into an H.264 mp4 (yuv420p), with optional mono AAC audio and container tags.

    Frames are encoded as they arrive. Audio, when given, is interleaved as the video advances and cut or
    zero-padded to the video's length, so both streams last num_frames / fps seconds. The file appears at
    `path` only when the `with` block ends without an error.

        with VideoWriter("out.mp4", fps=25, audio=samples, metadata={"comment": "synthetic"}) as writer:
            for frame in frames:
                writer.write(frame)
    """

    def __init__(self, path: str | os.PathLike, fps: float = DEFAULT_FPS, *, crf: int = 18, preset: str = "veryfast",
                 audio: Float[np.ndarray, " samples"] | None = None, audio_sample_rate: int = 16000,
                 metadata: dict[str, str] | None = None) -> None:
        unknown = set(metadata or {}) - set(MP4_TAGS)
        if unknown:
            raise ValueError(f"mp4 drops the tags {sorted(unknown)}; use one of {MP4_TAGS}")
        if audio is not None and np.asarray(audio).ndim != 1:
            raise ValueError(f"audio must be mono [samples], got shape {np.asarray(audio).shape}")
        self.path = Path(path)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.crf, self.preset = crf, preset
        self.audio = None if audio is None else np.asarray(audio, dtype=np.float32)
        self.audio_sample_rate = audio_sample_rate
        self.metadata = dict(metadata or {})
        self.num_frames = 0
        self._audio_written = 0
        self._exit_stack = contextlib.ExitStack()
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio_stream: av.AudioStream | None = None
        self._size: tuple[int, int] | None = None  # (height, width) of the first frame

    def __enter__(self) -> Self:
        tmp = self._exit_stack.enter_context(atomic_path(self.path))
        try:
            # faststart puts the index first, so the mp4 plays while it downloads.
            self._container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
            self._container.metadata.update(self.metadata)
        except BaseException:  # e.g. Ctrl-C or SIGTERM while opening: `__exit__` will not run, so delete it here
            if self._container is not None:
                self._container.close()
            self._exit_stack.__exit__(*sys.exc_info())
            raise
        return self

    def _add_streams(self, height: int, width: int) -> None:
        assert self._container is not None, "use VideoWriter as a context manager"
        video = self._container.add_stream("libx264", rate=self.rate)
        video.width, video.height = width + width % 2, height + height % 2  # yuv420p needs even sizes
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(self.crf), "preset": self.preset}
        # Tag the BT.601 limited-range matrix that the RGB→YUV conversion uses, so players do not guess BT.709.
        video.codec_context.colorspace, video.codec_context.color_range = 6, 1
        self._video = video
        if self.audio is not None:
            # AAC has a fixed set of rates; PyAV resamples any other input rate to 48 kHz while encoding.
            rate = self.audio_sample_rate if self.audio_sample_rate in AAC_SAMPLE_RATES else 48000
            self._audio_stream = self._container.add_stream("aac", rate=rate)
            self._audio_stream.layout = "mono"

    def write(self, frame: UInt8[np.ndarray, "height width 3"]) -> None:
        """Encode one RGB uint8 frame (every frame must have the size of the first)."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame [H, W, 3], got {frame.dtype} {frame.shape}")
        if self._video is None:
            self._add_streams(frame.shape[0], frame.shape[1])
            self._size = (frame.shape[0], frame.shape[1])
        if frame.shape[:2] != self._size:
            raise ValueError(f"frame size {frame.shape[:2]} differs from the first frame's {self._size}")
        if frame.shape[0] % 2 or frame.shape[1] % 2:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts, video_frame.time_base = self.num_frames, 1 / self.rate
        self._mux(self._video.encode(video_frame))
        self.num_frames += 1
        self._write_audio_until(self.num_frames / self.rate)

    def _write_audio_until(self, seconds: Fraction) -> None:
        if self._audio_stream is None or self.audio is None:
            return
        end = int(seconds * self.audio_sample_rate)
        chunk = self.audio[self._audio_written:end]
        if len(chunk) < end - self._audio_written:  # the audio is shorter than the video: pad with silence
            chunk = np.pad(chunk, (0, end - self._audio_written - len(chunk)))
        if len(chunk) == 0:
            return
        audio_frame = av.AudioFrame.from_ndarray(np.clip(chunk, -1, 1)[None], format="flt", layout="mono")
        audio_frame.sample_rate, audio_frame.pts = self.audio_sample_rate, self._audio_written
        audio_frame.time_base = Fraction(1, self.audio_sample_rate)
        self._mux(self._audio_stream.encode(audio_frame))
        self._audio_written = end

    def _mux(self, packets: list[av.Packet]) -> None:
        assert self._container is not None
        self._container.mux(packets)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        assert self._container is not None
        try:
            if exc_type is None:
                self._finish()
            self._container.close()
        except BaseException:
            self._exit_stack.__exit__(*sys.exc_info())  # deletes the temporary file
            raise
        # With the caller's exception the temporary file is deleted; without one it is renamed into place.
        self._exit_stack.__exit__(exc_type, exc, traceback)

    def _finish(self) -> None:
        if self._video is None:
            raise ValueError(f"no frames were written to {self.path}")
        self._mux(self._video.encode(None))
        if self._audio_stream is not None:
            self._mux(self._audio_stream.encode(None))
