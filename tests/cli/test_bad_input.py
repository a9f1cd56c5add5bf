"""Bad numbers, unreadable inputs, unwritable outputs and damaged datasets or runs: each is one `error:` line, exit
status 2, no traceback, and nothing is left behind or changed (issue 12, items 2 to 6)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from deltaplane.cli import main
from deltaplane.media.video import VideoWriter

MISSING_RUN = "run_that_does_not_exist"


def _small_video(path: Path) -> Path:
    with VideoWriter(path, 25.0) as writer:
        for index in range(10):
            writer.write(np.full((64, 64, 3), 20 * index, np.uint8))
    return path


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "text.txt").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    video = _small_video(tmp_path / "ok.mp4")
    (tmp_path / "truncated.mp4").write_bytes(video.read_bytes()[:300])
    from deltaplane.audio.io import write_wav

    write_wav(tmp_path / "speech.wav", np.zeros(16000, np.float32))
    (tmp_path / "existing_dir").mkdir()
    (tmp_path / "existing_dir" / "keep.txt").write_text("an earlier output")
    (tmp_path / "readonly").mkdir()
    (tmp_path / "readonly").chmod(0o555)
    with VideoWriter(tmp_path / "whole.mp4", 25.0, audio=np.zeros(48000, np.float32)) as writer:
        for index in range(75):
            writer.write(np.random.default_rng(index).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    whole = (tmp_path / "whole.mp4").read_bytes()  # index at the start: the cut file still opens and probes
    (tmp_path / "half_cut.mp4").write_bytes(whole[: len(whole) // 2])
    torch.save({0: torch.zeros(2)}, tmp_path / "integer_keys.pth")
    torch.save({"weight": _RunsCode()}, tmp_path / "runs_code.pth")
    return {name: str(tmp_path / name) for name in ("text.txt", "empty.mp4", "ok.mp4", "truncated.mp4", "speech.wav")}


class _RunsCode:
    """Unpickling this would call print: a stand-in for a weight file that runs code when loaded unsafely."""

    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def _set(file: str, *keys: str, value: object) -> Callable[[Path], None]:
    """Damage a copied dataset or run: set a (nested) key of one of its JSON files."""
    def damage(root: Path) -> None:
        data = json.loads((root / file).read_text())
        parent = data
        for key in keys[:-1]:
            parent = parent[key]
        parent[keys[-1]] = value
        (root / file).write_text(json.dumps(data))
    return damage


def _truncate(file: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        data = (root / file).read_bytes()
        (root / file).write_bytes(data[: len(data) // 2])
    return damage


def _drop_rows(root: Path) -> None:
    np.save(root / "audio_features.npy", np.load(root / "audio_features.npy")[:-5])


def _drop_track(root: Path) -> None:
    with np.load(root / "tracks.npz") as tracks:
        kept = {name: tracks[name] for name in tracks.files if name != "cam2world"}
    np.savez(root / "tracks.npz", **kept)


DATASETS: dict[str, tuple[Callable[[Path], None], str | None]] = {
    "ds_ok": (lambda root: None, None),
    "ds_manifest_is_an_array": (lambda root: (root / "manifest.json").write_text("[1, 2, 3]\n"),
                                "expected a JSON object"),
    "ds_num_frames_abc": (_set("manifest.json", "num_frames", value="abc"), "num_frames: expected int"),
    "ds_num_frames_0": (_set("manifest.json", "num_frames", value=0), "num_frames 0"),
    "ds_split_past_the_end": (_set("manifest.json", "splits", "train", value=[0, 1, 100000]),
                              "lists frames outside"),
    "ds_truncated_tracks": (_truncate("tracks.npz"), "tracks.npz (File is not a zip file"),
    "ds_tracks_without_cam2world": (_drop_track, "tracks.npz lacks cam2world"),
    "ds_truncated_audio_features": (_truncate("audio_features.npy"), "audio_features.npy (Failed to read"),
    "ds_audio_features_too_short": (_drop_rows, "rows of audio_features.npy"),
    "ds_interrupted_rerun": (lambda root: (root / "manifest.json").unlink(), "incomplete dataset"),
}
"""Copies of the synthetic dataset (made for the cases that name them), each damaged in one way, and the error
`train` gives on it."""
RUNS: dict[str, tuple[Callable[[Path], None], str | None]] = {
    "run_ok": (lambda root: None, None),
    "run_config_is_an_array": (lambda root: (root / "config.json").write_text("[]\n"), "expected a JSON object"),
    "run_plane_resolution_mismatch": (_set("config.json", "model", "plane_resolution", value=48),
                                      "48, 48] in the config"),
    "run_huge_plane_resolution": (_set("config.json", "model", "plane_resolution", value=1 << 20),
                                  "plane_resolution 1048576 is outside [1, 1024]"),
    "run_plane_channels_abc": (_set("config.json", "model", "plane_channels", value="abc"),
                               "plane_channels: expected int"),
    "run_truncated_driving_tracks": (_truncate("driving_tracks.npz"), "driving_tracks.npz (File is not a zip file"),
    "run_latest_points_outside": (lambda root: (root / "checkpoints" / "latest").write_text("../../ds_ok\n"),
                                  "not a checkpoint of this run"),
}
"""Copies of the tiny trained run, likewise, and the error `render` gives on it."""


CASES = [
    ("train --steps 0", ["train", "DATA", "-o", "OUT", "--steps", "0"], "--steps must be at least 1"),
    ("train --steps -5", ["train", "DATA", "-o", "OUT", "--steps", "-5"], "--steps must be at least 1"),
    ("train --minutes -1", ["train", "DATA", "-o", "OUT", "--minutes", "-1"], "--minutes must be a positive"),
    ("train --minutes 0", ["train", "DATA", "-o", "OUT", "--minutes", "0"], "--minutes must be a positive"),
    ("train --device banana", ["train", "DATA", "-o", "OUT", "--device", "banana"], "unknown --device"),
    ("run --steps -1", ["run", "ok.mp4", "-o", "OUT", "--steps", "-1"], "--steps must be at least 1"),
    ("run --audio missing", ["run", "ok.mp4", "-o", "OUT", "--audio", "missing.wav"], "audio not found"),
    ("evaluate RUN --audio missing", ["evaluate", "run_ok", "-o", "OUT", "--audio", "missing.wav"], "not found"),
    ("evaluate --pred --audio missing", ["evaluate", "--pred", "ok.mp4", "--gt", "ok.mp4", "-o", "OUT", "--audio",
                                         "missing.wav"], "not found"),
    ("run --device banana", ["run", "ok.mp4", "-o", "OUT", "--device", "banana"], "unknown --device"),
    ("render --lip-smoothing 5", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4",
                                  "--lip-smoothing", "5"], "--lip-smoothing"),
    ("render --lip-smoothing -5", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4",
                                   "--lip-smoothing", "-5"], "--lip-smoothing"),
    ("render huge yaw", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--camera",
                         "yaw=1" + "0" * 320 + ",pitch=0"], "outside the supported"),
    ("render yaw=400", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--camera",
                        "yaw=400,pitch=0"], "outside the supported"),
    ("render pitch=90", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--camera",
                         "yaw=0,pitch=90"], "outside the supported"),
    ("render unknown camera", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--camera",
                               "roll=10"], "unknown camera"),
    ("evaluate --views yaw=±90", ["evaluate", MISSING_RUN, "-o", "OUT", "--views", "yaw=±90"],
     "outside the supported"),
    ("preprocess --size 100000", ["preprocess", "ok.mp4", "-o", "OUT", "--size", "100000"], "--size must be"),
    ("preprocess --align-smoothing -1", ["preprocess", "ok.mp4", "-o", "OUT", "--align-smoothing", "-1"],
     "--align-smoothing must be"),
    ("preprocess --align-smoothing nan", ["preprocess", "ok.mp4", "-o", "OUT", "--align-smoothing", "nan"],
     "--align-smoothing must be"),
    ("detect missing", ["detect", "missing.mp4"], "video not found"),
    ("detect text file", ["detect", "text.txt"], "cannot read"),
    ("detect empty file", ["detect", "empty.mp4"], "cannot read"),
    ("detect truncated", ["detect", "truncated.mp4"], "cannot read"),
    ("detect audio only", ["detect", "speech.wav"], "cannot read"),
    # Item 5: every output path is checked before any work starts.
    ("preprocess -o under a file", ["preprocess", "ok.mp4", "-o", "text.txt/ds"], "is a file, not a directory"),
    ("preprocess -o an existing file", ["preprocess", "ok.mp4", "-o", "text.txt"], "is a file; give a directory"),
    ("preprocess -o the video", ["preprocess", "ok.mp4", "-o", "ok.mp4"], "is also the video input"),
    ("preprocess -o read-only", ["preprocess", "ok.mp4", "-o", "readonly/ds"], "is not writable"),
    ("train -o under a file", ["train", "ds_ok", "-o", "text.txt/run", "--steps", "1"], "is a file, not a directory"),
    ("train -o an existing file", ["train", "ds_ok", "-o", "text.txt", "--steps", "1"], "is a file; give a directory"),
    ("train -o the dataset", ["train", "ds_ok", "-o", "ds_ok", "--steps", "1"], "is also the dataset input"),
    ("train -o read-only", ["train", "ds_ok", "-o", "readonly", "--steps", "1"], "is not writable"),
    ("render -o an existing directory", ["render", "run_ok", "--audio", "speech.wav", "-o", "existing_dir"],
     "is a directory; give a file"),
    ("render -o under a file", ["render", "run_ok", "--audio", "speech.wav", "-o", "text.txt/out.mp4"],
     "is a file, not a directory"),
    ("render -o the --audio", ["render", "run_ok", "--audio", "speech.wav", "-o", "speech.wav"],
     "is also the --audio input"),
    ("render -o read-only", ["render", "run_ok", "--audio", "speech.wav", "-o", "readonly/out.mp4"],
     "is not writable"),
    ("render --depth the -o", ["render", "run_ok", "--audio", "speech.wav", "-o", "OUT.mp4", "--depth", "OUT.mp4"],
     "is also the -o output"),
    ("render --depth the --audio", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--depth",
                                    "speech.wav"], "is also the --audio input"),
    ("render --depth under a file", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--depth",
                                     "text.txt/depth.mp4"], "is a file, not a directory"),
    ("render --depth an existing directory", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4",
                                              "--depth", "existing_dir"], "is a directory; give a file"),
    ("render --depth read-only", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--depth",
                                  "readonly/depth.mp4"], "is not writable"),
    ("render --attention an existing file", ["render", "run_ok", "--audio", "speech.wav", "-o", "OUT.mp4",
                                             "--attention", "text.txt"], "is a file; give a directory"),
    ("render --attention under a file", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4",
                                         "--attention", "text.txt/maps"], "is a file, not a directory"),
    ("render --attention read-only", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4",
                                      "--attention", "readonly/maps"], "is not writable"),
    ("render --mouth-x-blur negative", ["render", "run_ok", "--audio", "speech.wav", "-o", "OUT.mp4",
                                        "--mouth-x-blur", "-1"], "mouth_x_blur must be ≥ 0"),
    ("evaluate --mouth-x-blur negative", ["evaluate", "run_ok", "-o", "OUT", "--mouth-x-blur", "-0.5"],
     "mouth_x_blur must be ≥ 0"),
    ("evaluate --pred --mouth-x-blur", ["evaluate", "--pred", "ok.mp4", "--gt", "ok.mp4", "-o", "OUT",
                                        "--mouth-x-blur", "2"], "not to --pred videos"),
    ("render --mouth-scale without a lip vector", ["render", "run_ok", "--audio", "speech.wav", "-o", "OUT.mp4",
                                                   "--mouth-scale", "1.3"], "needs a run whose audio drives a lip"),
    ("evaluate --pred --mouth-scale", ["evaluate", "--pred", "ok.mp4", "--gt", "ok.mp4", "-o", "OUT",
                                       "--mouth-scale", "1.3"], "not to --pred videos"),
    ("evaluate -o under a file", ["evaluate", "run_ok", "-o", "text.txt/eval"], "is a file, not a directory"),
    ("evaluate -o an existing file", ["evaluate", "run_ok", "-o", "text.txt"], "is a file; give a directory"),
    ("evaluate -o the --pred", ["evaluate", "--pred", "ok.mp4", "--gt", "truncated.mp4", "-o", "ok.mp4"],
     "is also the --pred input"),
    ("evaluate -o read-only", ["evaluate", "run_ok", "-o", "readonly/eval"], "is not writable"),
    ("bench --json under a file", ["bench", "run_ok", "--frames", "1", "--json", "text.txt/bench.json"],
     "is a file, not a directory"),
    ("bench --json an existing directory", ["bench", "run_ok", "--frames", "1", "--json", "existing_dir"],
     "is a directory; give a file"),
    ("bench --json read-only", ["bench", "--random-weights", "--preset", "tiny", "--frames", "1", "--json",
                                "readonly/bench.json"], "is not writable"),
    ("run -o under a file", ["run", "ok.mp4", "-o", "text.txt/work"], "is a file, not a directory"),
    ("run -o an existing file", ["run", "ok.mp4", "-o", "text.txt"], "is a file; give a directory"),
    ("run -o read-only", ["run", "ok.mp4", "-o", "readonly/work"], "is not writable"),
    ("demo -o under a file", ["demo", "-o", "text.txt/demo"], "is a file, not a directory"),
    ("demo -o an existing file", ["demo", "-o", "text.txt"], "is a file; give a directory"),
    ("demo -o read-only", ["demo", "-o", "readonly/demo"], "is not writable"),
    ("preprocess a half-cut mp4", ["preprocess", "half_cut.mp4", "-o", "OUT"], "is cut short"),
    # Items 6 and 8: weight files keyed by integers, or holding code, are refused without torch's unsafe hint.
    *[(f"evaluate {flag} {name}", ["evaluate", "--pred", "ok.mp4", "--gt", "ok.mp4", "-o", "OUT", flag, name],
       message) for flag in ("--lpips-weights", "--arcface", "--syncnet-v2")
      for name, message in (("integer_keys.pth", "int key"), ("runs_code.pth", "objects other than tensors"))],
    # Items 3, 4 and 6: damaged datasets and runs name the file, before any work starts.
    *[(f"train {name}", ["train", name, "-o", "OUT", "--steps", "1"], message)
      for name, (_, message) in DATASETS.items() if message],
    *[(f"render {name}", ["render", name, "--audio", "speech.wav", "-o", "OUT.mp4"], message)
      for name, (_, message) in RUNS.items() if message],
    ("evaluate huge plane resolution", ["evaluate", "run_huge_plane_resolution", "-o", "OUT"], "outside [1, 1024]"),
    ("bench plane resolution mismatch", ["bench", "run_plane_resolution_mismatch", "--frames", "1"], "does not fit"),
    ("train --resume plane resolution mismatch", ["train", "ds_ok", "-o", "run_plane_resolution_mismatch",
                                                  "--resume", "--steps", "1"], "does not fit"),
]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under `root` with its size and modification time."""
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns) for path in root.rglob("*")}


