"""End-to-end preprocessing: dataset contents, resume, and every bad input's error."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from deltaplane import api
from deltaplane.data.schema import SCHEMA_VERSION, read_manifest
from deltaplane.errors import InputError
from deltaplane.media.video import probe_video
from deltaplane.preprocess.align import RIGID_INDICES
from deltaplane.preprocess.geometry_stage import frame_geometry
from deltaplane.preprocess.stages import PreprocessConfig


@pytest.fixture(scope="module")
def katie_dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.preprocess(shared_data / "clips" / "katie_8s.mp4", tmp_path_factory.mktemp("katie") / "ds",
                          progress=False)


def test_katie_dataset_is_complete_and_consistent(katie_dataset: Path, shared_data: Path) -> None:
    manifest = read_manifest(katie_dataset)
    assert manifest.schema_version == SCHEMA_VERSION
    info = probe_video(shared_data / "clips" / "katie_8s.mp4")
    assert manifest.num_frames == math.floor(info.duration * 25 + 1e-6) == 200
    assert manifest.splits["test"] == list(range(180, 200)) and manifest.splits["train"] == list(range(180))
    tracks = np.load(katie_dataset / "tracks.npz")
    assert tracks["landmarks_aligned"].shape == (200, 68, 2) and tracks["cam2world"].shape == (200, 4, 4)
    assert not (katie_dataset / "frames").exists() and probe_video(katie_dataset / "frames.mp4").num_frames_estimate == 200
    assert len(list((katie_dataset / "parsing").glob("*.png"))) == 200
    features = np.load(katie_dataset / "audio_features.npy")
    assert features.shape == (200, 16, 80)  # exactly one window per frame
    assert tracks["face_detected"].all()
    # The aligned nose tip sits near the template's, and the frontal-ish clip has small angles.
    assert np.abs(np.degrees(tracks["angles"][:, :2])).max() < 25


def test_rerun_is_a_no_op(katie_dataset: Path, shared_data: Path) -> None:
    stamps = {p.name: p.stat().st_mtime_ns for p in katie_dataset.iterdir()}
    api.preprocess(shared_data / "clips" / "katie_8s.mp4", katie_dataset, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in katie_dataset.iterdir() if p.name != "manifest.json"} == \
        {k: v for k, v in stamps.items() if k != "manifest.json"}


def test_interrupted_frames_stage_resumes(katie_dataset: Path, tmp_path: Path, shared_data: Path) -> None:
    copy = tmp_path / "ds"
    shutil.copytree(katie_dataset, copy)
    (copy / "frames.mp4").unlink()  # as if the frames stage had died before its atomic rename
    (copy / "manifest.json").unlink()
    with pytest.raises(InputError, match="no manifest.json"):
        read_manifest(copy)
    api.preprocess(shared_data / "clips" / "katie_8s.mp4", copy, progress=False)
    assert read_manifest(copy).num_frames == 200
    assert json.loads((copy / ".stages" / "track.json").read_text()) == \
        json.loads((katie_dataset / ".stages" / "track.json").read_text())  # tracking was not redone


def test_30fps_clip_is_resampled(clip_excerpt, tmp_path: Path) -> None:
    clip = clip_excerpt("macron_fr_50s.mp4", 3.0)
    assert abs(probe_video(clip).fps - 30) < 0.1
    manifest = read_manifest(api.preprocess(clip, tmp_path / "ds", progress=False))
    assert manifest.num_frames == 75 and manifest.fps == 25


def test_non_square_high_res_small_face(clip_excerpt, tmp_path: Path) -> None:
    clip = clip_excerpt("portrait_1080x1920_20s.mp4", 2.4)
    dataset = api.preprocess(clip, tmp_path / "ds", size=256, progress=False)
    manifest = read_manifest(dataset)
    assert manifest.num_frames == 60 and manifest.image_size == 256
    assert (manifest.source.width, manifest.source.height) == (1080, 1920)


def test_no_audio_stream_needs_audio_flag(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no audio stream"):
        api.preprocess(shared_data / "clips" / "noaudio_3s.mp4", tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_external_audio_of_any_rate(shared_data: Path, clip_excerpt, tmp_path: Path) -> None:
    clip = clip_excerpt("katie_8s.mp4", 3.0)
    dataset = api.preprocess(clip, tmp_path / "ds", audio=shared_data / "audio" / "en_female_16s.wav",
                             progress=False)
    assert read_manifest(dataset).source.audio_path.endswith("en_female_16s.wav")


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(InputError, match="cannot read"):
        api.preprocess(corrupt, tmp_path / "ds", progress=False)
    with pytest.raises(InputError):
        api.preprocess(tmp_path / "missing.mp4", tmp_path / "ds", progress=False)
    wav = tmp_path / "only_audio.wav"
    from deltaplane.audio.io import write_wav

    write_wav(wav, np.zeros(16000 * 3, np.float32))
    with pytest.raises(InputError, match="video stream"):
        api.preprocess(wav, tmp_path / "ds", progress=False)


def _pattern_clip(path: Path, seconds: float, size: tuple[int, int] = (128, 96)) -> Path:
    from deltaplane.synthetic import write_pattern_clip

    return write_pattern_clip(path, seconds=seconds, fps=25, size=size, with_audio=True)


def test_no_face_gives_frame_ranges(tmp_path: Path) -> None:
    clip = _pattern_clip(tmp_path / "pattern.mp4", 2.5)
    with pytest.raises(InputError, match="no face"):
        api.preprocess(clip, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_too_short_clip(tmp_path: Path) -> None:
    clip = _pattern_clip(tmp_path / "short.mp4", 1.2)
    with pytest.raises(InputError, match="at least 2 s"):
        api.preprocess(clip, tmp_path / "ds", progress=False)


def test_bad_options(shared_data: Path, tmp_path: Path) -> None:
    clip = shared_data / "clips" / "katie_8s.mp4"
    with pytest.raises(InputError, match="--fps"):
        api.preprocess(clip, tmp_path / "ds", fps=0, progress=False)
    with pytest.raises(InputError, match="--test-fraction"):
        api.preprocess(clip, tmp_path / "ds", test_fraction=1.5, progress=False)
    with pytest.raises(InputError, match="--align-smoothing"):
        api.preprocess(clip, tmp_path / "ds", align_smoothing=-0.5, progress=False)


def test_frames_video_matches_the_aligned_frames_and_old_jpeg_datasets_still_load(katie_dataset: Path,
                                                                                   tmp_path: Path) -> None:
    """Datasets store frames as one H.264 video; a dataset of JPEGs (older versions) loads the same frames."""
    from deltaplane.data.dataset import load_clip
    from deltaplane.media.video import iter_frames

    _, clip = load_clip(katie_dataset, "test")
    assert clip.frames.shape == (20, 3, 512, 512) and clip.indices.tolist() == list(range(180, 200))
    copy = tmp_path / "jpeg"
    shutil.copytree(katie_dataset, copy)
    (copy / "frames").mkdir()
    for index, rgb in enumerate(iter_frames(copy / "frames.mp4", 25.0)):
        cv2.imwrite(str(copy / "frames" / f"{index:06d}.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    (copy / "frames.mp4").unlink()
    _, old = load_clip(copy, "test")
    assert (old.frames.float() - clip.frames.float()).abs().mean() < 1.0  # only JPEG's rounding differs


def _aligned_spread(raw: dict[str, np.ndarray], align_smoothing: float) -> float:
    """RMS over frames and rigid points of the aligned rigid landmarks' distance from their mean (pixels)."""
    aligned = frame_geometry(raw, 640, 480, 128, 25.0, 0.05, align_smoothing).arrays["landmarks_aligned"]
    rigid = aligned[:, list(RIGID_INDICES)]
    return float(np.sqrt(((rigid - rigid.mean(0)) ** 2).sum(-1).mean()))


