"""The on-disk dataset format written by `deltaplane preprocess` (documented in docs/dataset.md).

A dataset is complete exactly when `manifest.json` exists: every stage writes its artefacts atomically first and the
manifest last, and a re-run removes the old manifest before any stage rewrites what it describes. `read_manifest`
validates the schema version, the field types and that the referenced files exist.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deltaplane.config_io import from_dict, read_json
from deltaplane.errors import InputError

SCHEMA_VERSION = 1
"""Bump on any change of the layout below; readers refuse other versions with a clear message."""

MANIFEST = "manifest.json"
STAGES_DIR = ".stages"
"""Per-stage fingerprints and intermediate artefacts of `deltaplane preprocess` (its resume state)."""
MAX_SIZE = 2048
"""Largest aligned frame side: the models render at most 512², and a 2048² clip already holds 12 MB per frame."""
FRAMES_VIDEO = "frames.mp4"
"""Aligned RGB frames as one H.264 video at the dataset's fps (CRF `FRAMES_CRF`), `image_size`² pixels: about a
quarter of the JPEGs' size, so minutes of video stay small enough to move to a GPU machine."""
FRAMES_CRF = 12
"""Near-transparent H.264 quality for the aligned frames (≈ 44 dB PSNR against the warped frames)."""
FRAMES_DIR = "frames"
"""Aligned RGB frames of datasets written before `FRAMES_VIDEO`: `frames/%06d.jpg` (JPEG quality 95); still read."""
PARSING_DIR = "parsing"
"""One uint8 label map per frame, `parsing/%06d.png` (labels in `PARSING_LABELS`)."""
TRACKS = "tracks.npz"
"""Per-frame arrays (see `TRACK_ARRAYS`)."""
AUDIO_WAV = "audio.wav"
"""16 kHz mono PCM16, exactly num_frames / fps seconds."""
AUDIO_FEATURES = "audio_features.npy"
"""[num_frames, 16, D] float16 windows; window k is centred on frame k (docs/conventions.md)."""

PARSING_LABELS = {0: "background", 1: "torso", 2: "head_other", 3: "face_middle", 4: "upper_face", 5: "lower_face"}
"""face = label ≥ 3, head = label ≥ 2, person = label ≥ 1."""

TRACK_ARRAYS = {
    "landmarks_original": "[N, 68, 2] float32, pixels of the original frame (after fps resampling)",
    "landmarks_aligned": "[N, 68, 2] float32, pixels of the aligned frame",
    "mesh_original": "[N, 478, 3] float32, mediapipe mesh, x/y pixels of the original frame, z in the same scale",
    "affine": "[N, 2, 3] float32, original → aligned pixel transform (similarity, from smoothed landmarks)",
    "inverse_affine": "[N, 2, 3] float32, aligned → original",
    "angles": "[N, 3] float32, camera (yaw, pitch, roll) in radians relative to the face (docs/conventions.md)",
    "cam2world": "[N, 4, 4] float32, OpenCV cam2world of the aligned frame",
    "intrinsics": "[N, 3, 3] float32, pixel intrinsics of the aligned frame (focal 3.6 widths)",
    "eye_openness": "[N] float32, eye aspect ratio (mean of both eyes)",
    "landmark_feature": "[N, 6] float32, points 30/45/36 in original-frame pixels mapped to [-1, 1]",
    "face_detected": "[N] bool, False where the landmarks were interpolated over a short gap",
}


@dataclass(frozen=True)
class SourceInfo:
    """Where the dataset came from."""

    path: str
    sha256: str
    fps: float
    width: int
    height: int
    duration: float
    audio_path: str | None = None
    """The audio file used when given with --audio (else the video's own audio stream)."""


@dataclass(frozen=True)
class AudioInfo:
    """The frame-aligned audio features stored in `audio_features.npy`."""

    kind: str
    """'logmel' (default), 'hf:<model dir name>', 'ad-nerf' (imported aud_eo.npy/DeepSpeech npy)."""
    dim: int
    window: int
    feature_rate: float
    sample_rate: int
    offset_frames: int = 0
    """The source's sound was shifted by this audio–video offset to meet the lips (`preprocess.av_sync`: positive
    when the mouth moved after the sound)."""