@pytest.mark.parametrize("argv, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_exit_2_and_leaves_nothing(argv: list[str], message: str, inputs: dict,
                                                               tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               request: pytest.FixtureRequest) -> None:
    if any(arg.startswith("readonly") for arg in argv) and os.access(tmp_path / "readonly", os.W_OK):
        pytest.skip("a read-only directory is writable here (running as root): there is nothing to refuse")
    for name in set(argv):
        for damaged, fixture in ((DATASETS, "synthetic_dataset"), (RUNS, "tiny_run")):
            if name in damaged:
                shutil.copytree(request.getfixturevalue(fixture), tmp_path / name)
                damaged[name][0](tmp_path / name)
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--quiet"] if argv[0] not in ("detect", "bench") else argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert _tree(tmp_path) == before  # no output, no temporary file, every existing file untouched


def test_detect_exit_status_is_1_for_a_readable_unmarked_video(inputs: dict) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", inputs["ok.mp4"]])
    assert exit_info.value.code == 1


def test_missing_face_tracking_packages_are_named_with_their_install_command(
        inputs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 9: a plain `pip install -e .` has no mediapipe; preprocess says what to install before any work."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "mediapipe"
                        else find_spec(name, *rest))
    for argv in (["preprocess", inputs["ok.mp4"], "-o", str(tmp_path / "data")],
                 ["evaluate", "--pred", inputs["ok.mp4"], "--gt", inputs["ok.mp4"], "-o", str(tmp_path / "eval")]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1, err
        assert "pip install --no-deps mediapipe==0.10.21" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "eval").exists()


def test_quiet_keeps_mediapipe_native_logs_off_the_terminal(tmp_path: Path) -> None:
    """Item 9: with --quiet, the C++ log lines mediapipe writes to file descriptor 2 are gone; the error stays."""
    import subprocess
    import sys

    from deltaplane.media.video import VideoWriter

    with VideoWriter(tmp_path / "no_face.mp4", 25.0, audio=np.zeros(32000, np.float32)) as writer:
        for index in range(50):
            writer.write(np.full((256, 256, 3), 100 + index, np.uint8))
    result = subprocess.run([sys.executable, "-m", "deltaplane.cli", "preprocess", str(tmp_path / "no_face.mp4"), "-o",
                             str(tmp_path / "data"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.splitlines() == ["error: no face found in any of the 50 frames"], \
        result.stderr