def test_alignment_follows_a_face_that_moves_every_frame(synthetic_dataset: Path) -> None:
    """A still face filmed by a shaking camera: one frame's tracks, moved by a random 1.5-px translation per frame.
    Unsmoothed, the aligned face stays exactly still; Talk3D's 2-frame smoothing leaves most of the shake in the
    aligned frames (which no camera follows); the default keeps well under half of it."""
    with np.load(synthetic_dataset / ".stages" / "track_raw.npz") as track:
        landmarks, mesh = track["landmarks68"][0], track["mesh"][0]
    shake = np.random.default_rng(0).normal(0.0, 1.5, (80, 1, 2)).astype(np.float32)
    raw = {"landmarks68": landmarks[None] + shake,
           "mesh": np.concatenate([mesh[None, :, :2] + shake, np.repeat(mesh[None, :, 2:], 80, 0)], -1)}
    scale = 128 / 512  # shake in source pixels → aligned pixels, about (the synthetic face is ~512 px tall)
    assert _aligned_spread(raw, 0.0) < 1e-3
    talk3d, default = _aligned_spread(raw, 2.0), _aligned_spread(raw, PreprocessConfig().align_smoothing)
    assert talk3d > 0.5 * 1.5 * scale
    assert default < talk3d / 2


def test_align_smoothing_redoes_the_frames_stage_only(synthetic_clip: Path, synthetic_dataset: Path,
                                                      tmp_path: Path) -> None:
    copy = tmp_path / "ds"
    shutil.copytree(synthetic_dataset, copy)
    before = {name: json.loads((copy / ".stages" / f"{name}.json").read_text()) for name in ("track", "frames")}
    api.preprocess(synthetic_clip, copy, size=128, test_fraction=0.2, align_smoothing=2.0, progress=False)
    after = {name: json.loads((copy / ".stages" / f"{name}.json").read_text()) for name in ("track", "frames")}
    assert after["track"] == before["track"]
    assert after["frames"]["fingerprint"] != before["frames"]["fingerprint"]
    assert read_manifest(copy).config["align_smoothing"] == 2.0
    with np.load(copy / "tracks.npz") as new, np.load(synthetic_dataset / "tracks.npz") as old:
        assert not np.allclose(new["affine"], old["affine"])
        np.testing.assert_array_equal(new["landmark_feature"], old["landmark_feature"])  # the token keeps its σ