@dataclass(frozen=True)
class Manifest:
    """Contents of `manifest.json`."""

    fps: float
    num_frames: int
    image_size: int
    source: SourceInfo
    audio: AudioInfo
    splits: dict[str, list[int]]
    """`train` and `test` frame indices; `test` is the last `test_fraction` of the video."""
    focal: float = 3.6
    schema_version: int = SCHEMA_VERSION
    stages: dict[str, dict] = field(default_factory=dict)
    """Per stage: the parameters it ran with and its wall time (informational)."""
    phones: bool = False
    """Whether `phones.json` (pocketsphinx phone track) exists."""
    config: dict = field(default_factory=dict)
    """The preprocessing parameters."""

    def to_json(self) -> dict:
        return asdict(self)


def split_indices(num_frames: int, test_fraction: float) -> dict[str, list[int]]:
    """Train = the first frames, test = the last `test_fraction` of the video (Talk3D/AD-NeRF protocol)."""
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    num_test = int(round(num_frames * test_fraction))
    if test_fraction > 0 and num_test == 0:
        num_test = 1
    cut = num_frames - num_test
    return {"train": list(range(cut)), "test": list(range(cut, num_frames))}


def read_manifest(dataset_dir: str | Path) -> Manifest:
    """Read and validate `manifest.json`; raise InputError with the reason when it is missing or unusable."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / MANIFEST
    if not path.is_file():
        if (dataset_dir / STAGES_DIR).is_dir():  # preprocess removes the manifest before it rewrites anything
            raise InputError(f"{dataset_dir} is an incomplete dataset (no {MANIFEST}: preprocessing was interrupted "
                             "or failed); re-run `deltaplane preprocess` into it")
        raise InputError(f"{dataset_dir} is not a complete dataset (no {MANIFEST}); run `deltaplane preprocess` first")
    raw = read_json(path)
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(f"{path} has schema_version {version}; this deltaplane reads version {SCHEMA_VERSION}: "
                         "re-run `deltaplane preprocess`")
    try:
        manifest = from_dict(Manifest, raw)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path} is malformed ({exc}); re-run `deltaplane preprocess`") from exc
    _check_counts(manifest, path)
    for name in (TRACKS, AUDIO_WAV, AUDIO_FEATURES, PARSING_DIR):
        if not (dataset_dir / name).exists():
            raise InputError(f"dataset {dataset_dir} is incomplete: {name} is missing")
    if not (dataset_dir / FRAMES_VIDEO).is_file() and not (dataset_dir / FRAMES_DIR).is_dir():
        raise InputError(f"dataset {dataset_dir} is incomplete: {FRAMES_VIDEO} is missing")
    return manifest


def _check_counts(manifest: Manifest, path: Path) -> None:
    """Numbers of the right type can still be garbage: refuse those that would train on nothing or index past the
    clip."""
    if not (manifest.num_frames >= 1 and math.isfinite(manifest.fps) and manifest.fps > 0
            and 1 <= manifest.image_size <= MAX_SIZE):
        raise InputError(f"{path} is malformed (num_frames {manifest.num_frames}, fps {manifest.fps}, image_size "
                         f"{manifest.image_size}); re-run `deltaplane preprocess`")
    for split, indices in manifest.splits.items():
        if any(not 0 <= index < manifest.num_frames for index in indices):
            raise InputError(f"{path} is malformed: split {split!r} lists frames outside 0..{manifest.num_frames - 1}; "
                             "re-run `deltaplane preprocess`")


def frame_path(dataset_dir: str | Path, index: int) -> Path:
    return Path(dataset_dir) / FRAMES_DIR / f"{index:06d}.jpg"


def parsing_path(dataset_dir: str | Path, index: int) -> Path:
    return Path(dataset_dir) / PARSING_DIR / f"{index:06d}.png"
