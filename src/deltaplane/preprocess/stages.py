"""`deltaplane preprocess`: one idempotent function per stage, each writing its own artefacts atomically.

    audio   → .stages/audio_source.wav: the source's speech, 16 kHz mono, cut to the video (a bad file fails here)
    track   → .stages/track_raw.npz: raw 68-point landmarks + mediapipe mesh per frame (streamed decode)
    sync    → audio.wav, audio_features.npy (+ phones.json): the speech shifted onto the lips (preprocess.av_sync)
    frames  → frames/, parsing/, tracks.npz: smoothing, alignment, head pose, masks (second streamed decode)
    manifest.json last (a re-run removes the old one before any stage runs).

A stage is skipped when its fingerprint (inputs + parameters + the fingerprints it depends on) matches the record
in `.stages/<name>.json` and its outputs exist, so re-running is a no-op and an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from deltaplane.atomic import atomic_dir, created_dir, save_npz, write_json
from deltaplane.data.schema import (FRAMES_CRF, FRAMES_DIR, FRAMES_VIDEO, MANIFEST, MAX_SIZE, PARSING_DIR, STAGES_DIR,
                                    TRACKS, Manifest, SourceInfo, split_indices)
from deltaplane.errors import InputError
from deltaplane.media.video import (VideoInfo, VideoWriter, check_complete, iter_frames, output_frame_count,
                                    probe_video)
from deltaplane.preprocess.audio_stage import check_feature_spec, run_audio_stage, run_sync_stage
from deltaplane.preprocess.av_sync import describe_offset
from deltaplane.preprocess.geometry_stage import FrameGeometry, frame_geometry

MIN_SECONDS = 2.0
MAX_ALIGN_SMOOTHING = 25.0
"""Frames; a wider Gaussian would hold the face still while the head moves."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of `deltaplane preprocess` (each changes the fingerprint of the stages that use it)."""

    fps: float = 25.0
    """Output frame rate; any input rate (also variable) is resampled to it."""
    size: int = 512
    """Side of the aligned frames."""
    test_fraction: float = 0.1
    """The last fraction of the video forms the test split."""
    audio_features: str = "logmel"
    """'logmel', a local wav2vec2/HuBERT directory, or a precomputed AD-NeRF/Talk3D .npy."""
    phones: bool = False
    """Also store a pocketsphinx phone track."""
    max_missing_fraction: float = 0.05
    """Refuse clips whose face is missing in more than this fraction of frames."""
    align_smoothing: float = 0.5
    """σ in frames of the temporal Gaussian on the landmarks that place each aligned frame. Talk3D's 2 frames leave
    the head's fast motion in the aligned frames, about a pixel at 512², which the cameras do not follow, so a
    field fitted to them blurs (docs/dataset.md "Alignment smoothing"); 0 follows the landmarks' own noise."""
    av_offset: str = "auto"
    """'auto': measure the audio–video offset and shift the sound onto the lips when it is clear
    (`preprocess.av_sync`); an integer: shift by that many frames (positive: the mouth moves after the sound;
    '0' keeps the audio as it is)."""

    def __post_init__(self) -> None:
        if not 0 < self.fps <= 120:
            raise InputError(f"--fps must be in (0, 120], got {self.fps}")
        if self.size < 64 or self.size > MAX_SIZE or self.size % 2:
            raise InputError(f"--size must be an even number in [64, {MAX_SIZE}], got {self.size}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise InputError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if not 0.0 <= self.align_smoothing <= MAX_ALIGN_SMOOTHING:
            raise InputError(f"--align-smoothing must be in [0, {MAX_ALIGN_SMOOTHING:g}] frames, "
                             f"got {self.align_smoothing}")
        if self.av_offset != "auto" and not re.fullmatch(r"[+-]?\d+", self.av_offset):
            raise InputError(f"--av-offset must be 'auto' or a whole number of frames, got {self.av_offset!r}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageRecords:
    """Fingerprints of finished stages, one small JSON file each."""

    def __init__(self, dataset_dir: Path) -> None:
        self.root = dataset_dir / STAGES_DIR

    def done(self, name: str, fingerprint: str, outputs: Iterable[Path]) -> bool:
        path = self.root / f"{name}.json"
        if not path.is_file() or not all(p.exists() for p in outputs):
            return False
        try:
            return json.loads(path.read_text()).get("fingerprint") == fingerprint
        except (OSError, json.JSONDecodeError):
            return False

    def mark(self, name: str, fingerprint: str, seconds: float, **info: object) -> None:
        write_json(self.root / f"{name}.json", {"fingerprint": fingerprint, "seconds": round(seconds, 2), **info})

    def info(self, name: str) -> dict:
        return json.loads((self.root / f"{name}.json").read_text())


def _check_video(video: Path, info: VideoInfo, config: PreprocessConfig) -> int:
    num_frames = output_frame_count(info.duration, config.fps)
    if num_frames / config.fps < MIN_SECONDS:
        raise InputError(f"{video} is {info.duration:.2f} s long; at least {MIN_SECONDS:g} s of video is needed")
    check_complete(video, info)  # else a cut file is blamed on its audio, or tracked past its end
    return num_frames


def run_preprocess(video: Path, dataset_dir: Path, config: PreprocessConfig, audio: Path | None = None,
                   progress: bool = True) -> Path:
    """Run (or resume) every stage and write the manifest; returns `dataset_dir`."""
    info = probe_video(video)
    num_frames = _check_video(video, info, config)
    if audio is None and not info.has_audio:
        raise InputError(f"{video} has no audio stream; pass --audio WAV with the speech of this video")
    if audio is not None and not audio.is_file():
        raise InputError(f"audio file not found: {audio}")
    with created_dir(dataset_dir):  # a run that fails early (bad audio) leaves no empty dataset directory behind
        _run_stages(video, dataset_dir, config, audio, info, num_frames, progress)
    return dataset_dir


def _run_stages(video: Path, dataset_dir: Path, config: PreprocessConfig, audio: Path | None, info: VideoInfo,
                num_frames: int, progress: bool) -> None:
    records = StageRecords(dataset_dir)
    source_hash = sha256_of(video)
    audio_hash = sha256_of(audio) if audio else source_hash
    # The old manifest describes artefacts that the stages below may rewrite: a run that dies midway must leave an
    # incomplete dataset that every reader refuses, never a mixed one that passes as complete.
    (dataset_dir / MANIFEST).unlink(missing_ok=True)

    check_feature_spec(config.audio_features, num_frames, config.fps)
    if config.av_offset != "auto" and abs(int(config.av_offset)) >= num_frames:
        raise InputError(f"--av-offset {config.av_offset} shifts the sound out of this {num_frames}-frame clip")
    audio_print = _fingerprint("audio", audio_hash, num_frames, config.fps)
    source_wav = run_audio_stage(video if audio is None else audio, dataset_dir, num_frames, config.fps, records,
                                 audio_print)

    track_print = _fingerprint("track", source_hash, config.fps, num_frames)
    track_path = dataset_dir / STAGES_DIR / "track_raw.npz"
    if not records.done("track", track_print, [track_path]):
        started = time.perf_counter()
        raw = _track(video, num_frames, config.fps, progress)
        save_npz(track_path, **raw)
        records.mark("track", track_print, time.perf_counter() - started, frames=num_frames)

    sync_print = _fingerprint("sync", audio_print, track_print, config.av_offset, config.audio_features,
                              config.phones)
    audio_info = run_sync_stage(dataset_dir, source_wav, track_path, config.fps, config.audio_features,
                                config.phones, config.av_offset, records, sync_print)

    frames_print = _fingerprint("frames", track_print, config.size, config.max_missing_fraction, FRAMES_VIDEO,
                                FRAMES_CRF, config.align_smoothing)
    outputs = [dataset_dir / FRAMES_VIDEO, dataset_dir / PARSING_DIR, dataset_dir / TRACKS]
    if not records.done("frames", frames_print, outputs):
        started = time.perf_counter()
        with np.load(track_path) as raw:
            geometry = frame_geometry(dict(raw), info.width, info.height, config.size, config.fps,
                                      config.max_missing_fraction, config.align_smoothing)
        _write_frames(video, dataset_dir, geometry, config, num_frames, progress)
        shutil.rmtree(dataset_dir / FRAMES_DIR, ignore_errors=True)  # JPEGs of an older version of the dataset
        save_npz(dataset_dir / TRACKS, **geometry.arrays)
        records.mark("frames", frames_print, time.perf_counter() - started, frames=num_frames)

    manifest = Manifest(
        fps=config.fps, num_frames=num_frames, image_size=config.size,
        source=SourceInfo(path=str(video.resolve()), sha256=source_hash, fps=info.fps, width=info.width,
                          height=info.height, duration=info.duration,
                          audio_path=str(audio.resolve()) if audio else None),
        audio=audio_info, splits=split_indices(num_frames, config.test_fraction),
        stages={name: records.info(name) for name in ("audio", "track", "sync", "frames")},
        phones=config.phones, config=asdict(config))
    write_json(dataset_dir / MANIFEST, manifest.to_json())
    if progress and audio_info.offset_frames:
        print(describe_offset(manifest))


def _track(video: Path, num_frames: int, fps: float, progress: bool) -> dict[str, np.ndarray]:
    """Stream the video once and track the main face in every frame (NaN rows where no face was found)."""
    from tqdm import tqdm

    from deltaplane.preprocess.landmarks import NUM_MESH_POINTS, FaceTracker

    landmarks = np.full((num_frames, 68, 2), np.nan, np.float32)
    mesh = np.full((num_frames, NUM_MESH_POINTS, 3), np.nan, np.float32)
    faces = np.zeros(num_frames, np.int16)
    with FaceTracker() as tracker:
        frames = iter_frames(video, fps)
        for index, rgb in enumerate(tqdm(frames, total=num_frames, disable=not progress, desc="track face",
                                         unit="frame")):
            observation = tracker.track(rgb)
            if observation is not None:
                landmarks[index], mesh[index], faces[index] = observation.landmarks68, observation.mesh, \
                    observation.num_faces
    return {"landmarks68": landmarks, "mesh": mesh, "num_faces": faces}


def _write_frames(video: Path, dataset_dir: Path, geometry: FrameGeometry, config: PreprocessConfig,
                  num_frames: int, progress: bool) -> None:
    """Second streamed pass: warp each frame onto the template, segment it, encode it into FRAMES_VIDEO and write
    its label-map PNG."""
    from tqdm import tqdm

    from deltaplane.preprocess.align import transform_points, warp_to_template
    from deltaplane.preprocess.masks import PersonSegmenter, parsing_map

    def write(path: Path, image: np.ndarray, params: list[int]) -> None:
        if not cv2.imwrite(str(path), image, params):
            raise OSError(f"cannot write {path}")

    with VideoWriter(dataset_dir / FRAMES_VIDEO, config.fps, crf=FRAMES_CRF, preset="medium") as frames_video, \
            atomic_dir(dataset_dir / PARSING_DIR) as parsing_dir, PersonSegmenter() as segmenter, \
            ThreadPoolExecutor(max_workers=2) as pool:
        pending = []
        frames = iter_frames(video, config.fps)
        for index, rgb in enumerate(tqdm(frames, total=num_frames, disable=not progress, desc="align frames",
                                         unit="frame")):
            affine = geometry.arrays["affine"][index]
            aligned = warp_to_template(rgb, affine, config.size)
            mesh_xy = transform_points(geometry.arrays["mesh_original"][index, :, :2], affine)
            labels = parsing_map(aligned, geometry.arrays["landmarks_aligned"][index], segmenter, mesh_xy)
            frames_video.write(aligned)
            pending.append(pool.submit(write, parsing_dir / f"{index:06d}.png", labels, [cv2.IMWRITE_PNG_COMPRESSION, 1]))
            while len(pending) > 16:  # bounded queue: memory stays flat for long videos
                pending.pop(0).result()
        for future in pending:
            future.result()
